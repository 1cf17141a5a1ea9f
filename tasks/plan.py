"""Plan: what to read, which videos exist already, which scripts repeat, and the dry run's checks."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from connectors.storage import ObjectStore
from talkmill.config import is_url
from talkmill.errors import ContentError
from talkmill.models import Script
from tasks.layout import sidecar_key, video_key
from tasks.manifest import ManifestRow, planned_row

READABLE = (".html", ".htm", ".md", ".markdown", ".csv", ".txt")
MAX_SCRIPT_CHARS = 40_000


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
    from talkmill_engine.errors import EngineError
    from talkmill_engine.render.image import load_image

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
    from talkmill_engine.errors import ValidationError
    from talkmill_engine.render.drivers import parse_driver_url
    from talkmill_engine.render.voices import resolve_voice

    problems = []
    try:
        resolve_voice(script.voice.provider.model_dump(exclude_none=True))
        if script.driver_url:
            parse_driver_url(script.driver_url)
    except ValidationError as e:
        problems.append(f"{e.description} ({e.details})")
    return problems
