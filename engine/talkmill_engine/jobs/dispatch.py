"""Webhook dispatch, an asyncio task in the server process: POSTs each ended talk to its webhook, and
keeps trying on a schedule for 24 hours (SCHEDULE) before it gives the delivery up as `failed`.

Each due delivery gets one attempt; the store records how many were made and when the next is due, so a
stop or a crash loses no count and a restarted engine carries on with the schedule where it was. With
replicas, each claims the deliveries it makes (see the store's claim_webhooks), so one replica makes
each attempt. A receiver may see a talk twice and must treat it as one event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from talkmill_engine.fetch import FetchPolicy
from talkmill_engine.jobs.store import TalkRecord, TalkStore
from talkmill_engine.webhooks import RETRY_AFTER_CAP, DeliveryResult, deliver_webhook

log = logging.getLogger("talkmill_engine.webhooks")

POLL_SECONDS = 0.3
MAX_CONCURRENT = 16
# When each attempt is made, in seconds after the first (the shape of Svix's and Stripe's schedules):
# at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 24 h. A receiver answering 429 or 5xx with
# Retry-After is not tried again sooner than it asked (up to RETRY_AFTER_CAP).
SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 86400.0)


def next_attempt_at(
    attempts: int, now: float, scale: float = 1.0, retry_after: float | None = None
) -> float | None:
    """When the next attempt is due after `attempts` failed ones (unix time); None when none is left.
    `scale` shrinks the schedule (tests)."""
    if attempts >= len(SCHEDULE):
        return None
    wait = (SCHEDULE[attempts] - SCHEDULE[max(attempts - 1, 0)]) * scale
    if retry_after is not None:
        wait = max(wait, min(retry_after, RETRY_AFTER_CAP))
    return now + wait


class WebhookDispatcher:
    def __init__(
        self, store: TalkStore, secret: str, policy: FetchPolicy, schedule_scale: float = 1.0
    ) -> None:
        self.store = store
        self.secret = secret
        self.policy = policy
        self.schedule_scale = schedule_scale
        self._in_flight: dict[str, asyncio.Task] = {}
        self._limit = asyncio.Semaphore(MAX_CONCURRENT)

    async def run(self) -> None:
        """Until cancelled: start a delivery for every due webhook this engine claims and is not making."""
        while True:
            try:
                due = await asyncio.to_thread(self.store.claim_webhooks)
            except Exception:  # a locked or busy database must not end dispatching
                log.exception("reading pending webhooks failed")
                due = []
            for record in due:
                if record.id not in self._in_flight:
                    task = asyncio.create_task(self._deliver(record))
                    self._in_flight[record.id] = task
                    task.add_done_callback(lambda _, talk_id=record.id: self._in_flight.pop(talk_id, None))
            await asyncio.sleep(POLL_SECONDS)

    async def _deliver(self, record: TalkRecord) -> None:
        body = json.dumps(record.doc).encode()  # the same body GET /talks/{id} answers
        async with self._limit:
            result = await deliver_webhook(record.doc["webhook"], body, self.secret, self.policy, attempts=1)
        attempts = record.webhook_attempts + result.attempts
        next_at = self._next_at(result, attempts)
        self._log(record.id, result, attempts, next_at)
        mark = self.store.mark_webhook
        await asyncio.to_thread(mark, record.id, result.delivered, attempts, result.last_error, next_at)

    def _next_at(self, result: DeliveryResult, attempts: int) -> float | None:
        if result.delivered or not result.retry:
            return None
        return next_attempt_at(attempts, time.time(), self.schedule_scale, result.retry_after)

    @staticmethod
    def _log(talk_id: str, result: DeliveryResult, attempts: int, next_at: float | None) -> None:
        if result.delivered:
            log.info("webhook for %s delivered (attempt %d)", talk_id, attempts)
        elif next_at is not None:
            wait = next_at - time.time()
            log.info("webhook for %s: attempt %d failed (%s); next in %.0f s", talk_id, attempts,
                     result.last_error, wait)  # fmt: skip
        else:
            log.warning("webhook for %s failed for good after %d attempts: %s", talk_id, attempts,
                        result.last_error)  # fmt: skip

    async def stop(self) -> None:
        """Cancels deliveries in progress; they stay pending and are made after the next start."""
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
