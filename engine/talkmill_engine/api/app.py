"""The engine's FastAPI app. Its lifespan opens the store (SQLite, or PostgreSQL shared by replicas),
re-queues talks a crash left `started`, starts the worker processes, their supervisor and the webhook
dispatcher, and stops them in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import replace

from fastapi import FastAPI

from talkmill_engine.api import health, media, talks
from talkmill_engine.api.auth import identity
from talkmill_engine.api.handlers import install_handlers
from talkmill_engine.api.limits import BodyLimit
from talkmill_engine.api.openapi import install_openapi
from talkmill_engine.api.ownership import UploadOwners
from talkmill_engine.fetch import FetchPolicy
from talkmill_engine.jobs.dispatch import WebhookDispatcher
from talkmill_engine.jobs.stores import open_talk_store
from talkmill_engine.jobs.workers import WorkerPool, WorkerSpec
from talkmill_engine.results import open_results
from talkmill_engine.settings import EngineSettings, prepare

log = logging.getLogger("talkmill_engine")

SUPERVISE_SECONDS = 1.0


def fetch_policy(settings: EngineSettings) -> FetchPolicy:
    return FetchPolicy(
        inputs=settings.input_url_policy,
        webhooks=settings.webhook_url_policy,
        timeout=settings.fetch_timeout,
        uploads_dir=settings.uploads_dir,
        s3_endpoint_url=settings.s3_endpoint_url,
    )


def create_app(settings: EngineSettings | None = None) -> FastAPI:
    settings, generated = prepare(settings or EngineSettings())
    for path in generated:
        log.info("generated %s (mode 0600)", path)
    app = FastAPI(
        title="talkmill engine",
        version="1",
        description="A self-hosted Talks service speaking D-ID's /talks API; renders offline on CPU.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.generated = generated
    app.state.keys = settings.key_values()
    app.state.policy = fetch_policy(settings)
    app.state.results = open_results(settings)
    app.state.uploads = UploadOwners(app.state.results, legacy_owner=identity(app.state.keys[0]))
    install_handlers(app)
    install_openapi(app)
    app.add_middleware(BodyLimit)
    for router in (talks.router, media.uploads, media.voices, media.public, health.router):
        app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: EngineSettings = app.state.settings
    settings.results_dir.mkdir(parents=True, exist_ok=True)
    store = open_talk_store(settings)
    requeued = store.recover_interrupted()
    if requeued:
        log.warning("re-queued %d talk(s) left started: %s", len(requeued), ", ".join(requeued))
    database_url = settings.database_url.get_secret_value() if settings.database_url else None
    spec = WorkerSpec(
        settings.db_path, app.state.results, app.state.policy, parent_pid=os.getpid(),
        database_url=database_url, lease_seconds=settings.lease_seconds,
    )  # fmt: skip
    pool = WorkerPool(settings.workers, spec, store)
    pool.start()
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    webhook_policy = replace(app.state.policy, timeout=settings.webhook_timeout)
    dispatcher = WebhookDispatcher(store, secret, webhook_policy, settings.webhook_schedule_scale)
    app.state.store, app.state.pool = store, pool
    background = [asyncio.create_task(_supervise(pool)), asyncio.create_task(dispatcher.run())]
    try:
        yield
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await dispatcher.stop()
        await asyncio.to_thread(pool.stop)
        store.close()


async def _supervise(pool: WorkerPool) -> None:
    while True:
        await asyncio.sleep(SUPERVISE_SECONDS)
        try:
            await asyncio.to_thread(pool.supervise)
        except Exception:  # supervision must outlive any one failure
            log.exception("supervising workers failed")
