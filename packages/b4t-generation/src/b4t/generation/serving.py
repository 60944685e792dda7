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
(``Content-Type: application/json``) or form fields. JSON values are
type-checked: with ``None`` the value must be a JSON string, with ``int`` /
``float`` a number (or a numeric string), never ``true``/``false``.
:func:`bounded` wraps a converter with a range (``bounded(int, 1, 8)`` caps
``n``), answering a 400 that names the argument beyond it.

Every answer is JSON ``{"code": 0|1|2, "desc": ..., "data": ...}`` (``data`` is
``{}`` in an error, as in the seed):

- 200, code 0: ``data`` is what the function returned;
- 400, code 1: a missing or badly typed argument (named in ``desc``), or a bad body
  (not JSON, not UTF-8, a lone surrogate escape, nested deeper than 64);
- 414, code 1: the URL is over 64 KiB (send long input in a POST body);
- a handler may raise :class:`RequestError` to answer its own 4xx/5xx;
- 500, code 2: the function raised; ``desc`` is a fixed line, never the exception's
  text (the traceback is logged; the server keeps serving).

With ``envelope=False`` (``route``/``wraps``) a 200 answer is the function's
return value itself, and an error is ``{"error": desc}`` with the same status.
:meth:`WebServing.add_error_format` gives the paths under a prefix their own
error body (the OpenAI routes use ``{"error": {"message": ...}}``); the 414
and bottle's 404/405 follow it too.

Unlike the seed it binds 127.0.0.1 by default and serves through waitress
(HTTP/1.1 keep-alive, a fixed pool of ``threads``, at most ``connection_limit``
open connections, idle connections closed after ``channel_timeout`` seconds, a
body over ``max_body_size`` refused with 413 before it is read), unless another
bottle server name is given. Waitress answers those protocol errors (413 before
the body, 431 for a request head over 128 KiB, a malformed request) itself, in
plain text.

Cross-origin requests are refused by browsers unless ``cors_origins`` opts in:
``"*"`` or a list of origins get ``Access-Control-Allow-Origin`` and preflight
(``OPTIONS``) answers. A 5xx body never holds the exception text (it is logged).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import bottle
from waitress import wasyncore
from waitress.server import create_server

from b4t.generation.arguments import (
    ClientGone,
    RequestError,
    bounded,
    client_disconnected,
    convert,
    parse_json_object,
)
from b4t.generation.draining import DrainingChannel

__all__ = ["ClientGone", "RequestError", "WebServing", "bounded", "client_disconnected"]

logger = logging.getLogger("b4t.generation.serving")

Arguments = Mapping[str, tuple[Callable[[Any], Any] | None, bool]]
ErrorFormat = Callable[[int, str], Any]

_MAX_URL = 65536  # a longer path + query string is a 414
_MAX_HEAD = 2 * _MAX_URL  # a longer request head is waitress's 431
INTERNAL_ERROR = "internal server error (the details are in the server's log)"
_BadRequest = RequestError  # the old private name


