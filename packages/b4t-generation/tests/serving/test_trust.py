"""Serving you can trust (issue #19): the edge cases found, each answered as OpenAI would
(a 4xx naming the problem, never a 500 or a silent 200), work that stops when its client
leaves, keep-alive, idle timeouts, the connection cap, /health and opt-in CORS.

Everything runs on 127.0.0.1 with bounded loops and timeouts."""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest

from b4t.generation import WebServing
from b4t.generation.routes import add_generation_routes

openai = pytest.importorskip("openai")


@pytest.fixture()
def served(make_server, generation):
    serving, service = make_server(generation, max_tokens=30)
    client = openai.OpenAI(base_url=serving.url + "/v1", api_key="-", max_retries=0)
    return serving, service, client


def raw_post(serving: WebServing, path: str, body: bytes) -> tuple[int, dict]:
    """POST ``body`` as it is (no re-encoding by a client library): status and JSON answer."""
    conn = http.client.HTTPConnection("127.0.0.1", serving.port, timeout=10)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


# ---------------------------------------------------------------- bad input: 4xx, OpenAI-shaped


def test_a_lone_surrogate_is_a_400_not_a_500(served, fetch) -> None:
    serving, service, _ = served
    for path, body in (
        ("/v1/completions", b'{"model": "b4t-lm", "prompt": "\\ud800", "echo": true}'),
        ("/v1/chat/completions", b'{"model": "b4t-lm", "messages": '
         b'[{"role": "user", "content": "a\\udfffb"}]}'),
        ("/generate", b'{"text": "\\ud800"}'),
    ):  # fmt: skip
        status, answer = raw_post(serving, path, body)
        message = answer["error"]["message"] if "error" in answer else answer["desc"]
        assert status == 400 and "surrogate" in message, (path, answer)
    for path in ("/generate?text=%ED%A0%80", "/generate?text=%FF", "/generate/stream?text=%FF"):
        status, _, raw = fetch(serving.url + path)  # percent-encoded bytes that are not UTF-8
        assert status == 400 and 'argument "text" is not valid UTF-8' in json.loads(raw)["desc"]
    # a proper pair is a real character (outside the tokenizer's alphabet here): still no 500
    status, answer = raw_post(
        serving, "/v1/completions", b'{"model": "b4t-lm", "prompt": "\\ud83d\\ude00"}'
    )
    assert status == 400 and answer["error"]["param"] == "prompt"
    assert service.active == 0


@pytest.mark.parametrize("depth", [65, 100_000])
def test_deeply_nested_json_is_a_400(served, depth) -> None:
    serving, _, _ = served
    body = b'{"model": "b4t-lm", "prompt": "a", "user": ' + b"[" * depth + b"]" * depth + b"}"
    status, answer = raw_post(serving, "/v1/completions", body)
    assert status == 400 and "nests deeper than 64" in answer["error"]["message"]
    status, answer = raw_post(serving, "/v1/completions", b"[" * depth)  # not even closed
    assert status == 400
    # brackets inside strings are text, not nesting
    ok = json.dumps({"model": "b4t-lm", "prompt": "a", "max_tokens": 1, "user": "[" * 500})
    assert raw_post(serving, "/v1/completions", ok.encode())[0] == 200


def test_an_unknown_model_is_a_404_model_not_found(served) -> None:
    _, _, client = served
    with pytest.raises(openai.NotFoundError) as info:
        client.completions.create(model="gpt-4o", prompt="hi", max_tokens=2)
    assert info.value.body["code"] == "model_not_found" and "gpt-4o" in info.value.body["message"]
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    assert info.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-4o")
    assert info.value.body["code"] == "model_not_found"


