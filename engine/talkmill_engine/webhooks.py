"""Signed webhook delivery: POST the talk to the caller's URL, retrying what may succeed later.

The URL passes the same private-address guard as input fetches, checked again at every send (a name
that resolved to a public address at POST time may resolve elsewhere an hour later), and the request goes
to the address that was checked. Redirects are not followed: a receiver answers where it was told to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio
import httpx

from talkmill_engine.errors import EngineError
from talkmill_engine.fetch import FetchPolicy, parse_url, pin_async
from talks_contract.retry import parse_retry_after
from talks_contract.signatures import SIGNATURE_HEADER, sign

RETRY_AFTER_CAP = 60.0  # seconds; a receiver asking for longer is waited on no longer than this
USER_AGENT = "talkmill-engine-webhooks/1"


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    attempts: int
    last_error: str | None = None
    retry: bool = False  # not delivered, and a later attempt may succeed (no refusal by the receiver)
    retry_after: float | None = None  # what the receiver asked for with its last answer, in seconds


@dataclass(frozen=True)
class _Outcome:
    delivered: bool
    retry: bool = False
    error: str | None = None
    retry_after: float | None = None


class _Refused(EngineError):
    """The URL failed the guard (not a retryable failure unless DNS itself failed)."""


async def deliver_webhook(
    url: str,
    body: bytes,
    secret: str,
    policy: FetchPolicy,
    *,
    attempts: int = 4,
    backoff: Sequence[float] = (2, 8, 20, 40),
    client: httpx.AsyncClient | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> DeliveryResult:
    """POST `body` signed with `secret`; retry connection errors, timeouts, 429 and 5xx. Never raises
    for a failed delivery: the result says what happened. `backoff[i]` is the wait after attempt i+1."""
    own_client = client is None
    client = client or httpx.AsyncClient(trust_env=False, timeout=policy.timeout)
    outcome = _Outcome(delivered=False, error="no attempt made")
    attempt = 0
    try:
        while attempt < max(1, attempts):
            attempt += 1
            outcome = await _attempt(client, url, body, secret, policy)
            if outcome.delivered or not outcome.retry or attempt >= attempts:
                break
            await sleep(_wait(backoff, attempt, outcome.retry_after))
    finally:
        if own_client:
            await client.aclose()
    if outcome.delivered:
        return DeliveryResult(True, attempt)
    return DeliveryResult(False, attempt, outcome.error, outcome.retry, outcome.retry_after)


async def _attempt(
    client: httpx.AsyncClient, url: str, body: bytes, secret: str, policy: FetchPolicy
) -> _Outcome:
    try:
        with anyio.fail_after(policy.timeout):
            target = await pin_async(_webhook_url(url), "webhook", policy.webhooks, _Refused)
            headers = {
                **target.headers,
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                SIGNATURE_HEADER: sign(secret, body),  # a fresh timestamp per attempt
            }
            response = await client.post(
                target.request_url, content=body, headers=headers, extensions=target.extensions,
                follow_redirects=False,
            )
    except _Refused as e:
        transient = isinstance(e.__cause__, OSError)  # DNS failure may pass; a private address won't
        return _Outcome(delivered=False, retry=transient, error=e.description)
    except (TimeoutError, httpx.TimeoutException):
        return _Outcome(delivered=False, retry=True, error=f"timed out after {policy.timeout:g} s")
    except httpx.HTTPError as e:
        return _Outcome(delivered=False, retry=True, error=f"{type(e).__name__}: {e or 'connection failed'}")
    return _judge(response)


def _webhook_url(url: str) -> httpx.URL:
    parsed = parse_url(url, "webhook", _Refused)
    if parsed.scheme not in ("http", "https"):
        raise _Refused(f"webhook: the scheme {parsed.scheme!r} is not allowed. Allowed: http(s) URLs.")
    return parsed


def _judge(response: httpx.Response) -> _Outcome:
    status = response.status_code
    if 200 <= status < 300:
        return _Outcome(delivered=True)
    error = f"receiver answered HTTP {status} {response.reason_phrase}".rstrip()
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return _Outcome(False, retry=True, error=error, retry_after=retry_after)
    return _Outcome(False, retry=False, error=error)  # 3xx and other 4xx: the receiver refused it


def _wait(backoff: Sequence[float], attempt: int, retry_after: float | None) -> float:
    planned = backoff[min(attempt, len(backoff)) - 1] if backoff else 0.0
    # Retry-After means "not before": wait at least that, but never longer than the cap
    return max(planned, min(retry_after, RETRY_AFTER_CAP)) if retry_after is not None else planned
