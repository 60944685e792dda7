"""WebServing over real HTTP on 127.0.0.1 (a background server on a free port)."""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from b4t.generation import WebServing

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
    assert status == 500 and "RuntimeError: cannot handle x" in body["error"]


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
    payload = json.dumps({"text": "z" * 4096}).encode()
    status, body = call(server, "/repeat", body=payload)
    assert status == 413 and "limit" in body["desc"]


def test_raising_handler_answers_500_is_logged_and_server_goes_on(
    server: WebServing, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="b4t.generation.serving"):
        status, body = call(server, "/explode", {"text": "this"})
    assert status == 500 and body["code"] == 2 and "cannot handle this" in body["desc"]
    assert any("RuntimeError" in (r.exc_text or "") for r in caplog.records)
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
