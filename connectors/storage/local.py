"""A local directory as an ObjectStore: the default output (./output) and a local inbox."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

from connectors.storage.base import ObjectInfo, S3Settings, Streaming, check_key
from talkmill.errors import ConfigError, ObjectNotFound, StorageError

_TMP_PREFIX = ".talkmill-tmp-"  # temp files beside their targets, never listed


def open_local(uri: str, s3: S3Settings | None = None) -> LocalStore:
    """A plain path (relative to the current directory) or file:///absolute/path."""
    parsed = urlparse(uri)
    if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
        raise ConfigError(f"a file:// URI names a folder on this machine, not on {parsed.netloc!r}")
    try:
        return LocalStore(unquote(parsed.path) if parsed.scheme == "file" else uri)
    except StorageError as error:  # the folder cannot be made: the option is wrong, not the store
        reason = getattr(error.__cause__, "strerror", None) or error
        raise ConfigError(f"cannot create the folder ({reason})") from error


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


class LocalStore(Streaming):
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
