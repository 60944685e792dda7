"""Serving limits: slots freed by disconnecting clients, 503 when busy, and 100 mixed
requests (good, malformed, oversized, disconnecting) leaving the server answering with
memory that stops growing (RSS after trimming the malloc heap; the Python heap)."""

from __future__ import annotations

import ctypes
import gc
import json
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from b4t.generation import GenerationRequest


def open_stream(url: str, path: str, body: dict | None = None) -> socket.socket:
    """Send a request on a raw socket and read until the first SSE data line arrives."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    if body is None:
        head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    else:
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode() + data
    sock.sendall(head)
    received = b""
    while b"\ndata:" not in received:
        chunk = sock.recv(4096)
        assert chunk, received
        received += chunk
    assert received.startswith(b"HTTP/1.0 200") or received.startswith(b"HTTP/1.1 200")
    return sock


def test_a_client_that_disconnects_mid_stream_frees_its_slot(
    make_server, tokenizer, fetch, make_ticker
):
    ticker = make_ticker()
    serving, service = make_server(
        ticker, tokenizer=tokenizer, max_tokens=1000, max_concurrency=1, queue_timeout=5
    )
    sock = open_stream(serving.url, "/generate/stream?text=hi&max_tokens=1000")
    assert service.active == 1
    sock.close()
    assert ticker.closed.wait(5), "the stream was not closed after the client left"
    assert ticker.produced[0] < 1000  # stopped early: the decoder does not run on
    deadline = time.monotonic() + 5
    while service.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert service.active == 0
    status, _, raw = fetch(serving.url + "/generate?text=hi&max_tokens=3")
    assert (status, json.loads(raw)["data"]) == (200, ["xxx"])


def test_openai_stream_closed_by_the_client_frees_its_slot(make_server, tokenizer, make_ticker):
    openai = pytest.importorskip("openai")
    ticker = make_ticker()
    serving, _ = make_server(ticker, tokenizer=tokenizer, max_tokens=1000, max_concurrency=1)
    client = openai.OpenAI(base_url=serving.url + "/v1", api_key="-", max_retries=0)
    stream = client.completions.create(model="b4t-lm", prompt="hi", max_tokens=1000, stream=True)
    assert next(iter(stream)).choices[0].text == "x"
    stream.close()
    assert ticker.closed.wait(5) and ticker.produced[0] < 1000
    answer = client.completions.create(model="b4t-lm", prompt="hi", max_tokens=2)
    assert answer.choices[0].text == "xx" and answer.choices[0].finish_reason == "length"


def test_busy_server_answers_503_json_then_recovers(make_server, tokenizer, fetch, make_ticker):
    ticker = make_ticker(delay=0.05)
    serving, _ = make_server(
        ticker, tokenizer=tokenizer, max_tokens=1000, max_concurrency=1, queue_timeout=0.3
    )
    sock = open_stream(
        serving.url,
        "/v1/completions",
        {"model": "b4t-lm", "prompt": "a", "stream": True, "max_tokens": 1000},
    )
    status, headers, raw = fetch(
        serving.url + "/v1/completions", body={"model": "b4t-lm", "prompt": "a"}
    )
    assert status == 503 and headers["Content-Type"].startswith("application/json")
    assert "busy" in json.loads(raw)["error"]["message"]
    status, _, raw = fetch(serving.url + "/generate?text=a")
    assert status == 503 and json.loads(raw)["code"] == 2
    sock.close()
    assert ticker.closed.wait(5)
    assert fetch(serving.url + "/generate?text=a&max_tokens=1")[0] == 200


def release_free_heap() -> None:
    """Hand freed malloc pages back to the OS (glibc), so RSS shows what is still held.

    Without it, RSS after a burst of 2 MiB bodies on four threads depends on how the
    per-thread arenas happened to fragment (CI once read +32 MiB for no leak at all).
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pytest.skip("needs glibc's malloc_trim to read a steady RSS")


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="RSS read from /proc (Linux)")
def test_100_mixed_requests_keep_the_server_answering_with_flat_memory(
    make_server, generation, fetch
) -> None:
    serving, service = make_server(generation, max_n=2, max_tokens=16, max_concurrency=2)
    url = serving.url

    def good_get() -> int:
        return fetch(url + "/generate?text=hello&n=2&max_tokens=8")[0]

    def good_completion() -> int:
        body = {"model": "b4t-lm", "prompt": "abc", "max_tokens": 8}
        return fetch(url + "/v1/completions", body)[0]

    def good_chat_stream() -> int:
        body = {"model": "b4t-lm", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        status, _, raw = fetch(url + "/v1/chat/completions", {**body, "max_tokens": 8})
        assert raw.rstrip().endswith(b"data: [DONE]")
        return status

    def malformed_json() -> int:
        return fetch(url + "/v1/completions", b'{"model": "b4t-lm", "prompt": ')[0]

    def wrong_type() -> int:
        return fetch(url + "/generate", {"text": 5})[0]

    def long_query() -> int:
        return fetch(url + "/generate?text=" + "a" * 80_000)[0]

    def big_body() -> int:
        return fetch(url + "/v1/completions", {"model": "b4t-lm", "prompt": "a" * (2 << 20)})[0]

    def too_many() -> int:
        return fetch(url + "/generate?text=a&n=100000")[0]

    def unknown_path() -> int:
        return fetch(url + "/v2/completions")[0]

    def disconnecting() -> int:
        path = "/generate/stream?text=hello&max_tokens=16"
        open_stream(url, path).close()
        return 0

    kinds = [
        (good_get, 200),
        (good_completion, 200),
        (good_chat_stream, 200),
        (malformed_json, 400),
        (wrong_type, 400),
        (long_query, 414),
        (big_body, 413),
        (too_many, 400),
        (unknown_path, 404),
        (disconnecting, 0),
    ]

    def run(i: int) -> tuple[str, int, int]:
        func, expected = kinds[i % len(kinds)]
        return func.__name__, func(), expected

    def round_of(count: int) -> None:
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(run, range(count)))
        wrong = [r for r in results if r[1] != r[2]]
        assert not wrong, wrong

    def settle() -> int:
        """Wait for the server to go idle, collect and trim, then read RSS."""
        deadline = time.monotonic() + 10
        while (service.active or threading.active_count() > threads_before) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        gc.collect()
        release_free_heap()
        return rss_bytes()

    round_of(30)  # warm-up: allocator pools, thread stacks, first-call caches
    threads_before = threading.active_count()
    tracemalloc.start()
    try:
        rss = [settle()]
        python_heap = [tracemalloc.get_traced_memory()[0]]
        # Native memory settles after a few hundred requests in a process that has loaded
        # much (per-thread arenas, glibc's cache of thread stacks: +59 MiB over 600
        # requests, then flat, in a pytest worker of the whole suite). A leak keeps rising:
        # go on until two rounds in a row add under 4 MiB (40 KiB per request).
        while len(rss) < 3 or max(rss[-1] - rss[-2], rss[-2] - rss[-3]) >= 4 << 20:
            assert len(rss) <= 15, f"RSS rose every round: {[r >> 20 for r in rss]} MiB"
            round_of(100)
            rss.append(settle())
            python_heap.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert service.active == 0
    assert threading.active_count() <= threads_before
    # Python objects: nothing kept per request (a kept 2 MiB body would show at once).
    kept = (python_heap[-1] - python_heap[1]) / 2**20
    assert kept < 1, f"Python heap grew by {kept:.2f} MiB over {len(rss) - 2} rounds"
    assert good_get() == 200  # still answering