def _to_jsonable(value: Any) -> Any:
    """``json.dumps`` fallback for numpy and torch values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class WebServing:
    """A bottle app serving functions as JSON endpoints.

    Args:
        host: the interface to bind (``'0.0.0.0'`` to expose it on the network).
        port: the port; ``0`` picks a free one (read :attr:`port` after :meth:`bind`).
        server: ``'auto'`` for waitress (supports background start and
            :meth:`stop`), or any other bottle server name (``'cheroot'``,
            ``'paste'``, ...) to hand over to ``bottle.run``.
        max_body_size: the largest request body accepted, in bytes (413 beyond).
        threads: waitress's worker threads: requests handled at once (a
            streaming answer holds one while it streams; give at least the
            generation service's ``max_concurrency`` plus a few).
        connection_limit: open connections at most; waitress stops accepting beyond.
        channel_timeout: seconds an idle connection (keep-alive, or a client
            that stopped sending) stays open.
        cors_origins: ``None`` (the default) sends no CORS headers, so browsers
            keep other sites' pages out; ``"*"`` or a list of origins opts in.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        server: str = "auto",
        max_body_size: int = 1 << 20,
        *,
        threads: int = 16,
        connection_limit: int = 100,
        channel_timeout: float = 60.0,
        cors_origins: str | Sequence[str] | None = None,
    ) -> None:
        if threads < 1 or connection_limit < 1 or channel_timeout <= 0:
            raise ValueError("threads, connection_limit and channel_timeout must be positive")
        self.host = host
        self.port = int(port)
        self.server = server
        self.max_body_size = int(max_body_size)
        self.threads = int(threads)
        self.connection_limit = int(connection_limit)
        self.channel_timeout = float(channel_timeout)
        if isinstance(cors_origins, str):
            cors_origins = [cors_origins]
        self.cors_origins: tuple[str, ...] | None = (
            tuple(cors_origins) if cors_origins is not None else None
        )
        self.bottle = bottle
        self.app = bottle.Bottle()
        self.app.default_error_handler = self._error_page  # type: ignore[method-assign]
        self._error_formats: list[tuple[str, ErrorFormat]] = []
        self._httpd: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ---------------------------------------------------------------- responses

    def add_error_format(self, prefix: str, fmt: ErrorFormat) -> None:
        """Give paths starting with ``prefix`` their own JSON error body.

        ``fmt(status, message)`` returns the JSON-able body. The longest
        matching prefix wins; other paths get ``{"code": 1|2, "desc", "data"}``.
        """
        self._error_formats.append((prefix, fmt))
        self._error_formats.sort(key=lambda item: -len(item[0]))

    def error_body(self, status: int, message: str, path: str = "") -> Any:
        """The JSON-able error body for ``path`` (see :meth:`add_error_format`)."""
        for prefix, fmt in self._error_formats:
            if path.startswith(prefix):
                return fmt(status, message)
        return {"code": 2 if status >= 500 else 1, "desc": message, "data": {}}

    @staticmethod
    def _json(status: int, code: int, desc: str, data: Any = None, envelope: bool = True) -> str:
        bottle.response.status = status
        bottle.response.content_type = "application/json; charset=utf-8"
        if envelope:  # errors carry ``"data": {}`` as in the seed
            body: Any = {"code": code, "desc": desc, "data": {} if data is None and code else data}
        else:
            body = data if code == 0 else {"error": desc}
        return json.dumps(body, ensure_ascii=False, default=_to_jsonable)

    def json_response(self, status: int, body: Any) -> str:
        """Set ``status`` and the JSON content type on bottle's response; return the text."""
        bottle.response.status = status
        bottle.response.content_type = "application/json; charset=utf-8"
        return json.dumps(body, ensure_ascii=False, default=_to_jsonable)

    def _error_page(self, error: bottle.HTTPError) -> str:
        """JSON for bottle's own errors (404, 405, 500 from a stream, ...)."""
        bottle.response.content_type = "application/json; charset=utf-8"
        desc = f"{error.status_line}: {error.body}"
        return json.dumps(
            self.error_body(error.status_code, desc, bottle.request.path), ensure_ascii=False
        )

    # ---------------------------------------------------------------- requests

    def _check_body_size(self) -> None:
        request = bottle.request
        chunked = request.environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
        if chunked and not request.environ.get("CONTENT_LENGTH"):
            raise RequestError("chunked request bodies are not accepted; send Content-Length", 411)
        length = request.content_length
        if length > self.max_body_size:  # waitress refuses these before the app sees them
            raise RequestError(
                f"request body of {length} bytes is over the limit of {self.max_body_size}", 413
            )

    def read_json_body(self) -> dict[str, Any]:
        """The request's JSON object body; :class:`RequestError` (400/411/413) if not one.

        A body that is not UTF-8, holds a lone surrogate escape (``"\\ud800"``:
        not a character, cannot be sent back) or nests deeper than 64 levels is a 400.
        """
        self._check_body_size()
        return parse_json_object(bottle.request.body.read(self.max_body_size + 1))

    @staticmethod
    def _decoded(fields: bottle.FormsDict) -> dict[str, str]:
        """Query or form fields as text; a value that is not UTF-8 is a 400 naming it."""
        params = {}
        for key in fields:
            value = fields.getunicode(key)
            if value is None:
                raise RequestError(f'argument "{key}" is not valid UTF-8', 400, key)
            params[key] = value
        return params

    def _read_params(self, method: str) -> Mapping[str, Any]:
        request = bottle.request
        if method == "GET":
            return self._decoded(request.query)
        self._check_body_size()
        if request.content_type.split(";")[0].strip().lower() == "application/json":
            if not request.content_length:
                return {}
            return self.read_json_body()
        return self._decoded(request.forms)

    def read_arguments(self, arguments: Arguments, method: str = "GET") -> dict[str, Any]:
        """Read and convert ``arguments`` from the current request (query, form or JSON).

        Raises:
            RequestError: a missing or ill-typed argument, or a bad body.
        """
        params = self._read_params(method.upper())
        kwargs: dict[str, Any] = {}
        for name, (converter, required) in arguments.items():
            raw = params.get(name)
            if raw is None:
                if required:
                    raise RequestError(f'lack of "{name}" argument', 400, name)
                continue
            kwargs[name] = convert(name, raw, converter)
        return kwargs

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
                kwargs = self.read_arguments(arguments, method)
            except RequestError as exc:
                return self._json(exc.status, 1, str(exc), envelope=envelope)
            try:
                data = func(**kwargs)
                return self._json(200, 0, "succeeded", data, envelope=envelope)
            except RequestError as exc:
                return self._json(
                    exc.status, 2 if exc.status >= 500 else 1, str(exc), envelope=envelope
                )
            except ClientGone:  # nobody reads the answer
                return self._json(499, 1, "the client closed the connection", envelope=envelope)
            except Exception:
                logger.exception("%s %s failed", method, bottle.request.path)
                return self._json(500, 2, INTERNAL_ERROR, envelope=envelope)

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

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI application served: bottle's app, plus the 414 and CORS layers."""
        path = environ.get("PATH_INFO", "")
        if len(path) + len(environ.get("QUERY_STRING", "")) > _MAX_URL:
            desc = (
                f"414 URI Too Long: the URL is over {_MAX_URL} bytes; "
                "send long input in a POST body"
            )
            body = json.dumps(self.error_body(414, desc, path), ensure_ascii=False).encode()
            start_response(
                "414 URI Too Long",
                [("Content-Type", "application/json; charset=utf-8")],
            )
            return [body]
        allowed = self._allowed_origin(environ.get("HTTP_ORIGIN"))
        if allowed is None:
            return self.app(environ, start_response)
        cors = [("Access-Control-Allow-Origin", allowed), ("Vary", "Origin")]
        if environ.get("REQUEST_METHOD") == "OPTIONS":  # a preflight
            start_response(
                "204 No Content",
                [
                    *cors,
                    ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
                    ("Access-Control-Allow-Headers", "Authorization, Content-Type"),
                    ("Access-Control-Max-Age", "600"),
                ],
            )
            return []

        def with_cors(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            return start_response(status, [*headers, *cors], *exc)

        return self.app(environ, with_cors)

    def _allowed_origin(self, origin: str | None) -> str | None:
        """The ``Access-Control-Allow-Origin`` value for ``origin``, ``None`` when not allowed."""
        if self.cors_origins is None or not origin:
            return None
        if "*" in self.cors_origins:
            return "*"
        return origin if origin in self.cors_origins else None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    def bind(self) -> None:
        """Open the listening socket now (``server='auto'``); :attr:`port` becomes the real one.

        :meth:`start` binds by itself; call this first to learn the port of
        ``port=0`` before serving (e.g. to print it).
        """
        if self.server != "auto":
            raise ValueError("bind() needs server='auto'")
        if self._httpd is not None:
            return
        self._httpd = create_server(
            self.wsgi,
            host=self.host,
            port=self.port,
            threads=self.threads,
            # waitress counts its own listening socket and wake-up pipe among connections
            connection_limit=self.connection_limit + 2,
            channel_timeout=self.channel_timeout,
            cleanup_interval=max(1.0, min(30.0, self.channel_timeout / 2)),
            max_request_body_size=self.max_body_size,
            max_request_header_size=_MAX_HEAD,
            channel_request_lookahead=1,  # read on: notice a client that leaves mid-request
            ident="b4t",
            expose_tracebacks=False,
        )
        # the client reads a 413 sent before its body instead of a reset connection
        self._httpd.channel_class = DrainingChannel
        self.port = int(self._httpd.effective_port)

    def start(self, background: bool = False) -> None:
        """Serve until stopped.

        Args:
            background: serve from a daemon thread and return at once (needs
                ``server='auto'``); call :meth:`stop` to shut it down.
        """
        if self.server != "auto":
            if background:
                raise ValueError("background start needs server='auto'")
            bottle.run(self.wsgi, host=self.host, port=self.port, server=self.server)
            return
        if self._thread is not None:
            raise RuntimeError(f"already serving on {self.url}")
        self.bind()
        httpd = self._httpd
        logger.info("serving on %s", self.url)
        if background:
            self._stopping = threading.Event()
            self._thread = threading.Thread(
                target=self._serve_until_stopped,
                args=(httpd, self._stopping),
                name="b4t-serving",
                daemon=True,
            )
            self._thread.start()
            return
        try:
            httpd.run()
        finally:
            self._close_channels(httpd)
            httpd.task_dispatcher.shutdown()
            self._httpd = None

    @staticmethod
    def _close_channels(httpd: Any) -> None:
        """Close waitress's sockets: the listening one, open connections, its wake-up pipe."""
        for channel in list(httpd._map.values()):
            channel.close()

    def _serve_until_stopped(self, httpd: Any, stopping: threading.Event) -> None:
        """Waitress's event loop, one pass at a time until :meth:`stop` sets ``stopping``;
        then the sockets are closed here, in the loop's own thread."""
        try:
            while httpd._map and not stopping.is_set():
                wasyncore.loop(timeout=0.1, map=httpd._map, count=1)
        finally:
            self._close_channels(httpd)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop a server started with ``start(background=True)`` and free the port."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        if thread is not None and thread.is_alive():
            self._stopping.set()
            thread.join(timeout)
        else:
            self._close_channels(httpd)
        httpd.task_dispatcher.shutdown(timeout=timeout)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> WebServing:
        self.start(background=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
