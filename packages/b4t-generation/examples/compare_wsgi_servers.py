"""Compare WSGI servers under one bottle app: what chose waitress for ``WebServing``.

    python examples/compare_wsgi_servers.py [wsgiref cheroot waitress]

Each server (8 worker threads where it has a pool, 1 MiB body limit, 5 s idle
timeout) is started on 127.0.0.1 in turn and measured for: the delay from a
server-sent event's ``yield`` to the client reading it (40 events 10 ms apart),
300 GETs on one keep-alive connection, a POST announcing 20 MB that sends only its
headers (is the 413 answered before the body?), 60 clients that never finish their
headers followed by one normal request, and how long a silent connection stays
open. A server that is not installed is skipped. Loopback only; about a minute.
"""

from __future__ import annotations

import http.client
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator

import bottle

app = bottle.Bottle()


@app.get("/stream")
def stream() -> Iterator[bytes]:
    bottle.response.content_type = "text/event-stream"

    def events() -> Iterator[bytes]:
        for _ in range(40):
            time.sleep(0.01)
            yield f"data: {time.perf_counter()!r}\n\n".encode()

    return events()


@app.get("/small")
def small() -> str:
    return "ok"


@app.post("/upload")
def upload() -> str:
    return "read"


def start(name: str, port: int) -> Callable[[], None]:
    """Serve ``app`` with ``name`` on ``port`` from a daemon thread; return its stopper."""
    if name == "cheroot":
        from cheroot import wsgi

        server = wsgi.Server(("127.0.0.1", port), app, numthreads=8, max=8, timeout=5)
        server.max_request_body_size = 1 << 20
        server.prepare()
        threading.Thread(target=server.serve, daemon=True).start()
        return server.stop
    if name == "waitress":
        from waitress.server import create_server

        server = create_server(
            app, host="127.0.0.1", port=port, threads=8, channel_timeout=5, cleanup_interval=1,
            max_request_body_size=1 << 20, connection_limit=200,
        )  # fmt: skip
        threading.Thread(target=server.run, daemon=True).start()
        return server.close
    if name == "wsgiref":
        import socketserver
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        class Threaded(socketserver.ThreadingMixIn, WSGIServer):
            daemon_threads = True

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

        server = make_server("127.0.0.1", port, app, server_class=Threaded, handler_class=Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server.shutdown
    raise ValueError(f"unknown server {name!r}")


def stream_latency(port: int) -> str:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    buffer, delays = b"", []
    while len(delays) < 40:
        chunk = sock.recv(65536)
        now = time.perf_counter()
        if not chunk:
            break
        buffer += chunk
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                if b"data: " in line:
                    delays.append(now - float(line.split(b"data: ")[1]))
    sock.close()
    return f"{statistics.median(delays) * 1e3:.2f} / {max(delays) * 1e3:.2f} ms"


def keep_alive(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    started, ports = time.perf_counter(), set()
    for _ in range(300):
        conn.request("GET", "/small")
        ports.add(conn.sock.getsockname()[1])  # the local port: one per TCP connection
        response = conn.getresponse()
        response.read()
    per_request = (time.perf_counter() - started) / 300 * 1e3
    return f"HTTP/{response.version / 10}, {len(ports)} connection(s), {per_request:.2f} ms/request"


def early_413(port: int) -> str:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(3)
    sock.sendall(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 20000000\r\n\r\n"
    )
    started = time.perf_counter()
    try:
        head = sock.recv(200).split(b"\r\n")[0].decode()
    except TimeoutError:
        head = "no answer before the body"
    sock.close()
    return f"{head} after {(time.perf_counter() - started) * 1e3:.2f} ms"


def stalled_clients(port: int, count: int = 60) -> str:
    stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    for sock in stalled:
        sock.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n")  # the head never ends
    time.sleep(0.2)
    started = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/small")
        answer = f"{conn.getresponse().status} after {(time.perf_counter() - started) * 1e3:.1f} ms"
    except OSError as error:
        answer = f"{type(error).__name__} after {time.perf_counter() - started:.1f} s"
    for sock in stalled:
        sock.close()
    return answer


def silent_connection(port: int) -> str:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(20)
    started = time.perf_counter()
    try:
        sock.recv(10)
    except TimeoutError:
        return "kept open > 20 s"
    return f"closed after {time.perf_counter() - started:.1f} s"


def main(names: list[str]) -> None:
    for offset, name in enumerate(names):
        try:
            stop = start(name, 18931 + offset)
        except ImportError:
            print(f"{name}: not installed, skipped")
            continue
        port = 18931 + offset
        time.sleep(0.3)
        print(f"{name}:")
        for label, measure in (
            ("SSE delay, median / max", stream_latency),
            ("keep-alive", keep_alive),
            ("20 MB POST, headers only", early_413),
            ("60 stalled clients, then a request", stalled_clients),
            ("a silent connection", silent_connection),
        ):
            print(f"  {label}: {measure(port)}", flush=True)
        stop()


if __name__ == "__main__":
    main(sys.argv[1:] or ["wsgiref", "cheroot", "waitress"])
