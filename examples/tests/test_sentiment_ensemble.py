"""The seed ensemble: probability averaging, and saving / loading its members."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentiment_model import (
    SentimentEnsemble,
    build_classifier,
    load_ensemble,
    load_pretrained,
    save_ensemble,
    save_pretrained,
    small_bert_config,
)
from sentiment_text import bigram_ids, bigram_vocab, collate, compact_vocab, encode_texts

from b4t.models import build_transformer_model
from b4t.tokenizers import Tokenizer

TEXTS = ["这本书很好看，推荐！", "质量太差了，不推荐", "物流很快 good", "还行吧"]
LABELS = ("negative", "positive")


def _members(vocab_path: Path, n: int = 2):
    """``n`` differently initialised bigram classifiers over one vocab, and their inputs."""
    vocab = compact_vocab(vocab_path, TEXTS, min_count=1)
    ids = encode_texts(Tokenizer(vocab), TEXTS, 32)
    bigrams = bigram_vocab(ids, min_count=1)
    config = small_bert_config(len(vocab), hidden_size=32, num_layers=1)
    members = []
    for k in range(n):
        torch.manual_seed(k)
        clf = build_classifier(config, bigram_vocab=bigrams, hidden_size=32).eval()
        with torch.no_grad():  # distinct, non-trivial heads so the members disagree
            clf.classifier.weight.normal_(std=0.5)
        members.append(clf)
    (token_ids, bigram_tensor), _ = collate([(x, bigram_ids(x, bigrams), 0) for x in ids])
    tokens = sorted(vocab, key=vocab.__getitem__)
    return members, config, tokens, token_ids, bigram_tensor


def test_ensemble_averages_member_probabilities(pypi_asset) -> None:
    members, _, _, token_ids, bigram_tensor = _members(pypi_asset("bert-base-chinese-vocab"), 3)
    ensemble = SentimentEnsemble(members).eval()
    with torch.no_grad():
        each = [m(token_ids, bigram_tensor).softmax(-1) for m in members]  # 3 x [B, 2]
        out = ensemble(token_ids, bigram_tensor)
    expected = (each[0] + each[1] + each[2]) / 3
    assert not torch.allclose(each[0], each[1])  # the members really differ
    torch.testing.assert_close(out.softmax(-1), expected)
    torch.testing.assert_close(out.exp(), expected)
    assert torch.equal(out.argmax(-1), expected.argmax(-1))


def test_ensemble_rejects_mismatched_members(pypi_asset) -> None:
    members, *_ = _members(pypi_asset("bert-base-chinese-vocab"))
    members[1].bigram_vocab = {(1, 2): 2}
    with pytest.raises(ValueError, match="member 1"):
        SentimentEnsemble(members)
    with pytest.raises(ValueError, match="at least one"):
        SentimentEnsemble([])


def test_save_and_load_ensemble(tmp_path: Path, pypi_asset) -> None:
    members, config, tokens, token_ids, bigram_tensor = _members(
        pypi_asset("bert-base-chinese-vocab")
    )
    out = save_ensemble(members, tmp_path / "ens", config, tokens, LABELS, [0.5, 0.75])
    record = json.loads((out / "ensemble.json").read_text())
    assert record == {"members": ["member-0", "member-1"], "dev_accuracy": [0.5, 0.75]}
    with torch.no_grad():
        loaded, labels = load_ensemble(out)
        assert labels == list(LABELS) and len(loaded.members) == 2
        torch.testing.assert_close(
            loaded(token_ids, bigram_tensor), SentimentEnsemble(members)(token_ids, bigram_tensor)
        )
        # each member folder is a complete model of its own ...
        for k, member in enumerate(members):
            single, _ = load_pretrained(out / f"member-{k}")
            torch.testing.assert_close(
                single(token_ids, bigram_tensor), member(token_ids, bigram_tensor)
            )
            encoder = build_transformer_model(out / f"member-{k}", out / f"member-{k}")
            assert encoder.config.hidden_size == 32
        # ... and the top-level folder still loads as one model: member 0
        top, _ = load_pretrained(out)
        torch.testing.assert_close(
            top(token_ids, bigram_tensor), members[0](token_ids, bigram_tensor)
        )


def test_load_ensemble_of_a_single_model_folder(tmp_path: Path, pypi_asset) -> None:
    members, config, tokens, token_ids, bigram_tensor = _members(
        pypi_asset("bert-base-chinese-vocab")
    )
    out = save_pretrained(members[1], tmp_path / "one", config, tokens, LABELS)
    loaded, _ = load_ensemble(out)
    assert len(loaded.members) == 1
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(token_ids, bigram_tensor).softmax(-1),
            members[1](token_ids, bigram_tensor).softmax(-1),
        )
    (out / "ensemble.json").write_text('{"members": []}')
    with pytest.raises(ValueError, match="members"):
        load_ensemble(out)
