"""content_to_video: sources in (articles, handbooks, CSV rows), presenter videos and a manifest out.

    ingest → plan scripts → check what exists → (dry run: validate) → talks → publish → manifest

Run it with `talkmill run …`, from a Prefect deployment, or as `python -m flows.content_to_video`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from connectors.storage import ObjectStore, open_store
from connectors.talks.backend import open_backend
from talkmill.config import PipelineConfig, load_config
from talkmill.errors import ContentError, RowsFailedError
from talkmill.progress import emit
from tasks.ingest import ingest_source
from tasks.layout import manifest_keys, new_run_id
from tasks.manifest import ManifestRow, RunSummary, finish_run
from tasks.plan import expand_sources, first_of_each_script, merged, plan_rows, validate_plan
from tasks.publish import copy_repeats
from tasks.scripts import plan
from tasks.talks import make_videos


def run_settings(config: str | None, output: str | None, wait: str | None, talks_url: str | None,
                 concurrency: int | None) -> PipelineConfig:
    """The run's settings: the config file (or the defaults), the run's own options on top. ConfigError
    when they cannot be used; `talkmill run` calls it too, to refuse bad options before Prefect starts."""
    return load_config(Path(config) if config else None, {
        "output": output, "backend": {"wait": wait, "url": talks_url, "concurrency": concurrency}})


@flow(name="content_to_video", log_prints=True)
async def content_to_video(
    sources: list[str],
    config: str | None = None,
    output: str | None = None,
    dry_run: bool = False,
    wait: Literal["webhook", "poll"] | None = None,
    talks_url: str | None = None,
    concurrency: int | None = None,
) -> RunSummary:
    """Turn content into presenter videos.

    Args:
        sources: Files, folders, http(s) URLs or s3:// keys: HTML articles, Markdown docs, CSV rows, text
            (every format and suffix: talkmill.content.formats).
        config: A YAML pipeline config (see configs/default.yaml); defaults apply without one.
        output: Where videos and the manifest go: a folder, file://…, or s3://bucket/prefix.
        dry_run: Plan and validate everything, write the plan manifest, create no talk.
        wait: How to learn that a talk is done: "webhook" (falls back to polling) or "poll".
        talks_url: A Talks-compatible API (D-ID's cloud, a remote engine); unset: the local engine.
        concurrency: Talks in flight at once.

    Returns the run's summary; raises RowsFailedError (the flow run ends Failed) when any script failed,
    after writing the manifest, and an InputError subclass when the input is refused.
    """
    settings = run_settings(config, output, wait, talks_url, concurrency)
    run_id = new_run_id(flow_run.get_id())
    store = open_store(settings.output, settings.s3)  # first: a bad output is refused before any fetch
    # quote(): documents, scripts and rows hold no futures; Prefect would visit every item of every one
    # (10,000 rows: a third of a dry run's CPU) to find some
    documents = [ingest_source(uri, s3=settings.s3, fetch_config=settings.fetch)
                 for uri in expand_sources(sources)]
    scripts = [script for document in documents for script in plan(quote(document), quote(settings))]
    rows = plan_rows(run_id, quote(scripts), quote(store))
    if dry_run:
        log_plan(store, run_id, rows, len(documents), dry_run=True)
        problems = validate_plan(quote(scripts), settings.fetch)
        summary = finish_run(quote(store), run_id, quote(rows), dry_run=True)
        if problems:
            raise ContentError("the plan has problems:\n  " + "\n  ".join(problems))
        return summary
    todo, repeats = first_of_each_script([(s, r) for s, r in zip(scripts, rows) if r.status == "planned"])
    emit("planned", total=len(rows), skipped=len(rows) - len(todo) - len(repeats))
    log_plan(store, run_id, rows, len(documents), todo=len(todo), repeats=len(repeats))
    if todo:
        async with open_backend(settings.backend) as backend:
            await backend.index_existing({script.id for script, _ in todo})
            rows = merged(rows, await make_videos(todo, backend, store))
    rows = merged(rows, copy_repeats(quote(repeats), quote(rows), quote(store)))
    summary = finish_run(quote(store), run_id, quote(rows))
    if summary.failed:
        raise RowsFailedError(summary)  # the run ends Failed; its manifest is written
    return summary


def log_plan(store: ObjectStore, run_id: str, rows: list[ManifestRow], sources: int, todo: int = 0,
             repeats: int = 0, dry_run: bool = False) -> None:
    """What the run will do and where it goes, in the flow run's log (the UI's Logs tab)."""
    minutes = sum(row.estimated_seconds for row in rows) / 60
    made = sum(row.status == "skipped_existing" for row in rows)
    work = ("a dry run: no talk is created" if dry_run
            else f"{todo} to make, {repeats} repeated scripts to copy, {made} already made")
    log = get_run_logger()
    log.info("planned %d videos (%.1f estimated minutes) from %d sources: %s", len(rows), minutes, sources, work)
    keys = manifest_keys(run_id)
    log.info("the manifest goes to %s, the gallery to %s; videos beside them, by source",
             store.uri(keys["manifest.jsonl"]), store.uri(keys["gallery.html"]))


if __name__ == "__main__":
    import sys

    from flows.server_settings import batch_task_run_recording

    batch_task_run_recording()  # for Prefect's temporary API, started by the run below when no API is named
    asyncio.run(content_to_video(sys.argv[1:] or ["examples"]))
