"""The run's webhook receiver: a small HTTP server that takes signed talk callbacks and wakes the waiters.

The stdlib's ThreadingHTTPServer in a daemon thread: no event loop of its own to coordinate, starts in
milliseconds, and a handler thread hands each delivery to the asyncio side with call_soon_threadsafe.
Whether a callback is genuine, and which talk it is about, is the backend's to say (`verify`, e.g.
TalksBackend.verify_webhook): the receiver knows no signature scheme and no wire format. What each
delivery said (a TalkRef) is kept, so a callback that beats the waiter's register() is not lost, and a
repeated delivery (senders retry) is the same event.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from connectors.talks.base import TalkRef, WebhookRejected

Verify = Callable[[Mapping[str, str], bytes], TalkRef]  # raises WebhookRejected

MAX_BODY_BYTES = 1 << 20  # a talk is a few KB; anything near this is not a Talks callback
DEFAULT_PATH = "/talks-webhook"


@dataclass
class _Waiter:
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event = field(default_factory=asyncio.Event)


class WebhookReceiver:
    """Start with `with WebhookReceiver(talks.verify_webhook) as receiver:` (or start()/stop()); put
    `receiver.url` in each talk's `webhook`; then `await receiver.wait(talk_id, timeout)`, or pass
    `receiver.register(talk_id)` as `wake=` to TalksBackend.wait."""

    def __init__(
        self, verify: Verify, *, host: str = "127.0.0.1", port: int = 0, public_url: str | None = None
    ) -> None:
        """`public_url` is the address senders use when it is not http://host:port/ (a tunnel, a proxy,
        D-ID's cloud calling back)."""
        self._verify = verify
        self._host, self._port, self._public_url = host, port, public_url
        self._lock = threading.Lock()
        self._delivered: dict[str, TalkRef] = {}
        self._waiters: dict[str, list[_Waiter]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.deliveries = 0  # accepted callbacks, repeats included

    @property
    def url(self) -> str:
        if self._public_url:
            return self._public_url
        if self._server is None:
            raise RuntimeError("the receiver is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{DEFAULT_PATH}"

    def start(self) -> WebhookReceiver:
        server = ThreadingHTTPServer((self._host, self._port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="webhook-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the asyncio side -----------------------------------------------------------------------------------

    def register(self, talk_id: str) -> asyncio.Event:
        """An event set when the talk's callback arrives (already set if it came first). Call it inside the
        event loop that will wait on the event."""
        waiter = _Waiter(asyncio.get_running_loop())
        with self._lock:
            self._waiters.setdefault(talk_id, []).append(waiter)
            if talk_id in self._delivered:
                waiter.event.set()
        return waiter.event

    async def wait(self, talk_id: str, timeout: float) -> TalkRef | None:
        """What the delivery said, or None after `timeout` seconds (the caller then falls back to polling)."""
        event = self.register(talk_id)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return None
        finally:
            self._unregister(talk_id, event)
        return self.delivered(talk_id)

    def delivered(self, talk_id: str) -> TalkRef | None:
        """What the last delivery for the talk said, without waiting."""
        with self._lock:
            return self._delivered.get(talk_id)

    def forget(self, talk_id: str) -> None:
        """Drop what is kept for a talk the caller is done with."""
        with self._lock:
            self._delivered.pop(talk_id, None)
            self._waiters.pop(talk_id, None)

    def _unregister(self, talk_id: str, event: asyncio.Event) -> None:
        with self._lock:
            waiters = [w for w in self._waiters.get(talk_id, []) if w.event is not event]
            if waiters:
                self._waiters[talk_id] = waiters
            else:
                self._waiters.pop(talk_id, None)

    # -- the server thread ----------------------------------------------------------------------------------

    def accept(self, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
        """Verify and deliver one callback: (HTTP status, reason). Runs in a handler thread."""
        try:
            talk = self._verify(headers, body)
        except WebhookRejected as e:
            return e.status, str(e)
        self._deliver(talk)
        return 200, "delivered"

    def _deliver(self, talk: TalkRef) -> None:
        with self._lock:
            self._delivered[talk.id] = talk
            self.deliveries += 1
            waiters = list(self._waiters.get(talk.id, []))
        for waiter in waiters:
            try:
                waiter.loop.call_soon_threadsafe(waiter.event.set)
            except RuntimeError:  # that loop has closed: its waiter is gone
                pass


def _handler_for(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # the pipeline logs outcomes, not every request
            pass

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != DEFAULT_PATH:
                return self._refuse(404, "not found")
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                return self._refuse(411, "Content-Length required")
            if not 0 <= length <= MAX_BODY_BYTES:
                return self._refuse(413, "body too large")
            body = self.rfile.read(length)
            status, reason = receiver.accept(httpx.Headers(self.headers.items()), body)
            self._answer(status, reason)

        def _refuse(self, status: int, reason: str) -> None:
            self.close_connection = True  # the body was not read: the connection cannot be reused
            self._answer(status, reason)

        def _answer(self, status: int, reason: str) -> None:
            payload = json.dumps({"status": status, "detail": reason}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
