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
- 400, code 1: a missing or badly typed argument (named in ``desc``), or a bad body;
- 413, code 1: the body is larger than ``max_body_size``;
- 414, code 1: the request line (URL) is over 64 KiB (send long input in a POST body);
- a handler may raise :class:`RequestError` to answer its own 4xx/5xx;
- 500, code 2: the function raised (the traceback is logged; the server keeps serving).

With ``envelope=False`` (``route``/``wraps``) a 200 answer is the function's
return value itself, and an error is ``{"error": desc}`` with the same status.
:meth:`WebServing.add_error_format` gives the paths under a prefix their own
error body (the OpenAI routes use ``{"error": {"message": ...}}``); protocol
errors (414, 431, a malformed request line) and bottle's 404/405 follow it too.

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
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server

import bottle

__all__ = ["RequestError", "WebServing", "bounded"]

logger = logging.getLogger("b4t.generation.serving")

Arguments = Mapping[str, tuple[Callable[[Any], Any] | None, bool]]
ErrorFormat = Callable[[int, str], Any]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_MAX_LINE = 65536  # the stdlib's request-line limit
_DRAIN_LIMIT = 16 << 20  # read at most this much of a refused request before answering


class RequestError(Exception):
    """A request problem answered with a JSON error (4xx by default).

    Raise it from a served function to answer ``status`` with ``message``
    instead of a 500; ``param`` names the argument at fault, if any.
    """

    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.status = int(status)
        self.param = param


_BadRequest = RequestError  # the old private name


class bounded:  # lower case: used like a converter (``int``, ``float``)
    """A converter with a range: ``bounded(int, 1, 8)`` accepts 1..8.

    Args:
        converter: ``int``, ``float`` or any callable applied first.
        low, high: inclusive bounds (``None``: open).
        low_open: exclude ``low`` itself (``bounded(float, 0, low_open=True)``: > 0).
    """

    def __init__(
        self,
        converter: Callable[[Any], Any],
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
    ) -> None:
        self.converter = converter
        self.low = low
        self.high = high
        self.low_open = low_open
        self.__name__ = getattr(converter, "__name__", "value")

    def check(self, name: str, value: Any) -> Any:
        """Raise :class:`RequestError` naming ``name`` when ``value`` is out of range."""
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            sign = ">" if self.low_open else ">="
            raise RequestError(
                f'argument "{name}" must be {sign} {self.low}, got {value!r}', 400, name
            )
        if self.high is not None and value > self.high:
            raise RequestError(
                f'argument "{name}" must be <= {self.high}, got {value!r}', 400, name
            )
        return value

    def __call__(self, raw: Any) -> Any:
        value = self.converter(raw)
        return self.check("value", value)

    def __repr__(self) -> str:
        return f"bounded({self.__name__}, {self.low}, {self.high})"


def _path_of_request_line(line: bytes) -> str:
    """The path of a (possibly truncated) raw request line, ``''`` if unreadable."""
    parts = line[:4096].split(b" ", 2)
    if len(parts) < 2:
        return ""
    return parts[1].split(b"?", 1)[0].decode("latin-1", "replace")


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request; threads do not keep the process alive."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    serving: WebServing | None = None


class _QuietHandler(WSGIRequestHandler):
    """wsgiref's handler with JSON protocol errors and the access log sent to ``logging``."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def _drain_headers(self) -> None:
        """Read the rest of a refused request's head, so closing does not reset the socket."""
        budget = _DRAIN_LIMIT
        while budget > 0:
            line = self.rfile.readline(_MAX_LINE + 1)
            budget -= len(line)
            if not line or line in (b"\r\n", b"\n"):
                return

    def handle(self) -> None:
        """One request: as wsgiref's, but a request line over 64 KiB is a JSON 414."""
        self.raw_requestline = self.rfile.readline(_MAX_LINE + 1)
        if len(self.raw_requestline) > _MAX_LINE:
            self._error_path = _path_of_request_line(self.raw_requestline)
            budget = _DRAIN_LIMIT  # the rest of the request line
            line = self.raw_requestline
            while line and not line.endswith(b"\n") and budget > 0:
                line = self.rfile.readline(_MAX_LINE + 1)
                budget -= len(line)
            self._drain_headers()
            self.requestline = ""
            self.request_version = ""
            self.command = ""
            self.send_error(
                414,
                "URI Too Long",
                f"the request line is over {_MAX_LINE} bytes; send long input in a POST body",
            )
            return
        if not self.parse_request():  # an error was sent
            return
        handler = ServerHandler(
            self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=True
        )
        handler.request_handler = self  # type: ignore[attr-defined]
        handler.run(self.server.get_app())  # type: ignore[attr-defined]

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer a protocol error (414, 431, 400, ...) with a JSON body."""
        short, long = self.responses.get(code, ("Error", ""))
        desc = f"{code} {message or short}: {explain or long}"
        path = getattr(self, "_error_path", None)
        if path is None:
            path = getattr(self, "path", "") or _path_of_request_line(
                getattr(self, "raw_requestline", b"")
            )
        serving = getattr(self.server, "serving", None)
        body_obj = (
            serving.error_body(code, desc, path)
            if serving is not None
            else {"code": 1, "desc": desc, "data": {}}
        )
        body = json.dumps(body_obj, ensure_ascii=False).encode("utf-8")
        self.log_error("code %d, message %s", code, message or short)
        self.send_response(code, message or short)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _to_jsonable(value: Any) -> Any:
    """``json.dumps`` fallback for numpy and torch values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _describe(raw: Any) -> str:
    return f"{raw!r} ({type(raw).__name__})" if not isinstance(raw, str) else repr(raw)


