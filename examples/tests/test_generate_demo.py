"""The generation demo end to end on a tiny text: training, baselines, saving, serving."""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import generate
from generate_data import UNK
from generate_model import CharGPT, gpt2_config, load_model

TEXT = "To be, or not to be, that is the question.\n春眠不觉晓，处处闻啼鸟。\n" * 80


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("generate")
    text = folder / "tiny.txt"
    text.write_text(TEXT, encoding="utf-8")
    args = ["--text", str(text), "--out", str(folder / "model"), "--iters", "80"]
    args += ["--layers", "1", "--heads", "2", "--width", "32", "--context", "16"]
    args += ["--batch-size", "8", "--eval-interval", "40", "--eval-windows", "16"]
    args += ["--samples", "2", "--sample-length", "30", "--threads", "1"]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        generate.main(args)
    return folder / "model", buffer.getvalue()


def _figure(pattern: str, printed: str) -> float:
    match = re.search(pattern, printed)
    assert match, f"{pattern!r} not in the output:\n{printed}"
    return float(match.group(1))


def test_loss_falls_below_the_unigram_baseline(trained: tuple[Path, str]) -> None:
    _, printed = trained
    val = _figure(r"val loss: (\d+\.\d+) \(nats/char, whole held-out split", printed)
    unigram = _figure(r"baseline: unigram (\d+\.\d+)", printed)
    bigram = _figure(r"bigram (\d+\.\d+) nats/char", printed)
    assert bigram < unigram
    assert val < unigram  # the model learnt more than character frequencies
    steps = re.findall(r"step (\d+): val loss \(sample of 16 windows\) (\d+\.\d+)", printed)
    assert [s for s, _ in steps] == ["40", "80"]


def test_samples_use_the_training_characters(trained: tuple[Path, str]) -> None:
    _, printed = trained
    samples = re.findall(r"--- sample \d ---\n(.*?)\n(?=--- sample|\Z)", printed, re.S)
    assert len(samples) == 2
    for sample in samples:
        assert len(sample) == 31  # the "\n" prompt and 30 characters
        assert set(sample) <= set(TEXT) and UNK not in sample


def test_saved_model_reloads_with_equal_logits(trained: tuple[Path, str]) -> None:
    folder, _ = trained
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "chars.json"}
    model, tokenizer = load_model(folder)
    ids = torch.tensor([tokenizer.encode("To be, or not")])
    logits = model(ids)
    config = json.loads((folder / "config.json").read_text())
    # the Hugging Face layout: transformers reads it as it is
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    assert config["model_type"] == "gpt2" and config["n_positions"] == 16
    torch.testing.assert_close(hf(ids).logits, logits, atol=1e-5, rtol=1e-5)
    fresh = CharGPT(gpt2_config(len(tokenizer), 1, 2, 32, 16))
    assert not torch.allclose(fresh(ids), logits)  # the weights really were loaded


def _get(url: str) -> tuple[int, object]:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.status, json.loads(response.read())


def _texts(answer: object) -> list[str]:
    """The generated texts from /generate's JSON (seed envelope, list or bare text)."""
    data = answer["data"] if isinstance(answer, dict) else answer
    return data if isinstance(data, list) else [data]


def test_served_model_answers_over_http_with_batching(trained: tuple[Path, str]) -> None:
    folder, _ = trained
    model, tokenizer = load_model(folder)
    args = SimpleNamespace(host="127.0.0.1", port=0, max_batch=8, max_tokens=64)
    server, scheduler = generate.make_server(model, tokenizer, args)
    vocabulary = set(tokenizer.chars[1:])
    results: list[tuple[int, object]] = []
    with scheduler, server:
        # "To be" and 10 new characters fit the 16-character context (beyond it: a 400)
        query = urllib.parse.urlencode({"text": "To be", "max_tokens": 10, "temperature": 0.8})

        def client() -> None:
            results.append(_get(f"{server.url}/generate?{query}"))

        threads = [threading.Thread(target=client) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert len(results) == 6
    for status, answer in results:
        assert status == 200
        (text,) = _texts(answer)
        assert 0 < len(text) <= 10 and set(text) <= vocabulary
    assert scheduler.tokens == 6 * 10
    assert scheduler.largest_batch > 1  # concurrent requests shared decoding steps


def test_a_client_leaving_mid_stream_frees_its_batch_slot(trained: tuple[Path, str]) -> None:
    import socket
    import time

    folder, _ = trained
    model, tokenizer = load_model(folder)
    args = SimpleNamespace(
        host="127.0.0.1", port=0, max_batch=4, max_tokens=5000, sliding_window=True
    )
    server, scheduler = generate.make_server(model, tokenizer, args)
    with scheduler, server:
        query = urllib.parse.urlencode({"text": "To be", "max_tokens": 5000})
        client = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        client.sendall(f"GET /generate/stream?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = b""
        while b"data: " not in received:  # the first token arrived
            chunk = client.recv(4096)
            assert chunk, received
            received += chunk
        assert received.startswith(b"HTTP/1.") and b" 200 " in received.split(b"\r\n")[0]
        client.close()  # the client goes away mid-stream
        deadline = time.monotonic() + 60
        while (scheduler.active or scheduler.waiting) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert scheduler.active == 0
        assert scheduler.tokens < 5000  # it stopped decoding long before max_tokens
        # and the server still answers
        status, answer = _get(f"{server.url}/generate?text=To&max_tokens=3")
        assert status == 200 and len(_texts(answer)[0]) == 3


def test_a_prompt_beyond_the_context_is_refused_unless_sliding_is_asked_for(
    trained: tuple[Path, str],
) -> None:
    """Prompt + max_tokens over the model's context: OpenAI's 400, not a silent cut to the
    last characters; ``--sliding-window`` is the explicit opt-in to serve it anyway."""
    openai = pytest.importorskip("openai")
    folder, _ = trained
    model, tokenizer = load_model(folder)
    prompt = "To be, or not to be " * 50  # 1,000 characters, context 16
    for sliding in (False, True):
        args = SimpleNamespace(
            host="127.0.0.1", port=0, max_batch=2, max_tokens=64, sliding_window=sliding
        )
        server, scheduler = generate.make_server(model, tokenizer, args)
        with scheduler, server:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="-", max_retries=0)
            kwargs = {"model": "b4t-char-gpt", "prompt": prompt, "max_tokens": 4}
            if sliding:
                assert client.completions.create(**kwargs).usage.completion_tokens == 4
            else:
                with pytest.raises(openai.BadRequestError) as info:
                    client.completions.create(**kwargs)
                assert info.value.body["code"] == "context_length_exceeded"
                assert f"maximum context length is {model.context}" in info.value.body["message"]


def test_cors_headers_only_with_the_cors_flag(trained: tuple[Path, str]) -> None:
    folder, _ = trained
    model, tokenizer = load_model(folder)
    for flag, expected in (
        ([], None),
        (["--cors", "http://notebook.example"], "http://notebook.example"),
    ):
        args = generate.parse_args(["--port", "0", *flag])
        server, scheduler = generate.make_server(model, tokenizer, args)
        with scheduler, server:
            request = urllib.request.Request(
                f"{server.url}/health", headers={"Origin": "http://notebook.example"}
            )
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(request, timeout=10) as response:
                assert response.status == 200
                assert response.headers.get("Access-Control-Allow-Origin") == expected
