"""Where a talk's files and the uploads live, and the URLs clients get for them: in the data dir
(LocalResults), or in S3 when TALKMILL_ENGINE_RESULTS_S3_URL is set (S3Results: any replica can serve
and read them). Chosen once from settings (`open_results`); the server hands the same object to its
worker processes (it pickles: paths and strings only).

S3 layout under s3://bucket/prefix: results at <prefix>/<talk id>/<file>, uploads at
<prefix>/uploads/<kind>/<file>.
"""

from __future__ import annotations

import mimetypes
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from talkmill_engine.errors import UnknownError
from talks_contract.s3 import s3_client

if TYPE_CHECKING:
    from talkmill_engine.settings import EngineSettings

RESULT_URL_SECONDS = 24 * 3600  # presigned result URLs (results in S3) stay valid this long, as D-ID's


class Results(Protocol):
    def folder(self, talk_id: str) -> Path:
        """Where a worker writes a talk's files before they are published."""

    def publish(self, talk_id: str, paths: list[Path]) -> list[str]:
        """Stores a talk's files (written in its folder); the URLs a client gets for them."""

    def copy_to(self, destination: str, path: Path, talk_id: str) -> str:
        """Copies a result to the s3:// place a caller named (`result_url`); the s3:// URL written."""

    def store_upload(self, kind: str, name: str, data: bytes) -> str:
        """Keeps an upload (kind "images" or "audios"); the URL a talk may name as its input."""

    def delete_talk(self, talk_id: str) -> None:
        """Removes every file of a talk."""

    def local_file(self, talk_id: str, filename: str) -> Path | None:
        """The file this engine serves at /results/<talk id>/<filename>, if any."""

    def upload_of(self, url: str) -> tuple[str, str] | None:
        """(kind, file name) of the upload of this engine's that `url` names (it may not exist), else None."""

    def holds(self, url: str) -> bool:
        """Whether an s3:// URL names a place inside this engine's own results and uploads."""


@dataclass(frozen=True)
class _Results:
    """What both kinds share: a folder per talk where a worker writes its files, and copies of a result to
    the s3:// place a caller named (`result_url`)."""

    results_dir: Path
    s3_endpoint_url: str | None  # None: AWS itself; credentials from the usual AWS_* variables

    def folder(self, talk_id: str) -> Path:
        """Where a worker writes a talk's files (with results in S3: until they are published)."""
        folder = self.results_dir / talk_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def copy_to(self, destination: str, path: Path, talk_id: str) -> str:
        """Copies a result to s3://bucket/key (or s3://bucket/prefix/<talk id>.<ext>); its s3:// URL."""
        bucket, _, key = destination.removeprefix("s3://").partition("/")
        if not key or key.endswith("/"):
            key = f"{key}{talk_id}{path.suffix}"
        with _s3_errors(f"Could not write the result to s3://{bucket}/{key}."):
            self._client().upload_file(str(path), bucket, key)
        return f"s3://{bucket}/{key}"

    def _client(self) -> Any:
        return s3_client(self.s3_endpoint_url, signature_version="s3v4")  # v4: presigned URLs work everywhere

    def upload_of(self, url: str) -> tuple[str, str] | None:
        """upload://<kind>/<name>, read as the fetcher reads it (httpx's parse, the decoded path)."""
        parsed = _parse(url)
        if parsed is None or parsed.scheme != "upload":
            return None
        return parsed.host, parsed.path.removeprefix("/")

    def holds(self, url: str) -> bool:
        return False  # local results: no s3:// URL is inside them


@dataclass(frozen=True)
class LocalResults(_Results):
    """Results in the data dir, served by this engine's /results route; uploads as upload:// URLs."""

    uploads_dir: Path
    base_url: str  # results are served at {base_url}/results/<talk id>/<file>

    def publish(self, talk_id: str, paths: list[Path]) -> list[str]:
        """The URLs of a talk's files, written in its folder."""
        return [f"{self.base_url}/results/{talk_id}/{path.name}" for path in paths]

    def store_upload(self, kind: str, name: str, data: bytes) -> str:
        folder = self.uploads_dir / kind
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        return f"upload://{kind}/{name}"

    def delete_talk(self, talk_id: str) -> None:
        shutil.rmtree(self.results_dir / talk_id, ignore_errors=True)

    def local_file(self, talk_id: str, filename: str) -> Path | None:
        """The file GET /results/<talk id>/<filename> serves, if it exists (names checked by the caller)."""
        path = self.results_dir / talk_id / filename
        return path if path.is_file() else None


