"""The run around the talks: what to read, which videos exist already, the dry-run checks, the summary."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from talkmill.config import is_url
from talkmill.connectors.storage import ObjectStore
from talkmill.models import ContentError, Script
from talkmill.progress import emit
from talkmill.tasks.manifest import ManifestRow, planned_row, table, write_manifest
from talkmill.tasks.talks import sidecar_key, video_key

log = logging.getLogger("talkmill.run")
READABLE = (".html", ".htm", ".md", ".markdown", ".csv", ".txt")
MAX_SCRIPT_CHARS = 40_000


@dataclass
class RunSummary:
    run_id: str
    counts: dict[str, int]
    video_minutes: float
    estimated_minutes: float
    manifest: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)


def new_run_id(flow_run_id: str | None) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{(flow_run_id or '')[:8] or 'local'}"


def expand_sources(sources: list[str]) -> list[str]:
    """Folders become the readable files inside them (sorted); files and URLs stay as given."""
    expanded: list[str] = []
    for source in sources:
        path = Path(source)
        if not is_url(source) and path.is_dir():
            expanded += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in READABLE and p.is_file())
        else:
            expanded.append(source)
    if not expanded:
        raise ContentError(f"nothing to read in {sources}: give files ({', '.join(READABLE)}), folders or URLs")
    return expanded


@task(cache_policy=NO_CACHE)
def plan_rows(run_id: str, scripts: list[Script], store: ObjectStore) -> list[ManifestRow]:
    """One row per script, numbered within its source; a video already stored (with its sidecar) is
    `skipped_existing`: re-runs create nothing twice."""
    numbers: dict[str, int] = {}
    rows = []
    for script in scripts:
        numbers[script.source.id] = numbers.get(script.source.id, 0) + 1
        row = planned_row(run_id, script, video_key(script, numbers[script.source.id]))
        info = store.head(row.video_key)
        if info is not None and store.exists(sidecar_key(row.video_key)):
            talk = json.loads(store.get_bytes(sidecar_key(row.video_key)))["talk"]
            row.finish("skipped_existing", video_uri=store.uri(row.video_key), size_bytes=info.size,
                       sha256=info.sha256, talk_id=talk.get("id"), actual_seconds=talk.get("duration"))
        rows.append(row)
    return rows


def first_of_each_script(todo: list[tuple[Script, ManifestRow]]) -> tuple[list, list]:
    """(one row per script id, the repeats): identical scripts in one run (a repeated CSV line) are
    rendered once; the repeats get a copy of that video (`copy_repeats`), never a second talk."""
    seen: set[str] = set()
    first, repeats = [], []
    for script, row in todo:
        (repeats if script.id in seen else first).append((script, row))
        seen.add(script.id)
    return first, repeats


@task(cache_policy=NO_CACHE)
def copy_repeats(
    repeats: list[tuple[Script, ManifestRow]], rows: list[ManifestRow], store: ObjectStore
) -> list[ManifestRow]:
    done = {row.script_id: row for row in rows if row.status == "done"}
    for script, row in repeats:
        original = done.get(script.id)
        if original is None:
            row.finish("failed", error_kind="NotRendered", error_message="the same script failed in this run")
            continue
        info = store.put_bytes(row.video_key, store.get_bytes(original.video_key))
        store.put_bytes(sidecar_key(row.video_key), store.get_bytes(sidecar_key(original.video_key)))
        row.finish("done", talk_id=original.talk_id, video_uri=store.uri(row.video_key), size_bytes=info.size,
                   sha256=info.sha256, actual_seconds=original.actual_seconds)
    for _, row in repeats:
        emit("finished", row=row)
    return [row for _, row in repeats]


def merged(rows: list[ManifestRow], updated: list[ManifestRow]) -> list[ManifestRow]:
    """`rows` with the updated copies (returned by tasks) in place of the originals, by video key."""
    by_key = {row.video_key: row for row in updated}
    return [by_key.get(row.video_key, row) for row in rows]


@task(cache_policy=NO_CACHE)
def validate_plan(scripts: list[Script], local_engine: bool) -> list[str]:
    """Every problem a dry run can find without creating a talk: presenters readable, lengths allowed,
    and (for the local engine, whose catalogue we know) voices and drivers known."""
    problems: list[str] = []
    checked: dict[str, str | None] = {}
    for script in scripts:
        where = f"{script.source.uri} [{script.id}]"
        if script.presenter not in checked:
            checked[script.presenter] = _presenter_problem(script.presenter)
        if checked[script.presenter]:
            problems.append(f"{where}: presenter {script.presenter}: {checked[script.presenter]}")
        if not 3 <= len(script.text) <= MAX_SCRIPT_CHARS:
            problems.append(f"{where}: script is {len(script.text)} characters; allowed 3 to {MAX_SCRIPT_CHARS}")
        if local_engine:
            problems += [f"{where}: {p}" for p in _engine_problems(script)]
    return problems


def _presenter_problem(presenter: str) -> str | None:
    import httpx

    from talkmill.engine.errors import EngineError
    from talkmill.engine.render.image import load_image

    try:
        if is_url(presenter):
            if presenter.startswith(("http://", "https://")):
                httpx.head(presenter, timeout=10, follow_redirects=True).raise_for_status()
            return None
        load_image(Path(presenter).read_bytes())
    except (OSError, httpx.HTTPError, EngineError) as e:
        return getattr(e, "description", None) or str(e)
    return None


def _engine_problems(script: Script) -> list[str]:
    from talkmill.engine.errors import ValidationError
    from talkmill.engine.render.drivers import parse_driver_url
    from talkmill.engine.render.voices import resolve_voice

    problems = []
    try:
        resolve_voice(script.voice.provider.model_dump(exclude_none=True))
        if script.driver_url:
            parse_driver_url(script.driver_url)
    except ValidationError as e:
        problems.append(f"{e.description} ({e.details})")
    return problems


@task(cache_policy=NO_CACHE)
def finish_run(store: ObjectStore, run_id: str, rows: list[ManifestRow], dry_run: bool = False) -> RunSummary:
    """The manifest, gallery and Prefect table artifact of the run, and its summary."""
    uris = write_manifest(store, run_id, rows)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    video_seconds = sum(row.actual_seconds or 0 for row in rows if row.status in ("done", "skipped_existing"))
    estimated = sum(row.estimated_seconds for row in rows)
    create_table_artifact(table=table(rows), key="talkmill-manifest",
                          description=f"talkmill run {run_id}: {counts}; manifest at {uris['manifest.jsonl']}")
    return RunSummary(run_id, counts, round(video_seconds / 60, 2), round(estimated / 60, 2), uris, dry_run)