def test_a_prompt_beyond_the_context_is_a_400_context_length_exceeded(served) -> None:
    """1,000,000 characters (the model reads 96): refused, never silently cut to fit."""
    _, service, client = served
    context = service.limits.max_context
    for prompt, max_tokens in (("a" * 1_000_000, 1), ("a" * (context - 4), 5)):
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(model="b4t-lm", prompt=prompt, max_tokens=max_tokens)
        body = info.value.body
        assert body["code"] == "context_length_exceeded" and body["param"] == "prompt"
        assert f"maximum context length is {context} tokens" in body["message"]
        assert f"you requested {len(prompt) + max_tokens} tokens" in body["message"]
    answer = client.completions.create(model="b4t-lm", prompt="a" * (context - 5), max_tokens=5)
    assert answer.usage.prompt_tokens + answer.usage.completion_tokens <= context


@pytest.mark.parametrize("temperature", [-0.1, 2.5, 1e9])
def test_a_temperature_outside_0_2_is_a_400(served, fetch, temperature) -> None:
    serving, _, client = served
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="b4t-lm", prompt="hi", temperature=temperature)
    assert info.value.body["param"] == "temperature"
    status, _, raw = fetch(f"{serving.url}/generate?text=hi&temperature={temperature}")
    assert status == 400 and '"temperature"' in json.loads(raw)["desc"]
    answer = client.completions.create(model="b4t-lm", prompt="hi", temperature=2, max_tokens=2)
    assert answer.choices[0].finish_reason in ("length", "stop")


def test_unsupported_and_unknown_fields_are_400s_naming_them(served) -> None:
    _, service, client = served
    messages = [{"role": "user", "content": "hi"}]
    cases = [
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
    ]
    for kwargs, name in cases:
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="b4t-lm", messages=messages, **kwargs)
        assert info.value.body["param"] == name and f"'{name}'" in info.value.body["message"]
        assert "not supported" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:  # every one named, not the first only
        client.chat.completions.create(
            model="b4t-lm",
            messages=messages,
            extra_body={"response_format": {"type": "json_object"}, "tools": [], "foo": 1},
        )
    message = info.value.body["message"]
    assert "'response_format'" in message and "'tools'" in message
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="b4t-lm", prompt="hi", extra_body={"temprature": 0})
    assert (
        "unrecognized" in info.value.body["message"]
        and "'temprature'" in (info.value.body["message"])
    )
    assert service.active == 0


# ---------------------------------------------------------------- work stops when the client leaves


