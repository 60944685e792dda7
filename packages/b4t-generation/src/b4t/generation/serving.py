"""``WebServing``: put a Python function behind a small JSON HTTP API (bottle).

Same calling convention as bert4torch/bert4keras:

.. code-block:: python

    server = WebServing(port=8864)
    server.route("/gen", generate, {"text": (None, True), "n": (int, False)})
    server.start()              # blocks; or server.start(background=True) ... server.stop()

``arguments`` maps a name to ``(converter, required)``: the converter (``int``,
``float``, ``bool``, any callable, or ``None`` to keep the string) turns the
raw value into the argument; ``required`` says whether a request without it
is an error. GET reads the query string; POST reads a JSON body
(``Content-Type: application/json``) or form fields.

Every answer is JSON ``{"code": 0|1|2, "desc": ..., "data": ...}``:

- 200, code 0: ``data`` is what the function returned;
- 400, code 1: a missing or badly typed argument (named in ``desc``), or a bad body;
- 413, code 1: the body is larger than ``max_body_size``;
- 500, code 2: the function raised (the traceback is logged; the server keeps serving).

With ``envelope=False`` (``route``/``wraps``) a 200 answer is the function's
return value itself, and an error is ``{"error": desc}`` with the same status.

Unlike the seed it binds 127.0.0.1 by default and runs a threaded server from
the standard library (``wsgiref`` + ``socketserver.ThreadingMixIn``) unless
another bottle server name is given.
"""

from __future__ import annotations

import json
import logging
import socketserver
import threading
from collections.abc import Callable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bottle

__all__ = ["WebServing"]

logger = logging.getLogger("b4t.generation.serving")

Arguments = Mapping[str, tuple[Callable[[Any], Any] | None, bool]]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class _BadRequest(Exception):
    """An argument problem answered with a 4xx."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request; threads do not keep the process alive."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    """Send the access log to ``logging`` (debug) instead of stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)


