"""The HTTP side every Talks backend shares: auth, finite timeouts, and retries of what is safe to retry.

429 waits for Retry-After (talks_contract.retry: delay-seconds, fractional too, or an HTTP date), capped;
5xx and connection trouble back off exponentially with jitter. `call` retries requests that are safe to
repeat; a create uses `attempt` and `pause` itself, because an uncertain create (5xx, or a connection lost
after sending) must be looked up before it is sent again. Error bodies are read as the Talks error
{kind, description, details}, with the usual other spellings (code, message) as fallbacks.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from talkmill.errors import TalksBadAnswer, TalksConnectionError, TalksError, TalksHTTPError, TalksNotFound
from talks_contract.retry import parse_retry_after

USER_AGENT = "talkmill-pipeline/1"

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Retry:
    """An attempt that failed in a way worth retrying."""

    error: TalksError
    cause: BaseException | None
    uncertain: bool  # the request may have taken effect on the server
    retry_after: float | None = None


class ApiClient:
    def __init__(
        self,
        base_url: str,
        key: str | None = None,
        *,
        auth_scheme: str = "Basic",
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        retry_after_cap: float = 60.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        trust_env: bool = True,
    ) -> None:
        """`key` is sent as `Authorization: <auth_scheme> <key>` (D-ID: Basic with "user:pass"), only to
        `base_url`'s host. `timeout` bounds each HTTP request; `max_retries` counts retries after the first
        attempt; the wait before retry n is min(cap, base·2ⁿ) scaled by a jitter in [0.5, 1)."""
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError("timeout must be a finite number of seconds")
        self.base_url = httpx.URL(base_url.rstrip("/") + "/")
        self._auth = _auth_header(key, auth_scheme)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, transport=transport, trust_env=trust_env,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )  # fmt: skip
        self.max_retries = max_retries
        self.backoff_base, self.backoff_cap, self.retry_after_cap = backoff_base, backoff_cap, retry_after_cap
        self.sleep, self.clock, self._jitter = sleep, clock, jitter

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request that is safe to repeat, retried as far as the budget allows."""
        for attempt in range(self.max_retries + 1):
            outcome = await self.attempt(method, path, **kwargs)
            if isinstance(outcome, httpx.Response):
                return outcome
            if attempt < self.max_retries:
                await self.pause(outcome, attempt)
        raise outcome.error from outcome.cause

    async def call_json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return json_object(await self.call(method, path, **kwargs))

    async def attempt(self, method: str, path: str, **kwargs: Any) -> httpx.Response | Retry:
        """One request: the response on success, a Retry for what may pass, raises for the rest."""
        try:
            response = await self._http.request(method, path, headers=self._auth, **kwargs)
        except httpx.TransportError as e:
            # refused connections and pool/connect timeouts never reached the server; anything later might
            sent = not isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
            error = TalksConnectionError(f"{method} /{path} failed: {_describe(e)}", uncertain=sent)
            return Retry(error, e, uncertain=sent)
        if response.status_code < 400:
            return response
        error = http_error(response)
        if response.status_code == 429:  # refused before any work: safe to repeat, even a create
            return Retry(error, None, uncertain=False, retry_after=error.retry_after)
        if response.status_code >= 500:
            return Retry(error, None, uncertain=True)
        raise error

    async def pause(self, outcome: Retry, attempt: int) -> None:
        if outcome.retry_after is not None:
            await self.sleep(min(outcome.retry_after, self.retry_after_cap))
        else:
            await self.sleep(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_cap, self.backoff_base * 2**attempt) * (0.5 + self._jitter() / 2)

    async def stream(self, url: str, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        """The bytes at a URL, in chunks. The key goes only to the API's own host: result URLs on other
        hosts are presigned, and a key sent there would leak."""
        headers = self._auth if _same_origin(self._http.base_url.join(url), self.base_url) else {}
        try:
            async with self._http.stream("GET", url, headers=headers, follow_redirects=True) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise http_error(response)
                async for chunk in response.aiter_bytes(chunk_size):
                    yield chunk
        except httpx.TransportError as e:
            raise TalksConnectionError(f"GET {_shown(url)} failed: {_describe(e)}", uncertain=False) from e


def http_error(response: httpx.Response) -> TalksHTTPError:
    """The Talks error body {kind, description, details} as an exception, whatever the server sent."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"description": response.text[:500] or response.reason_phrase}
    cls = TalksNotFound if response.status_code == 404 else TalksHTTPError
    return cls(
        response.status_code,
        str(body.get("kind") or body.get("code") or f"HTTP{response.status_code}"),
        str(body.get("description") or body.get("message") or response.reason_phrase),
        body.get("details"),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


def json_object(response: httpx.Response) -> dict[str, Any]:
    """A 2xx body that must be a JSON object; TalksBadAnswer otherwise."""
    what = f"{response.request.method} {response.request.url.path}"
    try:
        body = response.json()
    except ValueError as e:
        shown = response.text[:200]
        raise TalksBadAnswer(f"{what} answered {response.status_code} with no JSON: {shown!r}") from e
    if not isinstance(body, dict):
        raise TalksBadAnswer(f"{what} answered {response.status_code} with {body!r:.200}, not an object")
    return body


def _auth_header(key: str | None, scheme: str) -> dict[str, str]:
    if not key:
        return {}
    if key.split(" ", 1)[0] in ("Basic", "Bearer"):  # already a full header value
        return {"Authorization": key}
    return {"Authorization": f"{scheme} {key}"}


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _shown(url: str) -> str:
    """A URL without its query: presigned signatures do not belong in logs."""
    return str(httpx.URL(url).copy_with(query=None))


def _describe(error: httpx.TransportError) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
