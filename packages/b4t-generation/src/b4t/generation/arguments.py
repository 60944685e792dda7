"""Reading a request's arguments: converters, ranges, JSON bodies and request errors.

:class:`RequestError` is how a handler answers a 4xx/5xx; :func:`convert` turns a raw
query/form string or JSON value into an argument (``None`` keeps strings, ``int`` /
``float`` / ``bool`` / any callable converts, :class:`bounded` adds a range), and
:func:`parse_json_object` checks a JSON body. :class:`~b4t.generation.WebServing`
reads every request through them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import bottle

__all__ = [
    "ClientGone",
    "RequestError",
    "bounded",
    "client_disconnected",
    "convert",
    "parse_json_object",
]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_MAX_JSON_DEPTH = 64  # deeper JSON bodies are a 400 (the stdlib parser recurses)


class RequestError(Exception):
    """A request problem answered with a JSON error (4xx by default).

    Raise it from a served function to answer ``status`` with ``message``
    instead of a 500; ``param`` names the argument at fault, if any.
    """

    def __init__(
        self, message: str, status: int = 400, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = int(status)
        self.param = param
        self.code = code  # a machine-readable reason (OpenAI's ``error.code``), if any


class ClientGone(Exception):
    """The client closed its connection: stop working on its request."""


def client_disconnected() -> Callable[[], bool]:
    """For the current bottle request: a probe answering whether its client has left.

    Waitress reads ahead on the connection while the request runs and notices
    when it closes; under another server the probe always answers ``False``.
    """
    probe = bottle.request.environ.get("waitress.client_disconnected")
    return probe if callable(probe) else _never


def _never() -> bool:
    return False


def _json_depth(text: str) -> int:
    """The deepest ``[``/``{`` nesting of a JSON text (brackets inside strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


class bounded:  # lower case: used like a converter (``int``, ``float``)
    """A converter with a range: ``bounded(int, 1, 8)`` accepts 1..8.

    Args:
        converter: ``int``, ``float`` or any callable applied first.
        low: inclusive lower bound (``None``: open).
        high: inclusive upper bound (``None``: open).
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


def _describe(raw: Any) -> str:
    return f"{raw!r} ({type(raw).__name__})" if not isinstance(raw, str) else repr(raw)


def convert(name: str, raw: Any, converter: Callable[[Any], Any] | None) -> Any:
    """Turn a raw query/form string or JSON value into the argument, or raise a 400."""
    if converter is None:
        if not isinstance(raw, str):  # a JSON body: None keeps *strings*, as the seed's GET
            raise RequestError(
                f'argument "{name}" must be a string, got {_describe(raw)}', 400, name
            )
        return raw
    if isinstance(converter, bounded):
        value = convert(name, raw, converter.converter)
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


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object; :class:`RequestError` (400) if it is not one.

    A body that is not UTF-8, holds a lone surrogate escape (``"\\ud800"``: not a
    character, cannot be sent back) or nests deeper than 64 levels is a 400.
    """
    if not raw:
        raise RequestError("the request needs a JSON object body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"the JSON body is not valid UTF-8: {exc}") from exc
    brackets = text.count("[") + text.count("{")
    if brackets > _MAX_JSON_DEPTH and _json_depth(text) > _MAX_JSON_DEPTH:
        raise RequestError(f"the JSON body nests deeper than {_MAX_JSON_DEPTH} levels")
    try:
        params = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise RequestError(f"the JSON body does not parse: {exc}") from exc
    if not isinstance(params, dict):
        raise RequestError("the JSON body must be an object of named arguments")
    try:  # a "\\udXXX" escape with no partner decodes to a lone surrogate
        json.dumps(params, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestError(
            "the JSON body holds a lone surrogate escape (\\ud800-\\udfff without its "
            "pair): not valid Unicode"
        ) from exc
    return params
