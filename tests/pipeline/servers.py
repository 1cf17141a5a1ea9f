"""Small real HTTP servers on loopback for the URL-policy tests: one that answers from a table of routes
(redirects, bodies, drips) and records every request it gets."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Route = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Server:
    base: str  # http://host:port
    asked: list[str] = field(default_factory=list)  # "METHOD /path" of every request, in order

    @property
    def hostport(self) -> str:
        return self.base.removeprefix("http://")


def body(data: bytes, content_type: str = "application/octet-stream") -> Route:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return answer


def redirect(location: str, status: int = 302) -> Route:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return answer


def drip(chunk: bytes, pause: float, total: int) -> Route:
    """`total` bytes, `chunk` at a time, `pause` seconds apart, without a Content-Length."""
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()
        sent = 0
        try:
            while sent < total:
                handler.wfile.write(chunk)
                handler.wfile.flush()
                sent += len(chunk)
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up: what a capped, time-limited fetch does

    return answer


@contextmanager
def serving(routes: dict[str, Route], host: str = "127.0.0.1") -> Iterator[Server]:
    """A server on `host` (any free port) answering `routes` by path, 404 for the rest."""
    server_info = Server("")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self) -> None:
            server_info.asked.append(f"{self.command} {self.path}")
            route = routes.get(self.path.split("?", 1)[0])
            if route is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                route(self)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _answer

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    server_info.base = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server_info
    finally:
        server.shutdown()
        server.server_close()
