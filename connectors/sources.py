"""Reading sources: the bytes at a local path, file://, http(s):// or s3://bucket/key, capped in size.

http(s) goes through the URL policy (connectors.urlfetch: public addresses unless allowlisted, every
redirect hop checked); a local file must be a regular one, read no further than the cap.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from connectors.storage.base import S3Settings
from connectors.urlfetch import fetch_url
from talkmill.content.files import read_capped
from talkmill.content.uris import local_path
from talkmill.errors import SourceReadError, UnsupportedSourceError
from talks_contract.urlpolicy import PUBLIC_ONLY, UrlPolicy

MAX_SOURCE_BYTES = 50 * 1024 * 1024
S3_TRANSIENT_CODES = ("SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling")


@dataclass(frozen=True)
class _Reading:
    max_bytes: int
    timeout: float  # seconds for the whole read
    s3: S3Settings | None
    policy: UrlPolicy


def read_source(uri: str, *, timeout: float = 30.0, max_bytes: int = MAX_SOURCE_BYTES,
                s3: S3Settings | None = None, policy: UrlPolicy = PUBLIC_ONLY) -> bytes:
    """The bytes at a local path, file://, http(s):// or s3://bucket/key, at most `max_bytes`.

    http(s) reaches what `policy` allows (by default public addresses only). S3 reads use the pipeline's
    S3 client (connectors.storage.s3.client_for: the endpoint and region in `s3`, finite timeouts,
    retries); credentials come from the usual AWS_* variables. Raises SourceReadError (transient=True
    when a retry may help), UnsupportedSourceError for other schemes."""
    scheme = urlparse(uri).scheme.lower()
    if re.match(r"^[a-zA-Z]:[\\/]", uri):  # a Windows drive, not a scheme
        scheme = ""
    reader = READERS.get(scheme)
    if reader is None:
        raise UnsupportedSourceError(f"{uri}: cannot read {scheme}:// sources; use a path, "
                                     + ", ".join(f"{name}://" for name in READERS if name))
    return reader(uri, _Reading(max_bytes, timeout, s3, policy))


def _read_file(uri: str, reading: _Reading) -> bytes:
    try:
        data = read_capped(local_path(uri), reading.max_bytes)
    except OSError as error:
        raise SourceReadError(f"{uri}: cannot read the file ({error.strerror or error})") from error
    if len(data) > reading.max_bytes:
        raise SourceReadError(f"{uri}: larger than the {reading.max_bytes:,}-byte limit for a source")
    return data


def _read_http(uri: str, reading: _Reading) -> bytes:
    return fetch_url(uri, policy=reading.policy, max_bytes=reading.max_bytes, timeout=reading.timeout)


def _read_s3(uri: str, reading: _Reading) -> bytes:
    """Through the store registry's S3 side; its client has its own connect/read timeouts."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from connectors.storage.s3 import client_for

    max_bytes, s3 = reading.max_bytes, reading.s3
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise UnsupportedSourceError(f"{uri}: an s3 source must look like s3://bucket/key")
    try:
        answer = client_for(s3).get_object(Bucket=bucket, Key=key)
        if answer.get("ContentLength", 0) > max_bytes:
            raise SourceReadError(f"{uri}: larger than the {max_bytes:,}-byte limit for a source")
        data = answer["Body"].read(max_bytes + 1)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        transient = code in S3_TRANSIENT_CODES or status >= 500
        raise SourceReadError(f"{uri}: S3 {code}", transient=transient) from error
    except NoCredentialsError as error:  # waiting will not bring them
        raise SourceReadError(f"{uri}: {error}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") from error
    except BotoCoreError as error:  # no connection, timeouts
        raise SourceReadError(f"{uri}: {error}", transient=True) from error
    if len(data) > max_bytes:
        raise SourceReadError(f"{uri}: larger than the {max_bytes:,}-byte limit for a source")
    return data


Reader = Callable[[str, _Reading], bytes]
READERS: dict[str, Reader] = {"": _read_file, "file": _read_file, "http": _read_http, "https": _read_http,
                              "s3": _read_s3}
