"""Fetching the http(s) URLs that content names (sources, CSV `source` cells, the dry run's presenter check):
through the contract's URL policy (talks_contract.urlpolicy), size-capped, within one deadline.

The engine's guard, on the pipeline's side: each hop's host resolved once and every answer checked, the
request sent to the checked address (with the real host's name in Host and in TLS), redirects followed by
hand so that each hop is checked, and no proxy from the environment (it would connect on our behalf to an
address nobody checked). The Talks API itself and its result URLs are the configured backend's, trusted
as configured: they do not come through here.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from talkmill.errors import SourceReadError
from talks_contract.urlpolicy import (
    HTTP_SCHEMES,
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    UrlPolicy,
    UrlRefused,
    resolve_host,
)

ALLOWLIST_HINT = "more networks or hosts: $TALKMILL_ALLOWED_NETWORKS or fetch.allowed_networks"
_RESOLVER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="talkmill-dns")  # a lookup past the deadline
# is left behind here, and asyncio.run() does not wait for it as it would for its default executor


@dataclass(frozen=True)
class _Job:
    url: str  # as given: every message starts with it
    policy: UrlPolicy
    max_bytes: int
    timeout: float

    def fail(self, what: str, *, transient: bool = False) -> SourceReadError:
        return SourceReadError(f"{self.url}: {what}", transient=transient)

    def too_large(self) -> SourceReadError:
        return self.fail(f"larger than the {self.max_bytes:,}-byte limit")


def fetch_url(url: str, *, policy: UrlPolicy, max_bytes: int, timeout: float,
              transport: httpx.AsyncBaseTransport | None = None) -> bytes:
    """The body at the http(s) `url`, at most `max_bytes`, within `timeout` seconds for everything (DNS,
    redirects, every read), each hop allowed by `policy`. SourceReadError naming `url` otherwise, transient
    when a retry may help (429, 5xx, timeouts, connection trouble). `transport` is for tests."""
    fetch = _fetch(_Job(url, policy, max_bytes, timeout), transport)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(fetch)
    with ThreadPoolExecutor(max_workers=1) as pool:  # inside an event loop: one of its own, in a thread
        return pool.submit(asyncio.run, fetch).result()


async def _fetch(job: _Job, transport: httpx.AsyncBaseTransport | None) -> bytes:
    url = first = _first_url(job)
    try:
        async with asyncio.timeout(job.timeout), httpx.AsyncClient(transport=transport, trust_env=False,
                                                                    timeout=job.timeout) as client:
            for _ in range(MAX_REDIRECTS + 1):
                request = await _pinned_request(client, url, job, redirected=url is not first)
                body, location = await _get(client, request, url.host, job)
                if location is None:
                    return body
                url = _next_hop(url, location, job)
            raise job.fail(f"more than {MAX_REDIRECTS} redirects")
    except TimeoutError as e:
        raise job.fail(f"no complete answer within {job.timeout:g} s", transient=True) from e


def _first_url(job: _Job) -> httpx.URL:
    try:
        url = httpx.URL(job.url)
    except (httpx.InvalidURL, TypeError) as e:
        raise job.fail(f"not a valid URL ({e})") from e
    if url.scheme not in HTTP_SCHEMES or not url.host:
        raise job.fail("not an http(s) URL with a host")
    return url


async def _pinned_request(client: httpx.AsyncClient, url: httpx.URL, job: _Job, *,
                          redirected: bool) -> httpx.Request:
    """The GET for `url`, addressed to the checked address of its host."""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        answers = await asyncio.get_running_loop().run_in_executor(_RESOLVER, resolve_host, url.host, port)
        address = job.policy.check(url.host, answers)
    except OSError as e:
        raise job.fail(f"could not resolve the host {url.host!r} ({e})", transient=True) from e
    except UrlRefused as e:
        hop = f"redirected to {url}, where " if redirected else ""
        what = f"refused: {hop}{e.problem}; allowed: {e.allowed} ({ALLOWLIST_HINT})"
        raise job.fail(what, transient=e.transient) from e
    headers = {"Host": url.netloc.decode("ascii"), "Accept-Encoding": "identity"}  # the cap counts bytes held
    # TLS must still name (and verify the certificate of) the real host, not the address we connect to
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    return client.build_request("GET", url.copy_with(host=address), headers=headers, extensions=extensions)


async def _get(client: httpx.AsyncClient, request: httpx.Request, host: str,
               job: _Job) -> tuple[bytes, str | None]:
    """(body, None), or (b"", Location) for a redirect."""
    try:
        response = await client.send(request, stream=True)
        try:
            if response.status_code in REDIRECT_STATUSES:
                if not (location := response.headers.get("location")):
                    raise job.fail(f"{host} answered HTTP {response.status_code} without a Location")
                return b"", location
            _check_status(response, job)
            return await _read_capped(response, job), None
        finally:
            await response.aclose()
    except httpx.HTTPError as e:  # timeouts, refused or reset connections, TLS failures
        raise job.fail(f"{type(e).__name__}: {e or 'connection failed'}", transient=True) from e


def _check_status(response: httpx.Response, job: _Job) -> None:
    status = response.status_code
    if not 200 <= status < 300:
        transient = status == 429 or status >= 500
        raise job.fail(f"HTTP {status} {response.reason_phrase}".rstrip(), transient=transient)
    declared = response.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > job.max_bytes:
        raise job.too_large()


async def _read_capped(response: httpx.Response, job: _Job) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():  # decoded, if a server compresses despite "identity"
        body += chunk
        if len(body) > job.max_bytes:  # stop reading: a body without Content-Length may never end
            raise job.too_large()
    return bytes(body)


def _next_hop(url: httpx.URL, location: str, job: _Job) -> httpx.URL:
    try:
        next_url = url.join(location)
    except httpx.InvalidURL as e:
        raise job.fail(f"{url.host} redirected to an invalid URL") from e
    if next_url.scheme not in HTTP_SCHEMES or not next_url.host:
        raise job.fail(f"{url.host} redirected to {next_url.scheme}://, not http(s)")
    return next_url
