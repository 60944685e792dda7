"""``GET /``: one small HTML page (no build step, no CDN) that streams completions.

The page (``page.html``, shipped as package data) posts the prompt to
``/v1/completions`` with ``"stream": true`` and appends each server-sent
chunk to the answer box as it arrives. Query parameters ``prompt``,
``max_tokens``, ``temperature`` fill the form; ``autostart=1`` submits it.
"""

from __future__ import annotations

import json
from importlib.resources import files

import bottle

from b4t.generation.service import GenerationService
from b4t.generation.serving import WebServing

__all__ = ["add_page_route", "render_page"]


def _script_json(value: str) -> str:
    """A JSON string literal safe inside ``<script>``."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")


def render_page(model_name: str, api_prefix: str = "/v1", max_tokens: int = 64) -> str:
    """The page's HTML for ``model_name``, calling the API under ``api_prefix``; its
    max-tokens box starts at ``max_tokens``."""
    template = files("b4t.generation").joinpath("page.html").read_text(encoding="utf-8")
    return (
        template.replace("__B4T_MODEL__", _script_json(model_name))
        .replace("__B4T_API__", _script_json(api_prefix.rstrip("/")))
        .replace("__B4T_MAX_TOKENS__", str(int(max_tokens)))
    )


def add_page_route(
    serving: WebServing, service: GenerationService, path: str = "/", api_prefix: str = "/v1"
) -> None:
    """Serve the page at ``path``."""
    html = render_page(service.model_name, api_prefix, service.limits.default_max_tokens)

    def page() -> str:
        bottle.response.content_type = "text/html; charset=utf-8"
        bottle.response.set_header("Cache-Control", "no-cache")
        return html

    def no_icon() -> str:  # the browser asks for one; a 404 would be a console error
        bottle.response.status = 204
        return ""

    serving.app.route(path, method="GET", callback=page)
    serving.app.route("/favicon.ico", method="GET", callback=no_icon)