def test_a_failure_mid_stream_is_reported_in_the_stream_and_frees_the_slot(
    make_server, tokenizer, fetch
) -> None:
    """The failure is reported (as a 500, or an error event once streaming), but the
    exception's own text stays in the server's log: no 5xx body carries it."""
    openai = pytest.importorskip("openai")
    secret = "the model fell over at /srv/weights/key=s3cr3t"

    def breaks(request: GenerationRequest) -> Iterator[str]:
        yield "a"
        yield "b"
        raise RuntimeError(secret)

    serving, service = make_server(breaks, tokenizer=tokenizer, max_tokens=10)
    client = openai.OpenAI(base_url=serving.url + "/v1", api_key="-", max_retries=0)
    seen = []
    with pytest.raises(openai.APIError, match="internal server error") as info:
        for chunk in client.completions.create(model="b4t-lm", prompt="x", stream=True):
            seen.append(chunk.choices[0].text)
    assert seen == ["a", "b"] and "s3cr3t" not in str(info.value)
    status, _, raw = fetch(serving.url + "/generate/stream?text=x")
    assert status == 200 and b"event: error\n" in raw and b"s3cr3t" not in raw
    status, _, raw = fetch(
        serving.url + "/v1/chat/completions",
        {"model": "b4t-lm", "messages": [{"role": "user", "content": "x"}]},
    )
    assert status == 500 and json.loads(raw)["error"]["type"] == "server_error"
    assert b"s3cr3t" not in raw and b"RuntimeError" not in raw
    status, _, raw = fetch(serving.url + "/generate?text=x")
    assert status == 500 and json.loads(raw)["code"] == 2
    assert b"s3cr3t" not in raw and b"RuntimeError" not in raw
    assert service.active == 0 and service.served == 4
