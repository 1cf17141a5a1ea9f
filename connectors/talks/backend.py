"""The one wiring point for the Talks backend of a run: the embedded engine, or any Talks-compatible URL.

- `backend.url` unset: start the local engine on 127.0.0.1 (its key and webhook secret come from its
  data dir), webhooks received on 127.0.0.1.
- `backend.url` set (D-ID's cloud, an engine elsewhere): the key from the environment variable named by
  `backend.key_env`. Webhook mode there needs the sender's signing secret in TALKMILL_TALKS_WEBHOOK_SECRET
  and a receiver the backend can reach: TALKMILL_TALKS_WEBHOOK_URL, the address the backend calls (e.g. a
  tunnel), and TALKMILL_TALKS_WEBHOOK_LISTEN, where the receiver listens (host:port, default 127.0.0.1 on
  a free port). Without the secret and the URL the run polls, and says so.
"""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

from connectors.receiver import WebhookReceiver
from connectors.talks.client import TalksClient
from talkmill.config import BackendConfig, is_url

log = logging.getLogger("talkmill.backend")
WEBHOOK_SECRET_ENV = "TALKMILL_TALKS_WEBHOOK_SECRET"
WEBHOOK_URL_ENV = "TALKMILL_TALKS_WEBHOOK_URL"
WEBHOOK_LISTEN_ENV = "TALKMILL_TALKS_WEBHOOK_LISTEN"


@dataclass
class Backend:
    """What the talk stage needs from one run: the API, its limits, and how talks are awaited."""

    client: TalksClient
    config: BackendConfig
    receiver: WebhookReceiver | None = None  # None: poll
    existing: dict[str, dict[str, Any]] = field(default_factory=dict)  # script id → newest talk for it
    presenters: dict[str, str] = field(default_factory=dict)  # local path → uploaded source_url
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    shared_budget: bool = False  # a Prefect global concurrency limit shared by runs exists (talkmill serve)
    _upload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def source_url(self, presenter: str) -> str:
        """The presenter as the backend can fetch it: URLs as they are, local files uploaded once per run."""
        if is_url(presenter):
            return presenter
        async with self._upload_lock:
            if presenter not in self.presenters:
                self.presenters[presenter] = await self.client.upload_image(Path(presenter))
            return self.presenters[presenter]


@asynccontextmanager
async def open_backend(config: BackendConfig, engine_dir: Path | None = None) -> AsyncIterator[Backend]:
    engine = None
    if config.url is None:
        from talkmill_engine.local import DEFAULT_DATA_DIR, LocalEngine

        engine = LocalEngine(engine_dir or DEFAULT_DATA_DIR)
        await asyncio.to_thread(engine.start)
        url, key, secret, public_url = engine.url, engine.key, engine.webhook_secret, None
    else:
        url, key = config.url, os.environ.get(config.key_env)
        secret, public_url = os.environ.get(WEBHOOK_SECRET_ENV), os.environ.get(WEBHOOK_URL_ENV)
        if key is None:
            log.warning("no key in $%s: calling %s without one", config.key_env, url)
    receiver = _receiver(config, secret, public_url, remote=engine is None)
    client = TalksClient(url, key, timeout=config.request_timeout)
    try:
        yield Backend(client, config, receiver, slots=asyncio.Semaphore(config.concurrency))
    finally:
        await client.aclose()
        if receiver is not None:
            receiver.stop()
        if engine is not None:
            await asyncio.to_thread(engine.stop)


def _receiver(config: BackendConfig, secret: str | None, public_url: str | None, remote: bool) -> WebhookReceiver | None:
    if config.wait != "webhook":
        return None
    if remote and not (secret and public_url):
        log.warning("webhook mode needs $%s and $%s for a remote backend: polling instead",
                    WEBHOOK_SECRET_ENV, WEBHOOK_URL_ENV)
        return None
    host, _, port = os.environ.get(WEBHOOK_LISTEN_ENV, "127.0.0.1:0").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"${WEBHOOK_LISTEN_ENV} must be host:port, e.g. 0.0.0.0:8765")
    return WebhookReceiver(secret, host=host, port=int(port), public_url=public_url).start()
