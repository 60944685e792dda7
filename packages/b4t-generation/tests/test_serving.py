"""WebServing over real HTTP on 127.0.0.1 (a background server on a free port)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from b4t.generation import RequestError, WebServing, bounded

# Never route 127.0.0.1 through an http_proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def repeat(text: str, n: int = 1) -> dict[str, Any]:
    return {"text": text * n, "n": n}


def explode(text: str) -> None:
    raise RuntimeError(f"cannot handle {text}")


def flag(on: bool) -> bool:
    return not on


@pytest.fixture(scope="module")
def server() -> Iterator[WebServing]:
    serving = WebServing(port=0, max_body_size=2048)
    serving.route("/repeat", repeat, {"text": (None, True), "n": (int, False)})
    serving.route("/repeat", repeat, {"text": (None, True), "n": (int, False)}, method="POST")
    serving.route("/explode", explode, {"text": (None, True)})
    serving.route("/flag", flag, {"on": (bool, True)})
    serving.route("/bare", repeat, {"text": (None, True), "n": (int, False)}, envelope=False)
    serving.route("/bare-explode", explode, {"text": (None, True)}, envelope=False)
    serving.start(background=True)
    try:
        yield serving
    finally:
        serving.stop()


def call(
    server: WebServing,
    path: str,
    params: dict[str, Any] | None = None,
    body: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any]]:
    url = server.url + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url, data=body)
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with OPENER.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_binds_localhost_and_a_real_port(server: WebServing) -> None:
    assert server.host == "127.0.0.1"
    assert server.port > 0


def test_get_with_converted_arguments(server: WebServing) -> None:
    status, body = call(server, "/repeat", {"text": "ab", "n": "3"})
    assert status == 200
    assert body == {"code": 0, "desc": "succeeded", "data": {"text": "ababab", "n": 3}}
    status, body = call(server, "/repeat", {"text": "你好"})
    assert (status, body["data"]) == (200, {"text": "你好", "n": 1})


def test_missing_and_ill_typed_arguments_answer_400(server: WebServing) -> None:
    status, body = call(server, "/repeat", {"n": "2"})
    assert status == 400 and body["code"] == 1 and '"text"' in body["desc"]
    status, body = call(server, "/repeat", {"text": "a", "n": "two"})
    assert status == 400 and '"n"' in body["desc"] and "int" in body["desc"]
    status, body = call(server, "/flag", {"on": "maybe"})
    assert status == 400 and '"on"' in body["desc"]
    assert call(server, "/flag", {"on": "false"}) == (
        200,
        {"code": 0, "desc": "succeeded", "data": True},
    )


def test_without_envelope_the_answer_is_the_bare_value(server: WebServing) -> None:
    assert call(server, "/bare", {"text": "ab", "n": "2"}) == (200, {"text": "abab", "n": 2})
    status, body = call(server, "/bare", {"n": "2"})
    assert status == 400 and set(body) == {"error"} and '"text"' in body["error"]
    status, body = call(server, "/bare-explode", {"text": "x"})
    assert status == 500 and "internal server error" in body["error"]
    assert "cannot handle" not in body["error"]  # the exception stays in the log


def test_post_json_and_form(server: WebServing) -> None:
    payload = json.dumps({"text": "xy", "n": 2}).encode()
    status, body = call(server, "/repeat", body=payload)
    assert (status, body["data"]) == (200, {"text": "xyxy", "n": 2})
    form = urllib.parse.urlencode({"text": "q", "n": "4"}).encode()
    status, body = call(
        server, "/repeat", body=form, content_type="application/x-www-form-urlencoded"
    )
    assert (status, body["data"]) == (200, {"text": "qqqq", "n": 4})
    status, body = call(server, "/repeat", body=json.dumps({"text": "a", "n": 2.5}).encode())
    assert status == 400 and '"n"' in body["desc"]
    status, body = call(server, "/repeat", body=b"{not json")
    assert status == 400 and "JSON" in body["desc"]
    status, body = call(server, "/repeat", body=b"[1, 2]")
    assert status == 400 and "object" in body["desc"]


def test_body_over_the_limit_answers_413(server: WebServing) -> None:
    """Waitress refuses it (plain text) before the app, or anyone, reads the body."""
    payload = json.dumps({"text": "z" * 4096}).encode()
    request = urllib.request.Request(server.url + "/repeat", data=payload)
    request.add_header("Content-Type", "application/json")
    with pytest.raises(urllib.error.HTTPError) as info:
        OPENER.open(request, timeout=10)
    assert info.value.code == 413
    assert call(server, "/repeat", {"text": "ok"})[0] == 200


def test_raising_handler_answers_500_is_logged_and_server_goes_on(
    server: WebServing, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="b4t.generation.serving"):
        status, body = call(server, "/explode", {"text": "this"})
    assert status == 500 and body["code"] == 2 and "internal server error" in body["desc"]
    assert "cannot handle" not in body["desc"]  # logged, not sent
    assert any("cannot handle this" in (r.exc_text or "") for r in caplog.records)
    assert call(server, "/repeat", {"text": "ok"})[0] == 200


def test_unknown_path_is_a_json_404(server: WebServing) -> None:
    status, body = call(server, "/nope")
    assert status == 404 and body["code"] == 1


def test_fifty_concurrent_requests_all_succeed(server: WebServing) -> None:
    barrier = threading.Barrier(10)

    def slow(i: int) -> int:
        if i < 10:
            barrier.wait(timeout=10)  # ten handlers in flight at once: the server is threaded
        return i * i

    server.route("/square", slow, {"i": (int, True)})
    with ThreadPoolExecutor(max_workers=25) as pool:
        results = list(pool.map(lambda i: call(server, "/square", {"i": i}), range(50)))
    assert [status for status, _ in results] == [200] * 50
    assert [body["data"] for _, body in results] == [i * i for i in range(50)]


def test_stop_frees_the_port_and_bad_routes_are_rejected() -> None:
    serving = WebServing(port=0)
    serving.route("/r", repeat, {"text": (None, True)})
    with serving:
        port = serving.port
        assert call(serving, "/r", {"text": "a"})[0] == 200
    again = WebServing(port=port)
    again.start(background=True)  # the port is free again
    again.stop()
    with pytest.raises(ValueError, match="GET or POST"):
        serving.route("/x", repeat, {}, method="DELETE")
    with pytest.raises(ValueError, match='arguments\\["text"\\]'):
        serving.route("/x", repeat, {"text": None})  # type: ignore[dict-item]


# ---------------------------------------------------------------- seed compatibility II (#12)


def test_a_query_over_80_kb_is_a_json_414_and_the_server_goes_on(server: WebServing) -> None:
    status, body = call(server, "/repeat", {"text": "a" * 80_000})
    assert status == 414 and body["code"] == 1
    assert "414" in body["desc"] and "POST body" in body["desc"]
    assert call(server, "/repeat", {"text": "ok"})[0] == 200


def test_headers_over_the_limit_are_a_431(server: WebServing) -> None:
    request = urllib.request.Request(server.url + "/repeat?text=a")
    request.add_header("X-Huge", "h" * 140_000)  # the head limit is 128 KiB (waitress: text)
    with pytest.raises(urllib.error.HTTPError) as info:
        OPENER.open(request, timeout=10)
    assert info.value.code == 431
    assert call(server, "/repeat", {"text": "ok"})[0] == 200


def test_json_bodies_are_type_checked_with_a_none_converter(server: WebServing) -> None:
    status, body = call(server, "/repeat", body=json.dumps({"text": 5}).encode())
    assert status == 400 and body["desc"] == 'argument "text" must be a string, got 5 (int)'
    for bad in ([1, 2], {"a": 1}, True, None):
        status, body = call(server, "/repeat", body=json.dumps({"text": "a", "n": bad}).encode())
        if bad is None:  # JSON null: absent, the default applies
            assert (status, body["data"]) == (200, {"text": "a", "n": 1})
        else:
            assert status == 400 and body["desc"].startswith('argument "n" must be int'), body
    status, body = call(server, "/repeat", body=json.dumps({"text": "a", "n": 2.0}).encode())
    assert (status, body["data"]) == (200, {"text": "aa", "n": 2})
    status, body = call(server, "/repeat", body=json.dumps({"text": "a", "n": "3"}).encode())
    assert (status, body["data"]) == (200, {"text": "aaa", "n": 3})  # as from a query string


def test_bounded_caps_an_argument_with_a_json_400() -> None:
    serving = WebServing(port=0)
    serving.route("/r", repeat, {"text": (None, True), "n": (bounded(int, 1, 16), False)})
    with serving:
        assert call(serving, "/r", {"text": "a", "n": 16})[1]["data"] == {"text": "a" * 16, "n": 16}
        status, body = call(serving, "/r", {"text": "a", "n": 100000})
        assert (status, body["desc"]) == (400, 'argument "n" must be <= 16, got 100000')
        status, body = call(serving, "/r", {"text": "a", "n": 0})
        assert (status, body["desc"]) == (400, 'argument "n" must be >= 1, got 0')
    assert bounded(float, 0, low_open=True)(0.5) == 0.5
    with pytest.raises(RequestError, match="> 0"):
        bounded(float, 0, low_open=True)(0)


def test_handlers_raise_request_error_for_their_own_status() -> None:
    def picky(text: str) -> str:
        raise RequestError(f"{text!r} is too long for this model", 413)

    serving = WebServing(port=0)
    serving.route("/picky", picky, {"text": (None, True)})
    serving.add_error_format("/api/", lambda status, message: {"error": {"message": message}})
    with serving:
        assert call(serving, "/picky", {"text": "abc"}) == (
            413,
            {"code": 1, "desc": "'abc' is too long for this model", "data": {}},
        )
        status, body = call(serving, "/api/missing")
        assert status == 404 and set(body) == {"error"}
        status, body = call(serving, "/api/x", {"q": "z" * 70_000})
        assert status == 414 and "the URL is over" in body["error"]["message"]


def test_bind_reports_the_real_port_before_serving() -> None:
    serving = WebServing(port=0)
    serving.bind()
    assert serving.port > 0
    serving.start(background=True)
    try:
        assert call(serving, "/nope")[0] == 404
    finally:
        serving.stop()


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "serve_tiny_lm.py"


def test_the_example_server_prints_the_port_it_listens_on() -> None:
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        match = re.search(r"serving on http://127\.0\.0\.1:(\d+)/", line)
        assert match, (line, process.stderr.read() if process.poll() is not None else "")
        port = int(match.group(1))
        assert port != 0
        url = f"http://127.0.0.1:{port}/generate?text=Hello&n=2&max_tokens=5"
        with OPENER.open(url, timeout=30) as response:
            body = json.loads(response.read())
        assert body["code"] == 0 and len(body["data"]) == 2
    finally:
        process.terminate()
        process.wait(timeout=10)
