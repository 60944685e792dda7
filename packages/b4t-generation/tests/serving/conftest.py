"""Fixtures for the text-generation serving tests: a character tokenizer, a tiny LM,
an independent greedy reference and running servers on 127.0.0.1 (port 0)."""

from __future__ import annotations

import json
import string
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from b4t.generation import GenerationRequest, SeqGeneration, WebServing
from b4t.generation.routes import add_generation_routes
from b4t.generation.testing import TinyCausalLM

ALPHABET = string.ascii_lowercase + string.ascii_uppercase + " .,\n!?;:'-"  # 62 characters
PAD, END, VOCAB, CONTEXT = 0, 1, 64, 96

# Never route 127.0.0.1 through an http_proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Ticker:
    """A stream function yielding "x" every ``delay`` s; records how each stream ended."""

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.produced: list[int] = []
        self.closed = threading.Event()

    def __call__(self, request: GenerationRequest) -> Iterator[str]:
        count = 0
        try:
            for _ in range(request.max_tokens):
                time.sleep(self.delay)
                count += 1
                yield "x"
        finally:
            self.produced.append(count)
            self.closed.set()


@pytest.fixture()
def make_ticker() -> type[Ticker]:
    """:class:`Ticker`, the slow stream function (call it for one; ``delay=`` optional)."""
    return Ticker


class CharTokenizer:
    """id = 2 + position in ALPHABET; 0 is padding, 1 the end token."""

    def encode(self, text: str) -> list[int]:
        unknown = sorted({c for c in text if c not in ALPHABET})
        if unknown:
            raise ValueError(f"characters outside the alphabet: {unknown}")
        return [2 + ALPHABET.index(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(ALPHABET[i - 2] for i in ids if 2 <= i < VOCAB)


@pytest.fixture(scope="session")
def tokenizer() -> CharTokenizer:
    return CharTokenizer()


@pytest.fixture(scope="session")
def model() -> TinyCausalLM:
    return TinyCausalLM(vocab_size=VOCAB, max_positions=CONTEXT, seed=3).eval()


@pytest.fixture(scope="session")
def generation(model: TinyCausalLM, tokenizer: CharTokenizer) -> SeqGeneration:
    return SeqGeneration(model, tokenizer, end_id=END, maxlen=40, mode="random_sample")


@pytest.fixture(scope="session")
def greedy_reference(
    model: TinyCausalLM, tokenizer: CharTokenizer
) -> Callable[[str, int], tuple[str, str]]:
    """Greedy decoding written out: re-run the whole sequence, take the argmax.

    Returns ``(text, finish_reason)``: ``"stop"`` at the end token, else ``"length"``.
    """

    @torch.no_grad()
    def run(prompt: str, max_tokens: int) -> tuple[str, str]:
        ids = tokenizer.encode(prompt)
        out: list[int] = []
        for _ in range(max_tokens):
            logits, _ = model(torch.tensor([ids + out]))
            token = int(logits[0, -1].argmax())
            if token == END:
                return tokenizer.decode(out), "stop"
            out.append(token)
        return tokenizer.decode(out), "length"

    return run


@pytest.fixture()
def make_server() -> Iterator[Callable[..., tuple[WebServing, Any]]]:
    """``make_server(backend, **limits) -> (serving, service)``, started on a free port."""
    started: list[WebServing] = []

    def make(backend: Any, *, max_body_size: int = 1 << 20, **limits: Any):
        serving = WebServing(port=0, max_body_size=max_body_size)
        service = add_generation_routes(serving, backend, **limits)
        serving.start(background=True)
        started.append(serving)
        return serving, service

    yield make
    for serving in started:
        serving.stop()


def http(
    url: str, body: Any = None, method: str | None = None, timeout: float = 30
) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, raw body)`` of one request; ``body`` is JSON-encoded unless bytes."""
    data = body if isinstance(body, bytes | type(None)) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="session")
def fetch() -> Callable[..., tuple[int, dict[str, str], bytes]]:
    return http
