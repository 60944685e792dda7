"""The seed-style ``/generate`` routes and the SSE stream, over real HTTP."""

from __future__ import annotations

import json
import socket
import urllib.parse

import pytest

from b4t.generation.sse import parse_events


@pytest.fixture()
def server(make_server, generation):
    serving, _ = make_server(generation, max_n=3, max_tokens=30)
    return serving


def get(fetch, server, path, **params):
    status, headers, raw = fetch(server.url + path + "?" + urllib.parse.urlencode(params))
    return status, headers, raw


def test_generate_greedy_equals_reference_in_the_seed_envelope(
    server, fetch, greedy_reference
) -> None:
    status, _, raw = get(fetch, server, "/generate", text="hello", temperature=0, max_tokens=9)
    assert status == 200
    body = json.loads(raw)
    assert (body["code"], body["desc"]) == (0, "succeeded")
    assert body["data"] == [greedy_reference("hello", 9)[0]]


def test_generate_n_samples_seeded(server, fetch) -> None:
    args = {"text": "abc", "n": 3, "topk": 5, "topp": 0.9, "temperature": 1.2, "seed": 4}
    first = json.loads(get(fetch, server, "/generate", **args)[2])["data"]
    again = json.loads(get(fetch, server, "/generate", **args)[2])["data"]
    assert len(first) == 3 and first == again


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"text": "a", "n": 4}, 'argument "n" must be <= 3'),
        ({"text": "a", "n": 100000}, 'argument "n" must be <= 3'),
        ({"text": "a", "n": 0}, 'argument "n" must be >= 1'),
        ({"text": "a", "max_tokens": 31}, 'argument "max_tokens" must be <= 30'),
        ({"text": "a", "topp": 0}, 'argument "topp" must be > 0'),
        ({"text": "a", "temperature": "warm"}, 'argument "temperature" must be float'),
        ({"n": 1}, 'lack of "text"'),
        ({"text": "x" * 80, "max_tokens": 20}, "maximum context length is 96"),
        ({"text": "\u00e9"}, "outside the alphabet"),
    ],
)
def test_generate_bad_arguments_are_json_400s(server, fetch, params, words) -> None:
    status, headers, raw = get(fetch, server, "/generate", **params)
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    body = json.loads(raw)
    assert body["code"] == 1 and words in body["desc"]


def test_generate_post_json_is_type_checked(server, fetch) -> None:
    status, _, raw = fetch(server.url + "/generate", body={"text": 5})
    assert status == 400 and 'argument "text" must be a string' in json.loads(raw)["desc"]
    status, _, raw = fetch(server.url + "/generate", body={"text": "hi", "n": True})
    assert status == 400 and 'argument "n" must be int' in json.loads(raw)["desc"]
    status, _, raw = fetch(server.url + "/generate", body={"text": "hi", "n": 2, "seed": 1})
    assert status == 200 and len(json.loads(raw)["data"]) == 2


def test_stream_sends_one_event_per_token_then_done(server, fetch, greedy_reference) -> None:
    status, headers, raw = get(
        fetch, server, "/generate/stream", text="hello", temperature=0, max_tokens=12
    )
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = list(parse_events([raw]))
    text, reason = greedy_reference("hello", 12)
    pieces = [e.json()["text"] for e in events if e.event == "message"]
    assert "".join(pieces) == text and len(pieces) == len([c for c in text])
    assert events[-1].event == "done"
    assert events[-1].json() == {"text": text, "finish_reason": reason, "completion_tokens": 12}


def test_stream_errors_before_streaming_are_json(server, fetch) -> None:
    status, headers, raw = get(fetch, server, "/generate/stream", text="a", max_tokens=99)
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert 'argument "max_tokens" must be <= 30' in json.loads(raw)["desc"]


def test_a_query_over_80_kb_is_a_json_414(server, fetch) -> None:
    status, headers, raw = get(fetch, server, "/generate", text="a" * 80_000)
    assert status == 414 and headers["Content-Type"].startswith("application/json")
    body = json.loads(raw)
    assert body["code"] == 1 and "414" in body["desc"] and "POST" in body["desc"]
    status, _, raw = get(fetch, server, "/v1/models", junk="b" * 80_000)
    assert status == 414 and "the URL is over" in json.loads(raw)["error"]["message"]
    assert get(fetch, server, "/generate", text="ok", max_tokens=2)[0] == 200  # still serving


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(make_server, generation):
    """A 20 MB body: the 413 comes back while the client has sent only the headers."""
    serving, _ = make_server(generation, max_body_size=4096)
    for path, size in (("/v1/completions", 20_000_000), ("/generate", 9000)):
        with socket.create_connection(("127.0.0.1", serving.port), timeout=5) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {size}\r\n\r\n".encode()
            )
            head = sock.recv(4096)  # no body sent: a server reading it first would hang here
        assert head.startswith(b"HTTP/1.1 413 "), head
