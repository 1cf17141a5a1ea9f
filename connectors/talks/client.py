"""Async client of the Talks API (our engine or D-ID's cloud): the only code that speaks its wire format.

Retries what is safe to retry: 429 after Retry-After, 5xx and connection trouble with exponential
backoff and jitter. A create is never blindly repeated: the script id travels in `user_data`, and when a
POST /talks may have reached the server without us seeing the answer, the talk is looked up first.
One client per event loop (httpx pools are bound to the loop that opened them); use `async with`.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import mimetypes
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from talkmill.errors import (
    TalksConnectionError,
    TalksError,
    TalksHTTPError,
    TalksNotFound,
    TalksTimeout,
)

FINAL_STATUSES = frozenset({"done", "error", "rejected"})
USER_AGENT = "talkmill-pipeline/1"
LOOKUP_CLOCK_SKEW = 600.0  # seconds: talks created this long before the client started still count

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class _Retry:
    """An attempt that failed in a way worth retrying."""

    error: TalksError
    cause: BaseException | None
    uncertain: bool  # the request may have taken effect on the server
    retry_after: float | None = None


class TalksClient:
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
        lookup_pages: int = 10,
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
        self.lookup_pages = lookup_pages
        self._sleep, self._clock, self._jitter = sleep, clock, jitter
        self._started_at = time.time()  # the lookup of uncertain creates stops at talks older than this

    async def __aenter__(self) -> TalksClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the API ---------------------------------------------------------------------------------------------

    async def upload_image(self, image: Path | str | bytes, filename: str | None = None) -> str:
        """POST /images; the returned url is usable as `source_url`. A repeated upload only orphans a file,
        so uncertain attempts are simply retried."""
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        name = filename or (Path(image).name if not isinstance(image, bytes) else "image.png")
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        response = await self._call("POST", "images", files={"image": (name, data, content_type)})
        return _json(response)["url"]

    async def create_talk(self, body: dict[str, Any], script_id: str) -> str:
        """POST /talks with `user_data` = script_id; the talk id. An uncertain attempt (timeout, reset,
        5xx) is resolved by looking the talk up by script id before posting again."""
        payload = {**body, "user_data": script_id}
        since = self._started_at - LOOKUP_CLOCK_SKEW
        for attempt in range(self.max_retries + 1):
            outcome = await self._attempt("POST", "talks", json=payload)
            if isinstance(outcome, httpx.Response):
                return _json(outcome)["id"]
            last = attempt == self.max_retries
            if outcome.uncertain or not last:
                await self._pause(outcome, attempt)  # before a lookup: a slow server may still be committing
            if outcome.uncertain and (found := await self._lookup_after(outcome, script_id, since)):
                return found["id"]
        raise outcome.error from outcome.cause

    async def find_talk_by_user_data(
        self, user_data: str, *, max_pages: int | None = None, created_after: float | None = None
    ) -> dict[str, Any] | None:
        """The newest talk whose user_data matches, scanning GET /talks newest first; None if not within
        `max_pages` pages. With `created_after` (unix seconds), older talks neither match nor are paged
        past: an earlier run's talk for the same script is not this create's."""
        token: str | None = None
        for _ in range(max_pages or self.lookup_pages):
            talks, token = await self.list_talks(token=token)
            for talk in talks:
                if talk.get("user_data") == user_data and not _older(talk, created_after):
                    return talk
            if not token or (created_after is not None and all(_older(t, created_after) for t in talks)):
                return None
        return None

    async def list_talks(self, limit: int = 100, token: str | None = None) -> tuple[list[dict], str | None]:
        """One page of GET /talks (newest first) and the token of the next page (None on the last)."""
        params: dict[str, Any] = {"limit": limit, **({"token": token} if token else {})}
        page = _json(await self._call("GET", "talks", params=params))
        return page.get("talks", []), page.get("token") or None

    async def get_talk(self, talk_id: str) -> dict[str, Any]:
        return _json(await self._call("GET", f"talks/{talk_id}"))

    async def delete_talk(self, talk_id: str) -> dict[str, Any]:
        """DELETE /talks/{id}; 409 NotReadyError (a TalksHTTPError) while it is still processing."""
        return _json(await self._call("DELETE", f"talks/{talk_id}"))

    async def wait_for_talk(
        self,
        talk_id: str,
        *,
        poll_interval: float = 1.0,
        max_interval: float = 15.0,
        timeout: float = 900.0,
        wake: asyncio.Event | None = None,
    ) -> dict[str, Any]:
        """Poll until the talk is done, error or rejected, the interval growing ×1.5 up to `max_interval`;
        `wake` being set (by the webhook receiver) cuts the current pause short. TalksTimeout past
        `timeout` seconds overall, however slow the API answers; TalksNotFound if the talk is gone."""
        deadline = self._clock() + timeout
        interval, status = poll_interval, None
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise TalksTimeout(talk_id, timeout, status)
            try:
                talk = await asyncio.wait_for(self.get_talk(talk_id), remaining)
            except TimeoutError as e:
                raise TalksTimeout(talk_id, timeout, status) from e
            status = talk.get("status")
            if status in FINAL_STATUSES:
                return talk
            await self._nap(min(interval, max(0.0, deadline - self._clock())), wake)
            interval = min(interval * 1.5, max_interval)

    async def stream_result(self, url: str, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        """The bytes at a result URL, in chunks. The key goes only to the API's own host: result URLs on
        other hosts are presigned, and a key sent there would leak."""
        headers = self._auth if _same_origin(self._http.base_url.join(url), self.base_url) else {}
        try:
            async with self._http.stream("GET", url, headers=headers, follow_redirects=True) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _http_error(response)
                async for chunk in response.aiter_bytes(chunk_size):
                    yield chunk
        except httpx.TransportError as e:
            raise TalksConnectionError(f"GET {_shown(url)} failed: {_describe(e)}", uncertain=False) from e

    # -- retries ---------------------------------------------------------------------------------------------

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request that is safe to repeat, retried as far as the budget allows."""
        for attempt in range(self.max_retries + 1):
            outcome = await self._attempt(method, path, **kwargs)
            if isinstance(outcome, httpx.Response):
                return outcome
            if attempt < self.max_retries:
                await self._pause(outcome, attempt)
        raise outcome.error from outcome.cause

    async def _attempt(self, method: str, path: str, **kwargs: Any) -> httpx.Response | _Retry:
        """One request: the response on success, a _Retry for what may pass, raises for the rest."""
        try:
            response = await self._http.request(method, path, headers=self._auth, **kwargs)
        except httpx.TransportError as e:
            # refused connections and pool/connect timeouts never reached the server; anything later might
            sent = not isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
            error = TalksConnectionError(f"{method} /{path} failed: {_describe(e)}", uncertain=sent)
            return _Retry(error, e, uncertain=sent)
        if response.status_code < 400:
            return response
        error = _http_error(response)
        if response.status_code == 429:  # refused before any work: safe to repeat, even a create
            return _Retry(error, None, uncertain=False, retry_after=error.retry_after)
        if response.status_code >= 500:
            return _Retry(error, None, uncertain=True)
        raise error

    async def _pause(self, outcome: _Retry, attempt: int) -> None:
        if outcome.retry_after is not None:
            await self._sleep(min(outcome.retry_after, self.retry_after_cap))
        else:
            await self._sleep(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_cap, self.backoff_base * 2**attempt) * (0.5 + self._jitter() / 2)

    async def _lookup_after(self, outcome: _Retry, script_id: str, since: float) -> dict[str, Any] | None:
        try:
            return await self.find_talk_by_user_data(script_id, created_after=since)
        except TalksError as e:
            # we cannot tell whether the create happened: refuse to guess (a duplicate costs a render)
            raise TalksConnectionError(
                f"create of {script_id} is uncertain ({outcome.error}) and the lookup failed: {e}",
                uncertain=True,
            ) from e

    async def _nap(self, seconds: float, wake: asyncio.Event | None) -> None:
        if wake is None:
            await self._sleep(seconds)
            return
        if not wake.is_set():
            napping = asyncio.ensure_future(self._sleep(seconds))
            woken = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait({napping, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                napping.cancel()
                woken.cancel()
        wake.clear()  # consumed: the next pause waits for the next wake-up


def _auth_header(key: str | None, scheme: str) -> dict[str, str]:
    if not key:
        return {}
    if key.split(" ", 1)[0] in ("Basic", "Bearer"):  # already a full header value
        return {"Authorization": key}
    return {"Authorization": f"{scheme} {key}"}


def _http_error(response: httpx.Response) -> TalksHTTPError:
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
        str(body.get("kind") or f"HTTP{response.status_code}"),
        str(body.get("description") or body.get("message") or response.reason_phrase),
        body.get("details"),
        retry_after=_retry_after(response),
    )


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from Retry-After (delay-seconds or an HTTP date); None if absent or unreadable."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as e:
        raise TalksHTTPError(response.status_code, "BadResponse", f"not JSON: {response.text[:200]!r}") from e
    if not isinstance(body, dict):
        raise TalksHTTPError(response.status_code, "BadResponse", f"expected an object, got {body!r:.200}")
    return body


def _older(talk: dict[str, Any], created_after: float | None) -> bool:
    """True only when the talk is known to predate `created_after` (an unreadable stamp is not)."""
    stamp = _unix(talk.get("created_at"))
    return created_after is not None and stamp is not None and stamp < created_after


def _unix(stamp: Any) -> float | None:
    try:
        parsed = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _shown(url: str) -> str:
    """A URL without its query: presigned signatures do not belong in logs."""
    return str(httpx.URL(url).copy_with(query=None))


def _describe(error: httpx.TransportError) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