@pytest.mark.parametrize(
    "request_head",
    [
        "POST /v1/completions",
        "POST /v1/chat/completions",
        "GET /generate?text=hi&max_tokens=1000",
    ],
)
def test_a_non_streaming_request_stops_generating_when_its_client_leaves(
    make_server, tokenizer, fetch, request_head, make_ticker
) -> None:
    ticker = make_ticker()
    serving, service = make_server(ticker, tokenizer=tokenizer, max_tokens=1000)
    method, path = request_head.split(" ")
    body = b""
    if method == "POST":
        fields = {"model": "b4t-lm", "max_tokens": 1000}
        if "chat" in path:
            fields["messages"] = [{"role": "user", "content": "hi"}]
        else:
            fields["prompt"] = "hi"
        body = json.dumps(fields).encode()
    sock = socket.create_connection(("127.0.0.1", serving.port), timeout=10)
    sock.sendall(
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    deadline = time.monotonic() + 5
    while service.active == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert service.active == 1
    time.sleep(0.1)  # a few tokens in
    sock.close()
    assert ticker.closed.wait(5), "the generation ran on after its client left"
    assert ticker.produced[0] < 500  # 1000 tokens take 20 s: it stopped early
    deadline = time.monotonic() + 5
    while service.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert service.active == 0
    assert fetch(serving.url + "/generate?text=hi&max_tokens=2")[0] == 200


# ---------------------------------------------------------------- the HTTP server


def test_keep_alive_serves_many_requests_on_one_connection(served) -> None:
    serving, _, _ = served
    conn = http.client.HTTPConnection("127.0.0.1", serving.port, timeout=10)
    try:
        sockets = set()
        for _ in range(5):
            conn.request("GET", "/health")
            response = conn.getresponse()
            assert response.status == 200 and response.version == 11
            assert response.getheader("Connection", "").lower() != "close"
            response.read()
            sockets.add(conn.sock.getsockname())
        assert len(sockets) == 1  # one TCP connection (same local port) for all five
    finally:
        conn.close()


def test_health_answers(served, fetch) -> None:
    serving, _, client = served
    client.completions.create(model="b4t-lm", prompt="hi", max_tokens=2)
    status, headers, raw = fetch(serving.url + "/health")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert json.loads(raw) == {"status": "ok", "model": "b4t-lm", "active": 0, "served": 1}


def test_an_idle_connection_is_closed_after_channel_timeout(generation) -> None:
    serving = WebServing(port=0, channel_timeout=1)
    add_generation_routes(serving, generation)
    with serving:
        sock = socket.create_connection(("127.0.0.1", serving.port), timeout=10)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # the head is never finished
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server, not by our 10 s timeout
        assert time.monotonic() - started < 5
        sock.close()


def test_connections_beyond_the_limit_wait_until_one_closes(generation) -> None:
    serving = WebServing(port=0, connection_limit=2)
    add_generation_routes(serving, generation)
    with serving:
        idle = [socket.create_connection(("127.0.0.1", serving.port)) for _ in range(2)]
        time.sleep(0.3)  # both accepted
        conn = http.client.HTTPConnection("127.0.0.1", serving.port, timeout=0.5)
        with pytest.raises((TimeoutError, socket.timeout)):
            conn.request("GET", "/health")
            conn.getresponse()  # the third is not accepted while two are open
        conn.close()
        for sock in idle:
            sock.close()
        time.sleep(0.3)
        conn = http.client.HTTPConnection("127.0.0.1", serving.port, timeout=5)
        conn.request("GET", "/health")
        assert conn.getresponse().status == 200
        conn.close()


def test_cors_is_off_unless_asked_for(generation) -> None:
    def ask(serving: WebServing, method: str) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", serving.port, timeout=10)
        headers = {
            "Origin": "http://elsewhere.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        conn.request(method, "/v1/models", headers=headers)
        response = conn.getresponse()
        response.read()
        conn.close()
        return response

    closed = WebServing(port=0)
    add_generation_routes(closed, generation)
    with closed:
        assert ask(closed, "GET").getheader("Access-Control-Allow-Origin") is None
        assert ask(closed, "OPTIONS").getheader("Access-Control-Allow-Origin") is None
    for origins, allowed in (
        ("*", "*"),
        (["http://elsewhere.example"], "http://elsewhere.example"),
    ):
        opened = WebServing(port=0, cors_origins=origins)
        add_generation_routes(opened, generation)
        with opened:
            assert ask(opened, "GET").getheader("Access-Control-Allow-Origin") == allowed
            preflight = ask(opened, "OPTIONS")
            assert preflight.status == 204
            assert preflight.getheader("Access-Control-Allow-Origin") == allowed
            assert "POST" in preflight.getheader("Access-Control-Allow-Methods")
    other = WebServing(port=0, cors_origins=["http://mine.example"])
    add_generation_routes(other, generation)
    with other:
        assert ask(other, "GET").getheader("Access-Control-Allow-Origin") is None


def test_a_20_mb_body_gets_a_413_not_a_broken_pipe(served, fetch) -> None:
    """The 413 is sent as soon as the headers arrive; the connection then half-closes and
    drops the rest of the body, so a client still sending reads the 413 (waitress alone
    closed at once: the kernel reset the connection under the sending client)."""
    serving, service, client = served
    for _ in range(3):
        status, _, _ = fetch(serving.url + "/v1/completions", body=b"{" + b" " * 20_000_000)
        assert status == 413
    with pytest.raises(openai.APIStatusError) as info:  # the official client sees it too
        client.completions.create(model="b4t-lm", prompt="a" * (2 << 20))
    assert info.value.status_code == 413
    assert fetch(serving.url + "/health")[0] == 200 and service.active == 0
