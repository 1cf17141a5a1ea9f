"""Waiting for a talk to end: polls with a growing interval, cut short by a webhook's wake-up, bounded
by an overall deadline however slowly the API answers. Shared by every backend.

A transient error (connection refused, 5xx, 429: one replica down while another finishes the talk) does not
end the wait: polling goes on until the deadline, and the last such error is reported if it is reached."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from connectors.talks.base import TalkRef, TalkResult
from connectors.talks.http import Sleep
from talkmill.errors import TalksError, TalksTimeout

GROWTH = 1.5  # each pause is this much longer than the last, up to max_interval


async def poll_until_ended(
    check: Callable[[], Awaitable[TalkRef | TalkResult]],
    talk_id: str,
    *,
    poll_interval: float,
    max_interval: float,
    timeout: float,
    sleep: Sleep,
    clock: Callable[[], float],
    wake: asyncio.Event | None = None,
) -> TalkResult:
    """`check()` until it gives a TalkResult (a TalkRef: still running)."""
    deadline = clock() + timeout
    interval, status, failing = poll_interval, None, None
    while True:
        remaining = deadline - clock()
        if remaining <= 0:
            raise failing or TalksTimeout(talk_id, timeout, status)
        try:
            seen = await asyncio.wait_for(check(), remaining)
        except TimeoutError as e:
            raise TalksTimeout(talk_id, timeout, status) from e
        except TalksError as e:
            if not e.transient:
                raise
            failing = e
        else:
            if isinstance(seen, TalkResult):
                return seen
            status, failing = seen.status, None
        await nap(min(interval, max(0.0, deadline - clock())), wake, sleep)
        interval = min(interval * GROWTH, max_interval)


async def nap(seconds: float, wake: asyncio.Event | None, sleep: Sleep) -> None:
    """Sleep `seconds`, or less if `wake` is set; a wake-up is consumed (the next nap waits for the next)."""
    if wake is None:
        await sleep(seconds)
        return
    if not wake.is_set():
        napping = asyncio.ensure_future(sleep(seconds))
        woken = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({napping, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            napping.cancel()
            woken.cancel()
    wake.clear()