def _convert(name: str, raw: Any, converter: Callable[[Any], Any] | None) -> Any:
    """Turn a raw query/form string or JSON value into the argument, or raise a 400."""
    if converter is None:
        if not isinstance(raw, str):  # a JSON body: None keeps *strings*, as the seed's GET
            raise RequestError(
                f'argument "{name}" must be a string, got {_describe(raw)}', 400, name
            )
        return raw
    if isinstance(converter, bounded):
        value = _convert(name, raw, converter.converter)
        return converter.check(name, value)
    if converter is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower() if isinstance(raw, str | int) else None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise RequestError(f'argument "{name}" must be a boolean, got {_describe(raw)}', 400, name)
    if converter in (int, float):
        kind = converter.__name__
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise RequestError(f'argument "{name}" must be {kind}, got {_describe(raw)}', 400, name)
        if converter is int and isinstance(raw, float):
            if not raw.is_integer():
                raise RequestError(f'argument "{name}" must be int, got {raw!r}', 400, name)
            return int(raw)
    if isinstance(converter, type) and isinstance(raw, converter) and not isinstance(raw, bool):
        return raw
    try:
        return converter(raw)
    except RequestError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        kind = getattr(converter, "__name__", "the expected type")
        raise RequestError(
            f'argument "{name}" must be {kind}, got {_describe(raw)}', 400, name
        ) from exc


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
        self._error_formats: list[tuple[str, ErrorFormat]] = []
        self._httpd: _ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None

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
        if request.environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            raise RequestError("chunked request bodies are not accepted; send Content-Length", 411)
        length = request.content_length
        if length > self.max_body_size:
            self._drain(length)
            raise RequestError(
                f"request body of {length} bytes is over the limit of {self.max_body_size}", 413
            )

    @staticmethod
    def _drain(length: int) -> None:
        """Read and drop a refused body (up to 16 MiB) so the client sees the answer."""
        stream = bottle.request.environ.get("wsgi.input")
        left = min(length, _DRAIN_LIMIT)
        while stream is not None and left > 0:
            chunk = stream.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)

    def read_json_body(self) -> dict[str, Any]:
        """The request's JSON object body; :class:`RequestError` (400/411/413) if not one."""
        self._check_body_size()
        raw = bottle.request.body.read(self.max_body_size + 1)
        if not raw:
            raise RequestError("the request needs a JSON object body")
        try:
            params = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(f"the JSON body does not parse: {exc}") from exc
        if not isinstance(params, dict):
            raise RequestError("the JSON body must be an object of named arguments")
        return params

    def _read_params(self, method: str) -> Mapping[str, Any]:
        request = bottle.request
        if method == "GET":
            return {key: request.query.getunicode(key) for key in request.query}
        self._check_body_size()
        if request.content_type.split(";")[0].strip().lower() == "application/json":
            if not request.content_length:
                return {}
            return self.read_json_body()
        return {key: request.forms.getunicode(key) for key in request.forms}

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
            kwargs[name] = _convert(name, raw, converter)
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

    def bind(self) -> None:
        """Open the listening socket now (``server='auto'``); :attr:`port` becomes the real one.

        :meth:`start` binds by itself; call this first to learn the port of
        ``port=0`` before serving (e.g. to print it).
        """
        if self.server != "auto":
            raise ValueError("bind() needs server='auto'")
        if self._httpd is not None:
            return
        httpd = make_server(
            self.host,
            self.port,
            self.app,
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        httpd.serving = self
        self._httpd = httpd
        self.port = httpd.server_address[1]

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
        if self._thread is not None:
            raise RuntimeError(f"already serving on {self.url}")
        self.bind()
        httpd = self._httpd
        assert httpd is not None
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
        if thread is not None:
            httpd.shutdown()
            thread.join(timeout)
        httpd.server_close()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> WebServing:
        self.start(background=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
