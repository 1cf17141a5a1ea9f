"""Reading sources: the bytes at a local path, file://, http(s):// or s3://bucket/key, capped in size."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import httpx

from talkmill.content.uris import local_path
from talkmill.errors import SourceReadError, UnsupportedSourceError

MAX_SOURCE_BYTES = 50 * 1024 * 1024


def read_source(uri: str, *, timeout: float = 30.0, max_bytes: int = MAX_SOURCE_BYTES,
                s3_endpoint_url: str | None = None, s3_region: str | None = None) -> bytes:
    """The bytes at a local path, file://, http(s):// or s3://bucket/key, at most `max_bytes`.

    S3 credentials come from the usual AWS_* variables; the endpoint from the argument, else boto3's own
    AWS_ENDPOINT_URL. Raises SourceReadError (transient=True when a retry may help)."""
    scheme = urlparse(uri).scheme.lower()
    if scheme in ("http", "https"):
        return _read_http(uri, timeout, max_bytes)
    if scheme == "s3":
        return _read_s3(uri, max_bytes, s3_endpoint_url, s3_region)
    if scheme in ("", "file") or re.match(r"^[a-zA-Z]:[\\/]", uri):
        return _read_file(uri, max_bytes)
    raise UnsupportedSourceError(
        f"{uri}: cannot read {scheme}:// sources; use a path, file://, http(s):// or s3://")


def _read_file(uri: str, max_bytes: int) -> bytes:
    path = local_path(uri)
    try:
        if path.stat().st_size > max_bytes:
            raise SourceReadError(f"{uri}: larger than the {max_bytes:,}-byte limit for a source")
        return path.read_bytes()
    except OSError as error:
        raise SourceReadError(f"{uri}: cannot read the file ({error.strerror or error})") from error


def _read_http(uri: str, timeout: float, max_bytes: int) -> bytes:
    try:
        with httpx.stream("GET", uri, timeout=timeout, follow_redirects=True) as response:
            if response.status_code >= 400:
                transient = response.status_code == 429 or response.status_code >= 500
                status = f"HTTP {response.status_code} {response.reason_phrase}"
                raise SourceReadError(f"{uri}: {status}", transient=transient)
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise SourceReadError(f"{uri}: larger than the {max_bytes:,}-byte limit for a source")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as error:  # timeouts, refused connections, bad URLs
        raise SourceReadError(f"{uri}: {type(error).__name__}: {error}", transient=True) from error


def _read_s3(uri: str, max_bytes: int, endpoint_url: str | None, region: str | None) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    from talks_contract.s3 import s3_client

    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise UnsupportedSourceError(f"{uri}: an s3 source must look like s3://bucket/key")
    client = s3_client(endpoint_url, region)
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        data = body.read(max_bytes + 1)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        raise SourceReadError(f"{uri}: S3 {code}", transient=code in ("SlowDown", "InternalError")) from error
    except BotoCoreError as error:
        raise SourceReadError(f"{uri}: {error}", transient=True) from error
    if len(data) > max_bytes:
        raise SourceReadError(f"{uri}: larger than the {max_bytes:,}-byte limit for a source")
    return data
