"""S3 and S3-compatible stores (SeaweedFS, MinIO, R2 via endpoint_url): the S3Store side of ObjectStore,
and `client_for`, the pipeline's one way to make an S3 client (s3:// sources read through it too).

open_store (connectors.storage) picks this store for s3://bucket/prefix. boto3 is imported only
when a client is made: the local-only path never pays for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from urllib.parse import urlparse

from connectors.storage.base import ObjectInfo, S3Settings, Streaming, check_key, content_type_for
from talkmill.errors import ConfigError, ObjectNotFound, StorageError

# the pipeline's side of every S3 call: finite waits, and botocore's standard retries of throttling and 5xx
CLIENT_OPTIONS = {"retries": {"max_attempts": 5, "mode": "standard"}, "connect_timeout": 10,
                  "read_timeout": 60}


def client_for(settings: S3Settings | None) -> Any:
    """An S3 client for the endpoint and region in `settings` (None: AWS, boto3's own region chain).
    Credentials come from boto3's usual chain (environment, profile, instance role)."""
    from talks_contract.s3 import s3_client

    endpoint, region = (settings.endpoint_url, settings.region) if settings else (None, None)
    return s3_client(endpoint, region, **CLIENT_OPTIONS)


def open_s3(uri: str, s3: S3Settings | None = None) -> S3Store:
    """s3://bucket/prefix (the prefix may be empty)."""
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise ConfigError("an s3:// URI needs a bucket")
    return S3Store(parsed.netloc, parsed.path.strip("/"), s3)


class _S3Sink:
    """Small objects: one PUT. Larger: a multipart upload, one part in memory at a time, completed
    atomically; the sha256 is known only at the end, so it is set by copying the object onto itself."""

    def __init__(self, store: S3Store, key: str, content_type: str) -> None:
        self.s3, self.bucket, self.key, self.content_type = store.s3, store.bucket, key, content_type
        self.part_size = store.part_size
        self.buffer, self.parts, self.upload_id = bytearray(), [], None
        self.hash, self.size = hashlib.sha256(), 0

    def write(self, chunk: bytes) -> None:
        self.buffer += chunk
        self.hash.update(chunk)
        self.size += len(chunk)
        while len(self.buffer) >= self.part_size:
            self._upload_part(bytes(self.buffer[: self.part_size]))
            del self.buffer[: self.part_size]

    def _upload_part(self, data: bytes) -> None:
        where = {"Bucket": self.bucket, "Key": self.key}
        if self.upload_id is None:
            started = self.s3.create_multipart_upload(**where, ContentType=self.content_type)
            self.upload_id = started["UploadId"]
        number = len(self.parts) + 1
        answer = self.s3.upload_part(**where, UploadId=self.upload_id, PartNumber=number, Body=data)
        self.parts.append({"ETag": answer["ETag"], "PartNumber": number})

    def commit(self) -> ObjectInfo:
        info = ObjectInfo(self.size, self.hash.hexdigest())
        where = {"Bucket": self.bucket, "Key": self.key}
        metadata = {"ContentType": self.content_type, "Metadata": {"sha256": info.sha256}}
        if self.upload_id is None:
            self.s3.put_object(**where, Body=bytes(self.buffer), **metadata)
            return info
        if self.buffer:
            self._upload_part(bytes(self.buffer))
        self.s3.complete_multipart_upload(
            **where, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
        )
        self.upload_id = None
        self.s3.copy_object(**where, CopySource=where, MetadataDirective="REPLACE", **metadata)
        return info

    def abort(self) -> None:
        if self.upload_id is not None:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)


class S3Store(Streaming):
    """A bucket and key prefix on S3 or an S3-compatible server (SeaweedFS, MinIO, R2 via endpoint_url);
    the client is made by `client_for(settings)` unless one is given."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        settings: S3Settings | None = None,
        *,
        client: Any = None,
        part_size: int = 8 << 20,
    ) -> None:
        self.bucket, self.prefix, self.part_size = bucket, prefix.strip("/"), max(part_size, 5 << 20)
        self.s3 = client or client_for(settings)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{check_key(key)}" if self.prefix else check_key(key)

    def _sink(self, key: str, content_type: str) -> _S3Sink:
        return _S3Sink(self, self._key(key), content_type)

    def _errors(self, key: str) -> AbstractContextManager[None]:
        return _s3_errors(key)

    def _put(self, key: str, data: bytes, content_type: str | None, **conditions: str) -> ObjectInfo:
        info = ObjectInfo(len(data), hashlib.sha256(data).hexdigest())
        self.s3.put_object(
            Bucket=self.bucket, Key=self._key(key), Body=data,
            ContentType=content_type or content_type_for(key), Metadata={"sha256": info.sha256}, **conditions,
        )  # fmt: skip
        return info

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        with _s3_errors(key):
            return self._put(key, data, content_type)

    def put_atomic(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        """One PUT: S3 never exposes a partly written object."""
        return self.put_bytes(key, data, content_type)

    def put_if_absent(self, key: str, data: bytes, content_type: str | None = None) -> bool:
        """A conditional PUT (If-None-Match: *): False when the key already exists."""
        try:
            with _s3_errors(key):
                self._put(key, data, content_type, IfNoneMatch="*")
        except StorageError as e:
            # 412: it exists; 409: a concurrent conditional write of the same key is winning
            if _status(e.__cause__) in (409, 412):
                return False
            raise
        return True

    def get_bytes(self, key: str) -> bytes:
        with _s3_errors(key):
            return self.s3.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def head(self, key: str) -> ObjectInfo | None:
        try:
            with _s3_errors(key):
                answer = self.s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except ObjectNotFound:
            return None
        return ObjectInfo(answer["ContentLength"], answer.get("Metadata", {}).get("sha256"))

    def list(self, prefix: str = "") -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        keys = []
        paginator = self.s3.get_paginator("list_objects_v2")
        with _s3_errors(prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
                keys += [item["Key"][len(base) :] for item in page.get("Contents", [])]
        return sorted(keys)

    def delete(self, key: str) -> None:
        with _s3_errors(key):
            self.s3.delete_object(Bucket=self.bucket, Key=self._key(key))

    def move(self, src: str, dst: str) -> None:
        """Server-side copy, then delete: not atomic (S3 has no rename); a crash between leaves both."""
        with _s3_errors(src):
            source = {"Bucket": self.bucket, "Key": self._key(src)}
            self.s3.copy_object(Bucket=self.bucket, Key=self._key(dst), CopySource=source)
            self.s3.delete_object(**source)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"


@contextmanager
def _s3_errors(key: str) -> Iterator[None]:
    """Translates botocore errors into ObjectNotFound / StorageError, the cause kept."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code")
        if code in ("NoSuchKey", "404") or (_status(e) == 404 and code != "NoSuchBucket"):
            raise ObjectNotFound(f"no object {key!r}") from e
        raise StorageError(f"S3 refused {key!r}: {e}") from e
    except BotoCoreError as e:
        raise StorageError(f"S3 failed on {key!r}: {e}") from e


def _status(error: BaseException | None) -> int | None:
    response = getattr(error, "response", None) or {}
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
