"""Talks for scripts: create under a concurrency limit, await by webhook or polling, publish the video.

Concurrency is bounded inside the run by a semaphore (Prefect's own limits hand slots over slowly): a
slot is held from create until the talk ends, so the backend always has `concurrency` talks in hand
while work remains; publishing happens after the slot is freed. Each talk also holds a slot of the
Prefect global concurrency limit "talkmill-talks" when it exists (`talkmill serve` creates it): the
budget shared by all runs on one server; without it that is a no-op. A script whose talk already exists at
the backend (Backend.index_existing) is awaited, never created twice. Only the typed results of the
TalksBackend protocol (TalkRef, TalkResult) are read here: never a backend's wire format.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import nullcontext

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.asyncio import concurrency
from prefect.utilities.annotations import quote

from connectors.storage import ObjectStore
from connectors.talks.backend import Backend
from connectors.talks.base import TalkResult
from talkmill.errors import StorageError, TalksBadAnswer, TalksError, TalksHTTPError, TalksTimeout
from talkmill.models import Script
from talkmill.progress import emit
from talks_contract.errors import ContractViolation
from tasks.manifest import ManifestRow, now_iso
from tasks.publish import publish_video

log = logging.getLogger("talkmill.talks")
TALKS_LIMIT = "talkmill-talks"  # the global concurrency limit shared by runs (created by `talkmill serve`)
REUSABLE = ("created", "started", "done")  # an existing talk in these states is awaited, not recreated


async def make_videos(todo: list[tuple[Script, ManifestRow]], backend: Backend, store: ObjectStore) -> list[ManifestRow]:
    """All scripts through `make_video`, started by a pool of concurrency + 1 workers: only as many task
    runs exist at once as can make progress (starting hundreds at once stalls the loop before the first
    create), and the spare worker publishes while the slots stay busy."""
    pending = iter(todo)  # shared by the workers; each item is taken once
    finished: list[ManifestRow] = []
    backend.shared_budget = await _limit_exists(TALKS_LIMIT)

    async def worker() -> None:
        for script, row in pending:
            # quote(): none of these holds a future; Prefect would walk every field of each twice per task
            # run, for its inputs and to resolve them (the script and row alone: ~0.3 ms a talk)
            finished.append(await make_video(quote(script), quote(row), quote(backend), quote(store)))

    await asyncio.gather(*(worker() for _ in range(backend.config.concurrency + 1)))
    return finished


@task(name="make-video", cache_policy=NO_CACHE, task_run_name="video-{script.id}")
async def make_video(script: Script, row: ManifestRow, backend: Backend, store: ObjectStore) -> ManifestRow:
    """One script to one stored video; a failure fails this row only."""
    row.started_at = now_iso()
    try:
        # the run's own slot first: a talk waiting for it must not sit on a slot of the shared budget
        async with backend.slots, (concurrency(TALKS_LIMIT) if backend.shared_budget else nullcontext()):
            result = await _talk_for(script, row, backend)
        if result.status == "done":
            await publish_video(result, script, row, backend.talks, store)
        else:
            _fail_ended(row, result)
    except ContractViolation as e:  # the backend cannot express what the script asks; nothing was sent
        row.finish("failed", error_kind="ValidationError", error_message=f"{e}; allowed: {e.allowed}")
    except TalksTimeout as e:
        row.finish("failed", error_kind="Timeout", error_message=str(e))
    except TalksBadAnswer as e:
        row.finish("failed", error_kind="BadAnswer", error_message=str(e))
    except TalksHTTPError as e:
        row.finish("failed", error_kind=e.kind or f"HTTP{e.status}", error_message=e.description or str(e))
    except (TalksError, StorageError) as e:
        row.finish("failed", error_kind=type(e).__name__, error_message=str(e))
    emit("finished", row=row)
    return row


def _fail_ended(row: ManifestRow, result: TalkResult) -> None:
    """A talk that ended in error or rejected: the backend's reason when it gave one."""
    if result.error is not None:
        kind, message = result.error.kind, result.error.description
    else:
        kind, message = ("Rejected" if result.status == "rejected" else "TalkError"), ""
    row.finish("failed", error_kind=kind, error_message=message or f"talk ended {result.status}")


async def _limit_exists(name: str) -> bool:
    """Looked up once per run: asking per talk costs a call and a warning each when it is absent."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        try:
            await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            return False
    return True


async def _talk_for(script: Script, row: ManifestRow, backend: Backend) -> TalkResult:
    existing = backend.existing.get(script.id)
    if existing and existing.status in REUSABLE:
        row.talk_id = existing.id
        log.info("script %s: picking up talk %s (%s)", script.id, row.talk_id, existing.status)
    else:
        source_url = await backend.source_url(script.presenter)
        row.attempts += 1
        row.talk_id = (await backend.talks.create(script, source_url, backend.webhook_url)).id
    return await _await_talk(row.talk_id, backend)


async def _await_talk(talk_id: str, backend: Backend) -> TalkResult:
    config = backend.config
    if backend.receiver is None:
        return await backend.talks.wait(
            talk_id, poll_interval=config.poll_interval, max_interval=config.poll_max_interval,
            timeout=config.talk_timeout,
        )
    # Webhook mode: the callback wakes the wait at once; polling every webhook_timeout catches a lost one.
    wake = backend.receiver.register(talk_id)
    try:
        return await backend.talks.wait(
            talk_id, poll_interval=config.webhook_timeout, max_interval=config.webhook_timeout,
            timeout=config.talk_timeout, wake=wake,
        )
    finally:
        backend.receiver.forget(talk_id)
