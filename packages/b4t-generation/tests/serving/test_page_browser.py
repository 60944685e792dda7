"""The page at ``/`` in headless Chromium, driven by Playwright: it loads with no console
errors, the streamed answer appears and grows on screen.

Playwright (PyPI) drives Debian's ``chromium`` package through ``executable_path``
(Playwright's own browser download needs the internet). Skipped, with the reason,
when either is absent: ``apt-get install -y chromium``, ``pip install playwright``.
"""

from __future__ import annotations

import io
import shutil
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium)"
)


@pytest.fixture()
def page() -> Iterator[Any]:
    """A fresh Playwright page in headless Chromium that records console errors."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright not installed (pip install playwright)"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--no-proxy-server"]
        )
        try:
            tab = browser.new_page(viewport={"width": 800, "height": 600})
            tab.console_errors = []  # type: ignore[attr-defined]
            tab.on(
                "console",
                lambda m: m.type == "error" and tab.console_errors.append(m.text),
            )
            tab.on("pageerror", lambda error: tab.console_errors.append(str(error)))
            yield tab
        finally:
            browser.close()


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
    make_server, generation, greedy_reference, page
) -> None:
    def slow(request):  # the tiny model is instant: pace it so the page is seen mid-stream
        for piece in stream(request):
            time.sleep(0.05)
            yield piece

    from b4t.generation import stream_from_generation

    stream = stream_from_generation(generation)
    serving, _ = make_server(slow, tokenizer=generation.tokenizer, max_tokens=40)
    expected, reason = greedy_reference("hello", 24)

    page.goto(serving.url + "/", wait_until="load")
    assert page.text_content("#model") == "b4t-lm"
    box = page.locator("#answer").bounding_box()
    blank = dark_pixels(page.screenshot(), box)

    seen: list[str] = []  # the answer's text as the page shows it, while it streams
    page.expose_function("b4tSeen", lambda text: seen.append(text))
    page.add_init_script(
        "new MutationObserver(() => { const a = document.getElementById('answer');"
        " if (a) window.b4tSeen(a.textContent); }).observe(document, {subtree: true,"
        " childList: true, characterData: true})"  # fires before #answer exists too
    )
    query = urllib.parse.urlencode({"prompt": "hello", "max_tokens": 24, "temperature": 0})
    page.goto(f"{serving.url}/?{query}&autostart=1", wait_until="load")
    page.wait_for_function(
        "document.getElementById('status').textContent.startsWith('done')"
        " || document.getElementById('status').textContent.startsWith('error')",
        timeout=60_000,
    )
    assert page.text_content("#status") == f"done ({reason})"
    assert page.text_content("#answer") == expected
    assert int(page.get_attribute("#answer", "data-chunks")) == len(expected)
    partial = {text for text in seen if text and text != expected}
    assert partial and all(expected.startswith(text) for text in partial)  # it grew on screen

    shot = page.screenshot()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    assert blank < 20 and dark_pixels(shot, page.locator("#answer").bounding_box()) > 200
    assert page.console_errors == []  # favicon included: no 404 on the console


def test_the_page_reports_a_refused_request_without_console_errors(
    make_server, generation, page
) -> None:
    serving, _ = make_server(generation, max_tokens=10)
    query = urllib.parse.urlencode({"prompt": "hello", "max_tokens": 99})
    page.goto(f"{serving.url}/?{query}&autostart=1", wait_until="load")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('error')")
    assert "max_tokens" in page.text_content("#status")
    # the 400 itself is logged by Chromium as a failed resource load; nothing else may be
    assert [e for e in page.console_errors if "400" not in e] == []


def test_the_page_is_self_contained(make_server, generation, fetch) -> None:
    serving, _ = make_server(generation)
    status, headers, raw = fetch(serving.url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    html = raw.decode()
    assert "http://" not in html and "https://" not in html  # no CDN, nothing external
    assert "<script src" not in html and "<link" not in html
    assert 'const MODEL = "b4t-lm"' in html and "__B4T_" not in html
