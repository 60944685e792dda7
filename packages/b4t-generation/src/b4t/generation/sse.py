"""Server-sent events (``text/event-stream``): writing and reading them.

An event is ``field: value`` lines ended by a blank line; ``data`` may span
several lines (one ``data:`` line each). See the WHATWG HTML standard,
"Server-sent events".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["SSE_HEADERS", "Event", "format_event", "parse_events"]

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # proxies (nginx) must not buffer the stream
}


@dataclass(frozen=True)
class Event:
    """One parsed event: its ``event`` name (``'message'`` by default) and ``data``."""

    data: str
    event: str = "message"
    id: str | None = None

    def json(self) -> Any:
        """``data`` parsed as JSON."""
        return json.loads(self.data)


def format_event(data: Any, event: str | None = None, id: str | None = None) -> bytes:
    """One event as UTF-8 bytes; ``data`` that is not a string is sent as compact JSON."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    lines = []
    if event is not None:
        if "\n" in event or "\r" in event:
            raise ValueError("an event name cannot hold a line break")
        lines.append(f"event: {event}")
    if id is not None:
        lines.append(f"id: {id}")
    lines.extend(f"data: {line}" for line in text.replace("\r\n", "\n").split("\n"))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def parse_events(chunks: Iterable[bytes]) -> Iterator[Event]:
    """Read events from a byte stream split anywhere (comments and retry lines skipped)."""
    buffer = b""
    data: list[str] = []
    name, ident = "message", None
    for chunk in chunks:
        buffer += chunk
        while True:
            cut = buffer.find(b"\n")
            if cut < 0:
                break
            raw, buffer = buffer[:cut], buffer[cut + 1 :]
            line = raw.rstrip(b"\r").decode("utf-8")
            if not line:
                if data:
                    yield Event("\n".join(data), name, ident)
                data, name = [], "message"
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "data":
                data.append(value)
            elif key == "event":
                name = value
            elif key == "id":
                ident = value