@dataclass(frozen=True)
class S3Results(_Results):
    """Results in S3 under s3://bucket/prefix, handed out as presigned GET URLs (no credentials needed to
    read them); uploads beside them as s3:// URLs (as D-ID's uploads are)."""

    url: str  # s3://bucket/prefix

    def publish(self, talk_id: str, paths: list[Path]) -> list[str]:
        """Uploads a talk's files, removes the local copies; their presigned URLs."""
        client, urls = self._client(), []
        for path in paths:
            bucket, key = self._location(talk_id, path.name)
            content_type = _content_type(path.name)
            with _s3_errors(f"Could not store the result in s3://{bucket}/{key}."):
                client.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": content_type})
            params = {"Bucket": bucket, "Key": key}
            url = client.generate_presigned_url("get_object", Params=params, ExpiresIn=RESULT_URL_SECONDS)
            urls.append(url)
        shutil.rmtree(self.results_dir / talk_id, ignore_errors=True)
        return urls

    def store_upload(self, kind: str, name: str, data: bytes) -> str:
        bucket, key = self._location("uploads", kind, name)
        with _s3_errors(f"Could not store the upload in s3://{bucket}/{key}."):
            self._client().put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"

    def delete_talk(self, talk_id: str) -> None:
        """The talk's objects, and any local copy a crashed render left behind."""
        shutil.rmtree(self.results_dir / talk_id, ignore_errors=True)
        bucket, folder = self._location(talk_id)
        client = self._client()
        listing = client.list_objects_v2(Bucket=bucket, Prefix=folder + "/")
        for item in listing.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])

    def local_file(self, talk_id: str, filename: str) -> Path | None:
        return None  # served from S3, by the presigned URLs

    def upload_of(self, url: str) -> tuple[str, str] | None:
        """upload://<kind>/<name>, or s3://<bucket>/<prefix>/uploads/<kind>/<name> (store_upload's URLs)."""
        parsed = _parse(url)
        if parsed is None or parsed.scheme != "s3":
            return super().upload_of(url)
        bucket, uploads = self._location("uploads")
        key = parsed.path.removeprefix("/")
        if parsed.host != bucket.lower() or not key.startswith(uploads + "/"):
            return None
        kind, _, name = key.removeprefix(uploads + "/").partition("/")
        return kind, name

    def holds(self, url: str) -> bool:
        parsed = _parse(url)
        bucket, prefix = self._location()
        key = parsed.path.removeprefix("/") if parsed is not None else ""
        inside = not prefix or key == prefix or key.startswith(prefix + "/")
        return parsed is not None and parsed.scheme == "s3" and parsed.host == bucket.lower() and inside

    def _location(self, *parts: str) -> tuple[str, str]:
        """(bucket, key) of `parts` under the results URL's prefix."""
        bucket, _, prefix = self.url.removeprefix("s3://").partition("/")
        return bucket, "/".join(part.strip("/") for part in (prefix, *parts) if part.strip("/"))


def open_results(settings: EngineSettings) -> Results:
    if settings.results_s3_url:
        return S3Results(settings.results_dir, settings.s3_endpoint_url, settings.results_s3_url)
    endpoint = settings.s3_endpoint_url  # local results still copy to a caller's s3:// result_url
    return LocalResults(settings.results_dir, endpoint, settings.uploads_dir, settings.base_url)


def _parse(url: str) -> httpx.URL | None:
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None  # the fetcher refuses it as no URL at all


@contextmanager
def _s3_errors(description: str) -> Iterator[None]:
    """boto3's failures as UnknownError(description), the underlying error as details."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as e:
        raise UnknownError(description, str(e)) from e


# captions are UTF-8 text; mimetypes knows .vtt without a charset and reads .srt as plain text, or not at all
_CAPTION_TYPES = {".vtt": "text/vtt; charset=utf-8", ".srt": "application/x-subrip; charset=utf-8"}


def _content_type(name: str) -> str:
    guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return _CAPTION_TYPES.get(Path(name).suffix, guessed)
