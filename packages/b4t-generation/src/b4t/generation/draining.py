"""A waitress connection that lets the client read an answer sent before its body.

Waitress answers a body over ``max_request_body_size`` with a 413 as soon as the
headers arrive, then closes the socket. Closing with the client's body still
arriving makes the kernel reset the connection, and a client busy sending (urllib,
httpx) gets a broken pipe instead of reading the 413. :class:`DrainingChannel`
closes politely instead: once the server has sent everything and wants to close,
it half-closes (``shutdown(SHUT_WR)``: the client sees the answer end), then reads
and drops what the client still sends, up to ``DRAIN_BYTES`` or ``DRAIN_SECONDS``,
and closes when the client does.
"""

from __future__ import annotations

import socket
import time

from waitress.channel import HTTPChannel

__all__ = ["DRAIN_BYTES", "DRAIN_SECONDS", "DrainingChannel"]

DRAIN_BYTES = 64 << 20  # the most of a refused body read and dropped
DRAIN_SECONDS = 10.0  # the longest a half-closed connection waits for the client


class DrainingChannel(HTTPChannel):
    """``HTTPChannel`` that half-closes and drains instead of closing after its answer."""

    _writing = False
    _draining = False
    _drain_left = 0
    _drain_until = 0.0

    def handle_write(self) -> None:
        """Send what is buffered; once draining, wait for the client to close instead."""
        if self._draining:
            return
        self._writing = True  # a close from here is the server's, after its answer
        try:
            super().handle_write()
        finally:
            self._writing = False

    def handle_close(self) -> None:
        """After the server's own answer (a refusal): half-close and drain what the client
        still sends; any other close closes."""
        if self._draining or not self._writing or self.total_outbufs_len:
            super().handle_close()
            return
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError:
            super().handle_close()
            return
        self._draining = True
        self._drain_left = DRAIN_BYTES
        self._drain_until = time.monotonic() + DRAIN_SECONDS
        self.will_close = False  # stay in the event loop, reading

    def readable(self) -> bool:
        """Read while serving; while draining, until ``DRAIN_SECONDS`` have passed."""
        if not self._draining:
            return super().readable()
        if time.monotonic() > self._drain_until:
            super().handle_close()
            return False
        return True

    def writable(self) -> bool:
        """Nothing more is written once draining."""
        return False if self._draining else super().writable()

    def handle_read(self) -> None:
        """Read a request, or read and drop the rest of a refused body."""
        if not self._draining:
            super().handle_read()
            return
        data = self.recv(1 << 16)  # b"" (and handle_close) once the client has closed
        self._drain_left -= len(data)
        if data and self._drain_left <= 0:
            super().handle_close()
