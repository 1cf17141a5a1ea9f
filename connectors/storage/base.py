"""What every object store is: the ObjectStore protocol, ObjectInfo, keys, and streaming writes.

Keys are "/"-separated and relative; a key that could climb out of the store is refused (check_key).
Every write is all-or-nothing: a reader never sees half a video or half a manifest under its final key.
A store builds on `Streaming`, giving it a `_sink` (chunks in, one object out) and an `_errors` context
that turns its backend's exceptions into StorageError.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
from collections.abc import AsyncIterable, Iterable
from contextlib import AbstractContextManager, suppress
from typing import Any, NamedTuple, Protocol, runtime_checkable

from talkmill.errors import StorageError, UnsafeKeyError

CONTENT_TYPES = {
    ".mp4": "video/mp4", ".mov": "video/quicktime", ".gif": "image/gif", ".json": "application/json",
    ".csv": "text/csv", ".jsonl": "application/x-ndjson", ".html": "text/html",
}  # fmt: skip
_FLUSH_BYTES = 1 << 20  # async streams are handed to a worker thread in pieces of about this size


class ObjectInfo(NamedTuple):
    size: int
    sha256: str | None  # hex; None when the store does not know it


class S3Settings(Protocol):
    """Where S3 is (talkmill.config.S3Config is one): every S3 client of the pipeline is made from it."""

    endpoint_url: str | None  # None: AWS itself; set for SeaweedFS, MinIO, R2
    region: str | None


@runtime_checkable
class ObjectStore(Protocol):
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo: ...
    def put_stream(
        self, key: str, chunks: Iterable[bytes], content_type: str | None = None
    ) -> ObjectInfo: ...
    async def aput_stream(
        self, key: str, chunks: AsyncIterable[bytes] | Iterable[bytes], content_type: str | None = None
    ) -> ObjectInfo: ...
    def put_atomic(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo: ...
    def put_if_absent(self, key: str, data: bytes, content_type: str | None = None) -> bool: ...
    def get_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def head(self, key: str) -> ObjectInfo | None: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def move(self, src: str, dst: str) -> None: ...
    def uri(self, key: str) -> str: ...


def content_type_for(key: str) -> str:
    suffix = os.path.splitext(key)[1].lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(key)[0] or "application/octet-stream"


def check_key(key: str) -> str:
    """The key itself if it is a safe relative "/"-separated key; UnsafeKeyError otherwise."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise UnsafeKeyError(f"unsafe object key {key!r}: must be relative, '/'-separated, no NUL")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise UnsafeKeyError(f"unsafe object key {key!r}: empty, '.' or '..' segments are refused")
    return key


class _Sink(Protocol):
    def write(self, chunk: bytes) -> None: ...
    def commit(self) -> ObjectInfo: ...
    def abort(self) -> None: ...


class Streaming:
    """put_stream/aput_stream on top of a store's `_sink`: chunks flow through, never a whole video."""

    def _sink(self, key: str, content_type: str) -> _Sink:
        raise NotImplementedError

    def _errors(self, key: str) -> AbstractContextManager[None]:
        """Translates the backend's own exceptions into StorageError."""
        raise NotImplementedError

    def _open(self, key: str, content_type: str | None) -> _Guarded:
        with self._errors(key):
            sink = self._sink(check_key(key), content_type or content_type_for(key))
        return _Guarded(sink, self._errors, key)

    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str | None = None) -> ObjectInfo:
        sink = self._open(key, content_type)
        try:
            for chunk in chunks:
                sink.write(chunk)
            return sink.commit()
        except BaseException:
            sink.abort()
            raise

    async def aput_stream(
        self, key: str, chunks: AsyncIterable[bytes] | Iterable[bytes], content_type: str | None = None
    ) -> ObjectInfo:
        """put_stream for async sources (TalksClient.stream_result); blocking writes run off the loop."""
        sink = self._open(key, content_type)
        pending = bytearray()
        try:
            async for chunk in _aiter(chunks):
                pending += chunk
                if len(pending) >= _FLUSH_BYTES:
                    await asyncio.to_thread(sink.write, bytes(pending))
                    pending.clear()
            await asyncio.to_thread(sink.write, bytes(pending))
            return await asyncio.to_thread(sink.commit)
        except BaseException:
            sink.abort()  # in this thread: it must run even when the task is being cancelled
            raise


class _Guarded:
    """A sink whose own failures become StorageError; the source's exceptions pass through untouched."""

    def __init__(self, sink: _Sink, errors: Any, key: str) -> None:
        self.sink, self.errors, self.key = sink, errors, key

    def write(self, chunk: bytes) -> None:
        with self.errors(self.key):
            self.sink.write(chunk)

    def commit(self) -> ObjectInfo:
        with self.errors(self.key):
            return self.sink.commit()

    def abort(self) -> None:
        # best effort while another error propagates; an orphaned S3 upload is reaped by lifecycle rules
        with suppress(StorageError), self.errors(self.key):
            self.sink.abort()


async def _aiter(chunks: AsyncIterable[bytes] | Iterable[bytes]):
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk
