"""Fetching talk inputs (portrait, audio, logo) from URLs: size-capped (by the caps in talks_contract.limits),
time-limited, SSRF-guarded.

A URL comes from a caller, so it must not reach what the engine can reach and the caller cannot. Which
addresses it may reach is the contract's URL policy (talks_contract.urlpolicy: public only unless
allowlisted, cloud metadata never), one for inputs and one for webhook targets. Each http(s) hop is
resolved once, every address checked, and the connection made to the checked address (so a DNS answer
that changes between check and connect, "DNS rebinding", cannot slip through).
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx

from talkmill_engine.errors import EngineError, ValidationError
from talks_contract.urlpolicy import (
    HTTP_SCHEMES,
    MAX_REDIRECTS,
    PUBLIC_ONLY,
    REDIRECT_STATUSES,
    UrlPolicy,
    UrlRefused,
    resolve_host,
)

SCHEMES = ("http", "https", "s3", "upload")
UPLOAD_KINDS = ("images", "audios")
WEBHOOK_FIELD = "webhook"  # the talk's field naming a webhook target; every other URL field is an input

_ALLOWED_SCHEMES = "http(s) URLs of public hosts, s3://bucket/key, or the upload:// URL of POST /images"
_UPLOAD_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,200}")  # one path segment, never "." or ".."


@dataclass(frozen=True)
class FetchPolicy:
    inputs: UrlPolicy = PUBLIC_ONLY  # source_url, audio_url, the logo: TALKMILL_ENGINE_ALLOWED_INPUT_NETWORKS
    webhooks: UrlPolicy = PUBLIC_ONLY  # webhook targets: TALKMILL_ENGINE_ALLOWED_WEBHOOK_NETWORKS
    timeout: float = 20.0  # seconds for the whole fetch, redirects included, not per read
    uploads_dir: Path | None = None  # where upload://images/<name> and upload://audios/<name> live
    s3_endpoint_url: str | None = None  # None: AWS itself; credentials from the usual AWS_* variables

    def addresses_for(self, field: str) -> UrlPolicy:
        return self.webhooks if field == WEBHOOK_FIELD else self.inputs


@dataclass(frozen=True)
class PinnedURL:
    """An http(s) URL whose host was resolved and checked, and the checked address to connect to."""

    url: httpx.URL
    address: str
    request_url: httpx.URL = dataclass_field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "request_url", self.url.copy_with(host=self.address))

    @property
    def headers(self) -> dict[str, str]:
        return {"Host": self.url.netloc.decode("ascii")}

    @property
    def extensions(self) -> dict[str, Any]:
        # TLS must still name (and verify the certificate of) the real host, not the IP we connect to
        return {"sni_hostname": self.url.host} if self.url.scheme == "https" else {}


# -- the guard ---------------------------------------------------------------------------------------------


def check_url(url: str, field: str, policy: FetchPolicy) -> None:
    """The synchronous check at POST time; raises ValidationError naming `field`."""
    parsed = parse_url(url, field, ValidationError)
    if parsed.scheme in HTTP_SCHEMES:
        pin(parsed, field, policy.addresses_for(field), ValidationError)
    elif parsed.scheme == "upload":
        _read_upload(parsed, _Job(field, 0, policy, ValidationError), check_only=True)
    else:
        _s3_location(parsed, field, ValidationError)


def parse_url(url: str, field: str, error: type[EngineError]) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as e:
        raise _fail(error, field, f"{url!r} is not a valid URL ({e})", _ALLOWED_SCHEMES) from e
    if parsed.scheme not in SCHEMES:
        what = f"the scheme {parsed.scheme or '(none)'!r} is not allowed"
        raise _fail(error, field, what, _ALLOWED_SCHEMES)
    if not parsed.host:
        raise _fail(error, field, f"the URL {url!r} has no host", _ALLOWED_SCHEMES)
    return parsed


def pin(url: httpx.URL, field: str, addresses: UrlPolicy, error: type[EngineError]) -> PinnedURL:
    """Resolve the host once and check every address against `addresses` (the policy's inputs or
    webhooks); the first one is the one to connect to."""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        answers = resolve_host(url.host, port)  # this module's name: tests replace it
    except OSError as e:
        what = f"could not resolve the host {url.host!r} ({e})"
        raise _fail(error, field, what, "a resolvable host") from e
    try:
        return PinnedURL(url, addresses.check(url.host, answers))
    except UrlRefused as e:
        raise _fail(error, field, e.problem, e.allowed) from e


async def pin_async(url: httpx.URL, field: str, addresses: UrlPolicy, error: type[EngineError]) -> PinnedURL:
    # getaddrinfo blocks; abandon it (not the event loop) if the deadline passes meanwhile
    return await anyio.to_thread.run_sync(partial(pin, url, field, addresses, error), abandon_on_cancel=True)


# -- fetching ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """What every step of one fetch needs to know, and how it reports a failure."""

    field: str
    max_bytes: int
    policy: FetchPolicy
    error: type[EngineError]

    def fail(self, what: str, allowed: str) -> EngineError:
        return _fail(self.error, self.field, what, allowed)

    def too_large(self, where: str) -> EngineError:
        mb = self.max_bytes / (1024 * 1024)
        limit = f"{mb:g} MB" if mb == int(mb) else f"{self.max_bytes} bytes"
        return self.fail(f"the file at {where} is larger than {limit}", f"at most {limit}")


def fetch_bytes(
    url: str,
    *,
    field: str,
    max_bytes: int,
    policy: FetchPolicy,
    error: type[EngineError],
    transport: httpx.AsyncBaseTransport | None = None,
) -> bytes:
    """The body at `url`, at most `max_bytes`, within policy.timeout; failures raise `error` naming `field`.

    Blocking (inside a running event loop it runs on its own loop in a thread). `transport` is for tests.
    """
    job = _Job(field, max_bytes, policy, error)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_fetch(url, job, transport))
    # called from inside an event loop: run the fetch on its own loop in a thread instead of failing
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _fetch(url, job, transport)).result()


async def _fetch(url: str, job: _Job, transport: httpx.AsyncBaseTransport | None) -> bytes:
    parsed = parse_url(url, job.field, job.error)
    try:
        with anyio.fail_after(job.policy.timeout):  # one deadline for DNS, connect, redirects and every read
            if parsed.scheme == "upload":
                return _read_upload(parsed, job)
            if parsed.scheme == "s3":
                read = partial(_read_s3, *_s3_location(parsed, job.field, job.error), job)
                return await anyio.to_thread.run_sync(read, abandon_on_cancel=True)  # boto3 blocks
            return await _fetch_http(parsed, job, transport)
    except TimeoutError as e:
        what = f"fetching from {parsed.host} timed out after {job.policy.timeout:g} s"
        raise job.fail(what, "a URL that answers within the time limit") from e


async def _fetch_http(url: httpx.URL, job: _Job, transport: httpx.AsyncBaseTransport | None) -> bytes:
    # redirects are followed by hand so that every hop passes the guard; trust_env=False: a proxy from the
    # environment would connect on our behalf to an address we never checked
    async with httpx.AsyncClient(transport=transport, trust_env=False, timeout=job.policy.timeout) as client:
        for _ in range(MAX_REDIRECTS + 1):
            target = await pin_async(url, job.field, job.policy.inputs, job.error)
            body, location = await _get_hop(client, target, job)
            if location is None:
                return body
            url = _next_hop(url, location, job)
    raise job.fail(f"more than {MAX_REDIRECTS} redirects from {url.host}", f"at most {MAX_REDIRECTS}")


async def _get_hop(client: httpx.AsyncClient, target: PinnedURL, job: _Job) -> tuple[bytes, str | None]:
    """(body, None), or (b"", Location) for a redirect."""
    host = target.url.host
    headers = {**target.headers, "Accept-Encoding": "identity"}  # the cap counts the bytes we will hold
    request = client.build_request("GET", target.request_url, headers=headers, extensions=target.extensions)
    try:
        response = await client.send(request, stream=True)
        try:
            if response.status_code in REDIRECT_STATUSES:
                return b"", _location(response, host, job)
            _check_response(response, host, job)
            return await _read_capped(response, host, job), None
        finally:
            await response.aclose()
    except httpx.TimeoutException as e:
        raise job.fail(f"{host} timed out ({type(e).__name__})", "a URL that answers in time") from e
    except httpx.HTTPError as e:
        what = f"could not fetch from {host}: {type(e).__name__}: {e or 'connection failed'}"
        raise job.fail(what, "a reachable http(s) URL") from e


def _location(response: httpx.Response, host: str, job: _Job) -> str:
    location = response.headers.get("location")
    if not location:
        raise job.fail(f"{host} answered HTTP {response.status_code} without a Location", "a file")
    return location


def _next_hop(url: httpx.URL, location: str, job: _Job) -> httpx.URL:
    try:
        next_url = url.join(location)
    except httpx.InvalidURL as e:
        raise job.fail(f"{url.host} redirected to an invalid URL", "http(s) redirects") from e
    if next_url.scheme not in HTTP_SCHEMES or not next_url.host:
        raise job.fail(f"{url.host} redirected to {next_url.scheme}://", "http(s) redirects only")
    return next_url


def _check_response(response: httpx.Response, host: str, job: _Job) -> None:
    if not 200 <= response.status_code < 300:
        what = f"{host} answered HTTP {response.status_code} {response.reason_phrase}".rstrip()
        raise job.fail(what, "a URL that answers 200 with the file")
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise job.fail(f"{host} sent a {encoding!r}-encoded body", "an uncompressed body")
    declared = response.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > job.max_bytes:
        raise job.too_large(host)


async def _read_capped(response: httpx.Response, host: str, job: _Job) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > job.max_bytes:  # stop reading: a body without Content-Length may never end
            raise job.too_large(host)
    return bytes(body)


# -- upload:// and s3:// -----------------------------------------------------------------------------------


def _read_upload(url: httpx.URL, job: _Job, check_only: bool = False) -> bytes:
    allowed = "upload://images/<name> or upload://audios/<name> as returned by POST /images or /audios"
    if job.policy.uploads_dir is None:
        raise job.fail("upload:// URLs are not enabled on this engine", "http(s) or s3 URLs")
    name = url.path.removeprefix("/")
    if url.host not in UPLOAD_KINDS or not _UPLOAD_NAME.fullmatch(name) or url.query or url.fragment:
        raise job.fail(f"{str(url)!r} is not an upload URL", allowed)
    folder = (job.policy.uploads_dir / url.host).resolve()
    path = (folder / name).resolve()
    if not path.is_relative_to(folder) or not path.is_file():  # a symlink could still point elsewhere
        raise job.fail(f"no uploaded file {url.host}/{name} (expired or never uploaded)", allowed)
    if check_only:
        return b""
    with path.open("rb") as stream:
        data = stream.read(job.max_bytes + 1)
    if len(data) > job.max_bytes:
        raise job.too_large(f"{url.host}/{name}")
    return data


def _s3_location(url: httpx.URL, field: str, error: type[EngineError]) -> tuple[str, str]:
    key = url.path.removeprefix("/")
    if not key or url.query or url.fragment:
        raise _fail(error, field, f"{str(url)!r} names no object", "s3://bucket/key")
    return url.host, key


def _read_s3(bucket: str, key: str, job: _Job) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    from talks_contract.s3 import s3_client

    where = f"s3://{bucket}/{key}"
    try:
        timeout = job.policy.timeout
        client = s3_client(job.policy.s3_endpoint_url, connect_timeout=timeout, read_timeout=timeout,
                           retries={"max_attempts": 2})
        response = client.get_object(Bucket=bucket, Key=key)
        with closing(response["Body"]) as body:
            if response.get("ContentLength", 0) > job.max_bytes:
                raise job.too_large(where)
            data = body.read(job.max_bytes + 1)  # never more, whatever the store claimed
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "error")
        raise job.fail(f"could not read {where}: {code}", "an existing, readable S3 object") from e
    except BotoCoreError as e:
        raise job.fail(f"could not read {where}: {e}", "a reachable S3 store") from e
    if len(data) > job.max_bytes:
        raise job.too_large(where)
    return data


def _fail(error: type[EngineError], field: str, what: str, allowed: str) -> EngineError:
    return error(f"{field}: {what}. Allowed: {allowed}.", {"field": field, "allowed": allowed})
