"""Webhook dispatch, an asyncio task in the server process: POSTs each ended talk to its webhook.

Which deliveries are pending lives in the store, so a delivery interrupted by a stop or a crash is
made after the next start. With replicas, each claims the deliveries it makes (see the store's
claim_webhooks), so one replica delivers each. A receiver may see a talk twice and must treat it as one event.
"""

from __future__ import annotations

import asyncio
import json
import logging

from talkmill_engine.fetch import FetchPolicy
from talkmill_engine.jobs.store import TalkRecord, TalkStore

log = logging.getLogger("talkmill_engine.webhooks")

POLL_SECONDS = 0.3
MAX_CONCURRENT = 16
BACKOFF = (2.0, 8.0, 20.0, 40.0)  # deliver_webhook's waits between its tries: 5 tries over ~70 s
TRIES_PER_ROUND = 5


class WebhookDispatcher:
    def __init__(self, store: TalkStore, secret: str, policy: FetchPolicy) -> None:
        self.store = store
        self.secret = secret
        self.policy = policy
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
        from talkmill_engine.webhooks import deliver_webhook

        body = json.dumps(record.doc).encode()  # the same body GET /talks/{id} answers
        url = record.doc["webhook"]
        async with self._limit:
            result = await deliver_webhook(
                url, body, self.secret, self.policy, attempts=TRIES_PER_ROUND, backoff=BACKOFF
            )
        attempts = record.webhook_attempts + result.attempts
        if result.delivered:
            log.info("webhook for %s delivered (attempt %d)", record.id, attempts)
        else:
            log.warning("webhook for %s failed after %d attempts: %s", record.id, attempts, result.last_error)
        mark = self.store.mark_webhook
        await asyncio.to_thread(mark, record.id, result.delivered, attempts, result.last_error)

    async def stop(self) -> None:
        """Cancels deliveries in progress; they stay pending and are made after the next start."""
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
