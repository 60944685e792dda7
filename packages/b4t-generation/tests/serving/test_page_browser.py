"""The page at ``/`` in headless Chromium: the streamed answer appears, on screen too.

Chromium (Debian's ``chromium`` package) is driven over the DevTools protocol on
a pipe (``--remote-debugging-pipe``: JSON messages ended by NUL on fds 3 and 4),
so the test can wait for the stream to finish, watch the answer grow while it
streams, and take screenshots. Skipped, with the reason, when Chromium is absent.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)"
)


class DevTools:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire_fds() -> None:  # in the child: fd 3 reads commands, fd 4 writes answers
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-proxy-server",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=800,600",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire_fds,  # the pipe must sit on fds 3 and 4 ...
            close_fds=False,  # ... and stay open (Python's own fds are not inherited anyway)
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None

    def call(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session is not None and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._next_id:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return answer["result"]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer to {method}")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe")
            self._buffer += chunk

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url=url)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        """Poll ``expression`` until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.02)
        raise TimeoutError(f"still falsy after {timeout} s: {expression}")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[DevTools]:
    tools = DevTools(tmp_path / "profile")
    try:
        yield tools
    finally:
        tools.close()


def dark_pixels(png: bytes, box: dict[str, float]) -> int:
    """Pixels darker than mid-grey inside ``box`` (the answer area, CSS px = screen px)."""
    image_module = pytest.importorskip("PIL.Image", reason="Pillow reads the screenshot")
    image = image_module.open(io.BytesIO(png)).convert("L")
    left, top = int(box["x"]) + 4, int(box["y"]) + 4
    crop = image.crop(
        (left, top, int(box["x"] + box["width"]) - 4, int(box["y"] + box["height"]) - 4)
    )
    return sum(crop.histogram()[:128])


def test_the_page_streams_the_answer_into_view(
    make_server, generation, greedy_reference, browser: DevTools
) -> None:
    def slow(request):  # the tiny model is instant: pace it so the page is seen mid-stream
        for piece in stream(request):
            time.sleep(0.05)
            yield piece

    from b4t.generation import stream_from_generation

    stream = stream_from_generation(generation)
    serving, _ = make_server(slow, tokenizer=generation.tokenizer, max_tokens=40)
    expected, reason = greedy_reference("hello", 24)

    browser.open(serving.url + "/")
    loaded = "location.href.startsWith('http') && document.readyState === 'complete'"
    browser.wait_for(loaded)
    assert browser.js("document.getElementById('model').textContent") == "b4t-lm"
    box = browser.js(
        "JSON.parse(JSON.stringify(document.getElementById('answer').getBoundingClientRect()))"
    )
    blank = dark_pixels(browser.screenshot(), box)

    query = urllib.parse.urlencode({"prompt": "hello", "max_tokens": 24, "temperature": 0})
    browser.call("Page.navigate", url=f"{serving.url}/?{query}&autostart=1")
    browser.wait_for("location.search.includes('autostart') && !!document.getElementById('status')")
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = browser.js(
            "[document.getElementById('answer').textContent,"
            " document.getElementById('status').textContent]"
        )
        if state:
            seen.append(state[0])
            if state[1].startswith(("done", "error")):
                break
        time.sleep(0.02)
    assert state[1] == f"done ({reason})", state
    assert state[0] == expected
    assert int(browser.js("document.getElementById('answer').dataset.chunks")) == len(expected)
    partial = {text for text in seen if text and text != expected}
    assert partial and all(expected.startswith(text) for text in partial)  # it grew on screen

    box = browser.js(
        "JSON.parse(JSON.stringify(document.getElementById('answer').getBoundingClientRect()))"
    )
    shot = browser.screenshot()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    assert blank < 20 and dark_pixels(shot, box) > 200  # the streamed text is drawn


def test_the_page_is_self_contained(make_server, generation, fetch) -> None:
    serving, _ = make_server(generation)
    status, headers, raw = fetch(serving.url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    html = raw.decode()
    assert "http://" not in html and "https://" not in html  # no CDN, nothing external
    assert "<script src" not in html and "<link" not in html
    assert 'const MODEL = "b4t-lm"' in html and "__B4T_" not in html
