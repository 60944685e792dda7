"""Text-generation routes on a :class:`~b4t.generation.WebServing`.

:func:`add_generation_routes` adds, for one :class:`GenerationService`:

- ``GET|POST /generate?text=...&n=...&topk=...&topp=...&temperature=...&max_tokens=...&seed=...``:
  the seed-style route, answering ``{"code": 0, "desc": "succeeded", "data": [n texts]}``;
- ``GET /generate/stream?text=...``: the same for one completion as server-sent
  events, ``data: {"text": piece}`` per token then ``event: done`` with
  ``{"text", "finish_reason", "completion_tokens"}`` (``event: error`` if it fails);
- the OpenAI-compatible ``/v1/models``, ``/v1/completions`` and
  ``/v1/chat/completions`` (:mod:`b4t.generation.openai_api`);
- ``GET /health``: ``{"status": "ok", "model", "active", "served"}`` (200 while serving);
- ``GET /``: a page with a prompt box that streams the answer (:mod:`b4t.generation.page`).

Errors are JSON with a 4xx/5xx status: the seed routes in the
``{"code", "desc", "data"}`` envelope, the ``/v1`` routes in OpenAI's shape;
a 5xx never carries exception text. ``temperature`` is capped at 2 as in OpenAI's
API. A client that disconnects stops its generation at the next token.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import bottle

from b4t.generation.arguments import RequestError, bounded, client_disconnected
from b4t.generation.openai_api import add_openai_routes, complete_while_connected
from b4t.generation.page import add_page_route
from b4t.generation.service import GenerationService, HeldStream
from b4t.generation.serving import INTERNAL_ERROR, WebServing
from b4t.generation.sse import SSE_HEADERS, format_event

__all__ = ["add_generation_routes", "add_health_route", "add_seed_routes"]

logger = logging.getLogger("b4t.generation.serving")


def _arguments(service: GenerationService, with_n: bool) -> dict[str, Any]:
    limits = service.limits
    arguments: dict[str, Any] = {
        "text": (None, True),
        "topk": (bounded(int, 1), False),
        "topp": (bounded(float, 0, 1, low_open=True), False),
        "temperature": (bounded(float, 0, 2), False),
        "max_tokens": (bounded(int, 1, limits.max_tokens), False),
        "seed": (int, False),
    }
    if with_n:
        arguments["n"] = (bounded(int, 1, limits.max_n), False)
    return arguments


def add_seed_routes(
    serving: WebServing, service: GenerationService, path: str = "/generate"
) -> None:
    """The seed-style ``path`` (GET and POST) and its streaming twin ``path + '/stream'``."""

    def generate(text: str, n: int = 1, seed: int | None = None, **options: Any) -> list[str]:
        request = service.make_request(
            text,
            n=n,
            max_tokens=options.get("max_tokens"),
            temperature=options.get("temperature", 1.0),
            topk=options.get("topk"),
            topp=options.get("topp"),
            seed=seed,
        )
        gone = client_disconnected()
        service.acquire()
        try:
            texts = []
            for i in range(n):
                texts.append(complete_while_connected(service, request.choice(i), gone=gone)[0])
            return texts
        finally:
            service.release()

    arguments = _arguments(service, with_n=True)
    serving.route(path, generate, arguments)
    serving.route(path, generate, arguments, method="POST")

    stream_arguments = _arguments(service, with_n=False)

    def stream() -> Any:
        try:
            kwargs = serving.read_arguments(stream_arguments, "GET")
            request = service.make_request(
                kwargs["text"],
                max_tokens=kwargs.get("max_tokens"),
                temperature=kwargs.get("temperature", 1.0),
                topk=kwargs.get("topk"),
                topp=kwargs.get("topp"),
                seed=kwargs.get("seed"),
            )
            service.acquire()
        except RequestError as exc:
            return serving.json_response(
                exc.status, serving.error_body(exc.status, str(exc), bottle.request.path)
            )
        for key, value in SSE_HEADERS.items():
            bottle.response.set_header(key, value)
        return HeldStream(service, _seed_events(service, request))

    serving.app.route(path.rstrip("/") + "/stream", method="GET", callback=stream)


def _seed_events(service: GenerationService, request: Any) -> Iterator[bytes]:
    completion = service.stream(request)
    parts: list[str] = []
    try:
        for text, finish in completion:
            if finish is None:
                parts.append(text)
                yield format_event({"text": text})
            else:
                done = {
                    "text": "".join(parts),
                    "finish_reason": finish,
                    "completion_tokens": completion.completion_tokens,
                }
                yield format_event(done, event="done")
    except Exception:  # headers are sent: report in the stream
        logger.exception("a /generate stream failed")
        yield format_event({"desc": INTERNAL_ERROR}, event="error")
    finally:
        completion.close()


def add_health_route(
    serving: WebServing, service: GenerationService, path: str = "/health"
) -> None:
    """``GET path``: 200 ``{"status": "ok", "model", "active", "served"}`` while serving."""

    def health() -> str:
        body = {
            "status": "ok",
            "model": service.model_name,
            "active": service.active,
            "served": service.served,
        }
        return serving.json_response(200, body)

    serving.app.route(path, method="GET", callback=health)


def add_generation_routes(
    serving: WebServing,
    backend: Any,
    tokenizer: Any = None,
    *,
    page: bool = True,
    **limits: Any,
) -> GenerationService:
    """Serve text generation on ``serving``: seed routes, OpenAI API and the page.

    Args:
        serving: the :class:`WebServing` to add routes to.
        backend: a :class:`GenerationService`, a
            :class:`~b4t.generation.SeqGeneration` (``random_sample`` mode), or a
            stream function ``GenerationRequest -> iterable of token texts``
            (the seam for a batching scheduler).
        tokenizer: ``encode``/``decode``; defaults to the generation's own.
        page: serve the HTML page at ``/``.
        **limits: :class:`GenerationService` keywords (``max_tokens``, ``max_n``,
            ``max_context``, ``max_concurrency``, ``model_name``, ...).

    Returns:
        The service (its ``active``/``served`` counters show the slots in use).
    """
    if isinstance(backend, GenerationService):
        if limits or tokenizer is not None:
            raise TypeError("give limits and tokenizer to the GenerationService itself")
        service = backend
    elif hasattr(backend, "stream_generate"):
        service = GenerationService.from_generation(backend, tokenizer, **limits)
    elif callable(backend):
        service = GenerationService(backend, tokenizer=tokenizer, **limits)
    else:
        raise TypeError(
            "backend must be a GenerationService, a SeqGeneration or a stream function, "
            f"got {type(backend).__name__}"
        )
    add_seed_routes(serving, service)
    add_openai_routes(serving, service)
    add_health_route(serving, service)
    if page:
        add_page_route(serving, service)
    return service
