"""A cap on every request body, before anything parses it: 1 MB for JSON, and an upload's own cap (plus
room for the multipart framing) on POST /images and /audios. Past it: 413 InvalidFileSizeError.

A declared Content-Length over the cap is refused before the body is read; a chunked body is counted as
it arrives. Up to DRAIN_BYTES of a refused body are read and dropped, so a client still sending it gets
the answer rather than a reset connection; past that the connection closes.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from talkmill_engine.errors import InvalidFileSizeError
from talks_contract.limits import MAX_AUDIO_BYTES, MAX_IMAGE_BYTES

MAX_JSON_BYTES = 1024 * 1024
MULTIPART_ROOM = 64 * 1024  # boundaries and part headers around the file
UPLOAD_BYTES = {"/images": MAX_IMAGE_BYTES + MULTIPART_ROOM, "/audios": MAX_AUDIO_BYTES + MULTIPART_ROOM}
DRAIN_BYTES = 64 * 1024 * 1024


def body_limit(path: str) -> int:
    return UPLOAD_BYTES.get(path.rstrip("/"), MAX_JSON_BYTES)


def too_large(limit: int) -> InvalidFileSizeError:
    size = f"{limit / (1024 * 1024):.2f}".rstrip("0").rstrip(".")
    return InvalidFileSizeError(f"The request body is larger than {size} MB.", {"max_bytes": limit})


class BodyTooLarge(HTTPException):
    """Raised from `receive` while the app reads a body past its cap (FastAPI lets HTTPExceptions through
    its body parsing); the API's handler answers it with `error`."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "request body too large")
        self.error = too_large(limit)


class BodyLimit:
    """ASGI middleware enforcing body_limit(path) on every HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _drain(receive)
            await _answer(too_large(limit), scope, receive, send)
            return
        await self.app(scope, _counting(receive, limit), send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself
    return None


def _counting(receive: Receive, limit: int) -> Receive:
    received = 0

    async def counted() -> dict[str, Any]:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
        return message

    return counted


async def _drain(receive: Receive) -> None:
    drained = 0
    while drained <= DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _answer(error: InvalidFileSizeError, scope: Scope, receive: Receive, send: Send) -> None:
    await JSONResponse(error.to_body(), status_code=error.status)(scope, receive, send)