def _to_jsonable(value: Any) -> Any:
    """``json.dumps`` fallback for numpy and torch values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _convert(name: str, raw: Any, converter: Callable[[Any], Any] | None) -> Any:
    if converter is None:
        return raw
    if converter is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise _BadRequest(f'argument "{name}" must be a boolean, got {raw!r}')
    if converter is int and isinstance(raw, float) and not raw.is_integer():
        raise _BadRequest(f'argument "{name}" must be int, got {raw!r}')
    if isinstance(converter, type) and isinstance(raw, converter) and not isinstance(raw, bool):
        return raw
    try:
        return converter(raw)
    except (TypeError, ValueError) as exc:
        kind = getattr(converter, "__name__", "the expected type")
        raise _BadRequest(f'argument "{name}" must be {kind}, got {raw!r}') from exc


class WebServing:
    """A bottle app serving functions as JSON endpoints.

    Args:
        host: the interface to bind (``'0.0.0.0'`` to expose it on the network).
        port: the port; ``0`` picks a free one (read :attr:`port` after start).
        server: ``'auto'`` for the threaded stdlib server (supports
            background start and :meth:`stop`), or any bottle server name
            (``'waitress'``, ``'paste'``, ...) to hand over to ``bottle.run``.
        max_body_size: the largest request body accepted, in bytes.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        server: str = "auto",
        max_body_size: int = 1 << 20,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.server = server
        self.max_body_size = int(max_body_size)
        self.bottle = bottle
        self.app = bottle.Bottle()
        self.app.default_error_handler = self._error_page  # type: ignore[method-assign]
        self._httpd: _ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- responses

    @staticmethod
    def _json(status: int, code: int, desc: str, data: Any = None, envelope: bool = True) -> str:
        bottle.response.status = status
        bottle.response.content_type = "application/json; charset=utf-8"
        if envelope:
            body: Any = {"code": code, "desc": desc, "data": data}
        else:
            body = data if code == 0 else {"error": desc}
        return json.dumps(body, ensure_ascii=False, default=_to_jsonable)

    def _error_page(self, error: bottle.HTTPError) -> str:
        """JSON for bottle's own errors (404, 405, ...)."""
        bottle.response.content_type = "application/json; charset=utf-8"
        return json.dumps(
            {"code": 1, "desc": f"{error.status_line}: {error.body}", "data": None},
            ensure_ascii=False,
        )

    # ---------------------------------------------------------------- requests

    def _read_params(self, method: str) -> Mapping[str, Any]:
        request = bottle.request
        if method == "GET":
            return {key: request.query.getunicode(key) for key in request.query}
        if request.environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            raise _BadRequest("chunked request bodies are not accepted; send Content-Length", 411)
        length = request.content_length
        if length > self.max_body_size:
            raise _BadRequest(
                f"request body of {length} bytes is over the limit of {self.max_body_size}", 413
            )
        if request.content_type.split(";")[0].strip().lower() == "application/json":
            raw = request.body.read(self.max_body_size + 1)
            try:
                params = json.loads(raw.decode("utf-8")) if raw else {}
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise _BadRequest(f"the JSON body does not parse: {exc}") from exc
            if not isinstance(params, dict):
                raise _BadRequest("the JSON body must be an object of named arguments")
            return params
        return {key: request.forms.getunicode(key) for key in request.forms}

    def wraps(
        self,
        func: Callable[..., Any],
        arguments: Arguments,
        method: str = "GET",
        envelope: bool = True,
    ) -> Callable[[], str]:
        """Wrap ``func(**kwargs)`` into a bottle callback reading ``arguments``.

        ``envelope=False`` answers the bare return value (errors as ``{"error": ...}``).
        """
        method = method.upper()
        if method not in ("GET", "POST"):
            raise ValueError(f"method must be GET or POST, got {method!r}")
        for name, spec in arguments.items():
            if not (isinstance(spec, tuple | list) and len(spec) == 2):
                raise ValueError(f'arguments["{name}"] must be (converter, required), got {spec!r}')

        def endpoint() -> str:
            try:
                params = self._read_params(method)
                kwargs: dict[str, Any] = {}
                for name, (converter, required) in arguments.items():
                    raw = params.get(name)
                    if raw is None:
                        if required:
                            raise _BadRequest(f'lack of "{name}" argument')
                        continue
                    kwargs[name] = _convert(name, raw, converter)
            except _BadRequest as exc:
                return self._json(exc.status, 1, str(exc), envelope=envelope)
            try:
                data = func(**kwargs)
                return self._json(200, 0, "succeeded", data, envelope=envelope)
            except Exception as exc:
                logger.exception("%s %s failed", method, bottle.request.path)
                return self._json(500, 2, f"{type(exc).__name__}: {exc}", envelope=envelope)

        endpoint.__name__ = getattr(func, "__name__", "endpoint")
        return endpoint

    def route(
        self,
        path: str,
        func: Callable[..., Any],
        arguments: Arguments,
        method: str = "GET",
        envelope: bool = True,
    ) -> None:
        """Serve ``func`` at ``path`` (see the module docstring for ``arguments``)."""
        callback = self.wraps(func, arguments, method, envelope=envelope)
        self.app.route(path, method=method.upper(), callback=callback)

    # ---------------------------------------------------------------- running

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    def start(self, background: bool = False) -> None:
        """Serve until stopped.

        Args:
            background: serve from a daemon thread and return at once (needs
                ``server='auto'``); call :meth:`stop` to shut it down.
        """
        if self.server != "auto":
            if background:
                raise ValueError("background start needs server='auto'")
            bottle.run(self.app, host=self.host, port=self.port, server=self.server)
            return
        if self._httpd is not None:
            raise RuntimeError(f"already serving on {self.url}")
        httpd = make_server(
            self.host,
            self.port,
            self.app,
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        self._httpd = httpd
        self.port = httpd.server_address[1]
        logger.info("serving on %s", self.url)
        if background:
            self._thread = threading.Thread(
                target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            )
            self._thread.start()
            return
        try:
            httpd.serve_forever(poll_interval=0.1)
        finally:
            httpd.server_close()
            self._httpd = None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop a server started with ``start(background=True)`` and free the port."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.shutdown()
        if thread is not None:
            thread.join(timeout)
        httpd.server_close()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> WebServing:
        self.start(background=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
