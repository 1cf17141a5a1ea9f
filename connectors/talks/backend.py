"""The one wiring point for a run's Talks backend: `backend.kind` picks the class (connectors.talks.BACKENDS),
`backend.url` where it is.

- no `backend.url` and a kind with a local engine (talkmill): start our engine on 127.0.0.1 (its key and
  webhook secret come from its data dir); webhooks received on 127.0.0.1.
- otherwise (D-ID's cloud at its default URL, an engine elsewhere): the key from the environment variable
  named by `backend.key_env`. Webhook mode there needs the sender's signing secret in
  TALKMILL_TALKS_WEBHOOK_SECRET and a receiver the backend can reach: TALKMILL_TALKS_WEBHOOK_URL, the
  address the backend calls (e.g. a tunnel; a scheme the backend accepts), and
  TALKMILL_TALKS_WEBHOOK_LISTEN, where the receiver listens (host:port, default 127.0.0.1 on a free port).
  Without the secret and the URL the run polls, and says so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator, Collection
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from connectors.receiver import WebhookReceiver
from connectors.talks import backend_class
from connectors.talks.base import TalkRef, TalksBackend
from connectors.talks.local import start_local_engine
from talkmill.config import BackendConfig, is_url
from talkmill.errors import ConfigError, TalksHTTPError, TalksRefusedError

log = logging.getLogger("talkmill.backend")
WEBHOOK_SECRET_ENV = "TALKMILL_TALKS_WEBHOOK_SECRET"
WEBHOOK_URL_ENV = "TALKMILL_TALKS_WEBHOOK_URL"
WEBHOOK_LISTEN_ENV = "TALKMILL_TALKS_WEBHOOK_LISTEN"
LISTEN_FORM = "host:port, e.g. 0.0.0.0:8765 (port 0: any free port)"
_LISTEN = re.compile(r"^(?P<host>[^\s:]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})$")
REFUSED_KEY = (401, 403)


@dataclass
class Backend:
    """What the talk stage needs from one run: the API, its limits, and how talks are awaited."""

    talks: TalksBackend
    config: BackendConfig
    receiver: WebhookReceiver | None = None  # None: poll
    existing: dict[str, TalkRef] = field(default_factory=dict)  # script id → newest talk for it
    presenters: dict[str, str] = field(default_factory=dict)  # local path → uploaded source_url
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    shared_budget: bool = False  # a Prefect global concurrency limit shared by runs exists (talkmill serve)
    _upload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def index_existing(self, script_ids: Collection[str]) -> None:
        """Look up the talks already at the backend for these scripts: a re-run picks them up. This is the
        run's first call, so a refused key ends the run here, before any talk, as TalksRefusedError."""
        try:
            self.existing = await self.talks.find_existing(script_ids)
        except TalksHTTPError as e:
            if e.status not in REFUSED_KEY:
                raise
            raise TalksRefusedError(
                f"the Talks API refused the key ({e.status} {e.kind}: {e.description}); "
                f"set ${self.config.key_env} to a key the {self.config.kind} backend accepts"
            ) from e

    async def source_url(self, presenter: str) -> str:
        """The presenter as the backend can fetch it: URLs as they are, local files uploaded once per run."""
        if is_url(presenter):
            return presenter
        async with self._upload_lock:
            if presenter not in self.presenters:
                self.presenters[presenter] = await self.talks.upload_image(Path(presenter))
            return self.presenters[presenter]

    @property
    def webhook_url(self) -> str | None:
        return self.receiver.url if self.receiver else None


@dataclass(frozen=True)
class _Endpoint:
    url: str
    key: str | None
    webhook_secret: str | None
    public_url: str | None  # where a remote backend calls back (None: the receiver's own address)
    local: bool


@asynccontextmanager
async def open_backend(config: BackendConfig, engine_dir: Path | None = None) -> AsyncIterator[Backend]:
    cls = backend_class(config.kind)
    async with AsyncExitStack() as stack:
        endpoint = await stack.enter_async_context(_endpoint(cls, config, engine_dir))
        talks = cls(endpoint.url, endpoint.key, webhook_secret=endpoint.webhook_secret,
                    timeout=config.request_timeout)
        stack.push_async_callback(talks.aclose)
        receiver = _receiver(config, talks, endpoint)
        if receiver is not None:
            stack.callback(receiver.stop)
        yield Backend(talks, config, receiver, slots=asyncio.Semaphore(config.concurrency))


@asynccontextmanager
async def _endpoint(
    cls: type[TalksBackend], config: BackendConfig, engine_dir: Path | None
) -> AsyncIterator[_Endpoint]:
    """Where the backend is and how to reach it; our engine started (and stopped after) when it is local."""
    if config.url is None and cls.local_engine:
        engine = await asyncio.to_thread(start_local_engine, engine_dir)
        try:
            yield _Endpoint(engine.url, engine.key, engine.webhook_secret, None, local=True)
        finally:
            await asyncio.to_thread(engine.stop)
        return
    url = config.url or cls.default_url
    if url is None:
        raise ConfigError(f"backend.url is required for backend.kind {config.kind!r}")
    key = os.environ.get(config.key_env)
    if key is None:
        log.warning("no key in $%s: calling %s without one", config.key_env, url)
    secret, public_url = os.environ.get(WEBHOOK_SECRET_ENV), os.environ.get(WEBHOOK_URL_ENV)
    yield _Endpoint(url, key, secret, public_url, local=False)


def _receiver(config: BackendConfig, talks: TalksBackend, endpoint: _Endpoint) -> WebhookReceiver | None:
    if config.wait != "webhook":
        return None
    if not endpoint.local and not (endpoint.webhook_secret and endpoint.public_url):
        log.warning("webhook mode needs $%s and $%s for a remote backend: polling instead",
                    WEBHOOK_SECRET_ENV, WEBHOOK_URL_ENV)
        return None
    if endpoint.public_url is not None:
        _check_public_url(endpoint.public_url, talks)
    host, port = listen_address(os.environ.get(WEBHOOK_LISTEN_ENV))
    receiver = WebhookReceiver(talks.verify_webhook, host=host, port=port, public_url=endpoint.public_url)
    try:
        return receiver.start()
    except OSError as e:
        raise ConfigError(f"${WEBHOOK_LISTEN_ENV}: cannot listen on {host}:{port} ({e.strerror or e}); "
                          f"give a free {LISTEN_FORM}") from e


def listen_address(value: str | None) -> tuple[str, int]:
    """(host, port) from TALKMILL_TALKS_WEBHOOK_LISTEN; unset: 127.0.0.1 on a free port."""
    if value is None or not value.strip():
        return "127.0.0.1", 0
    match = _LISTEN.match(value.strip())
    if not match or int(match["port"]) > 65535:
        raise ConfigError(f"${WEBHOOK_LISTEN_ENV} must be {LISTEN_FORM}; got {value!r}")
    return match["host"].strip("[]"), int(match["port"])


def _check_public_url(url: str, talks: TalksBackend) -> None:
    scheme = httpx.URL(url).scheme if "://" in url else ""
    if scheme not in talks.webhook_schemes:
        raise ConfigError(f"${WEBHOOK_URL_ENV} {url!r}: the {talks.kind} backend calls back only on "
                          f"{' or '.join(s + '://' for s in talks.webhook_schemes)} URLs")
