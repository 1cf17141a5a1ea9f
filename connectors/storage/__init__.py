"""Object stores: where videos, sidecars and manifests go. One interface, a local directory or S3.

`open_store(uri)` is the one wiring point: a path or file:// gives LocalStore, s3://bucket/prefix gives
S3Store (in connectors.storage.s3). Keys are "/"-separated and relative; a key that could climb out of
the store is refused. Every write is all-or-nothing: a reader never sees half a video or half a manifest
under its final key.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import os
import uuid
from collections.abc import AsyncIterable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

from talkmill.errors import ObjectNotFound, StorageError, UnsafeKeyError

if TYPE_CHECKING:
    from connectors.storage.s3 import S3Store

CONTENT_TYPES = {
    ".mp4": "video/mp4", ".mov": "video/quicktime", ".gif": "image/gif", ".json": "application/json",
    ".csv": "text/csv", ".jsonl": "application/x-ndjson", ".html": "text/html",
}  # fmt: skip
_TMP_PREFIX = ".talkmill-tmp-"  # local temp files, never listed
_FLUSH_BYTES = 1 << 20  # async streams are handed to a worker thread in pieces of about this size


class ObjectInfo(NamedTuple):
    size: int
    sha256: str | None  # hex; None when the store does not know it


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


def open_store(uri: str, endpoint_url: str | None = None) -> ObjectStore:
    """The store an output URI names: a path or file:///path → LocalStore, s3://bucket/prefix → S3Store."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StorageError(f"{uri!r}: an s3:// URI needs a bucket (s3://bucket/prefix)")
        from connectors.storage.s3 import S3Store  # here: s3 builds on this module

        return S3Store(parsed.netloc, parsed.path.strip("/"), endpoint_url=endpoint_url)
    if parsed.scheme == "file":
        return LocalStore(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter: a Windows drive, not a scheme
        raise StorageError(f"{uri!r}: unsupported store; use a path, file:// or s3://")
    return LocalStore(uri)


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


class _Streaming:
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


async def _aiter(chunks: AsyncIterable[bytes] | Iterable[bytes]):  # noqa: ANN202
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk


# -- a local directory -------------------------------------------------------------------------------------


class _FileSink:
    """Writes beside the target, then renames: the final name only ever holds a complete file."""

    def __init__(self, target: Path, durable: bool = False) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        self.target, self.durable = target, durable
        self.temp = target.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex}-{target.name}")
        self.file = self.temp.open("wb")
        self.hash, self.size = hashlib.sha256(), 0

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.hash.update(chunk)
        self.size += len(chunk)

    def finish(self) -> ObjectInfo:
        """Close the temp file (synced if durable); the caller gives it its final name."""
        if self.durable:
            self.file.flush()
            os.fsync(self.file.fileno())
        self.file.close()
        return ObjectInfo(self.size, self.hash.hexdigest())

    def commit(self) -> ObjectInfo:
        info = self.finish()
        os.replace(self.temp, self.target)
        return info

    def abort(self) -> None:
        self.file.close()
        self.temp.unlink(missing_ok=True)


class LocalStore(_Streaming):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        with _os_errors(str(self.root)):
            self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _sink(self, key: str, content_type: str, durable: bool = False) -> _FileSink:
        return _FileSink(self._path(key), durable)

    def _errors(self, key: str) -> AbstractContextManager[None]:
        return _os_errors(key)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        return self.put_stream(key, [data], content_type)

    def put_atomic(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        """Temp file, fsync, rename: after a crash the key holds the old or the new content, whole."""
        with _os_errors(key):
            sink = self._sink(key, "", durable=True)
            try:
                sink.write(data)
                return sink.commit()
            except BaseException:
                sink.abort()
                raise

    def put_if_absent(self, key: str, data: bytes, content_type: str | None = None) -> bool:
        """Create only if absent. A hard link of a complete temp file fails atomically when the name is
        taken (what O_CREAT|O_EXCL does, without ever exposing a half-written file)."""
        with _os_errors(key):
            sink = self._sink(key, "", durable=True)
            try:
                sink.write(data)
                sink.finish()
                os.link(sink.temp, sink.target)
                return True
            except FileExistsError:
                return False
            finally:
                sink.abort()

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no object {key!r} in {self.root}")
        with _os_errors(key):
            return path.read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def head(self, key: str) -> ObjectInfo | None:
        """Size and sha256; a local file has no metadata, so the hash is computed (cheap at video sizes)."""
        path = self._path(key)
        if not path.is_file():
            return None
        digest = hashlib.sha256()
        with _os_errors(key), path.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        return ObjectInfo(path.stat().st_size, digest.hexdigest())

    def list(self, prefix: str = "") -> list[str]:
        keys = []
        for directory, _, files in os.walk(self.root):
            relative = Path(directory).relative_to(self.root).as_posix()
            for name in files:
                key = name if relative == "." else f"{relative}/{name}"
                if key.startswith(prefix) and not name.startswith(_TMP_PREFIX):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        with _os_errors(key):
            self._path(key).unlink(missing_ok=True)

    def move(self, src: str, dst: str) -> None:
        source, target = self._path(src), self._path(dst)
        if not source.is_file():
            raise ObjectNotFound(f"no object {src!r} in {self.root}")
        with _os_errors(dst):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()


@contextmanager
def _os_errors(key: str) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        raise StorageError(f"local store failed on {key!r}: {e}") from e


def __getattr__(name: str) -> Any:
    """S3Store lives in connectors.storage.s3; `from connectors.storage import S3Store` still
    works, and imports it (and so boto3's chain) only when asked for."""
    if name == "S3Store":
        from connectors.storage.s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
