"""Plan: what to read, which videos exist already, which scripts repeat, and the dry run's checks."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from connectors.storage import ObjectStore
from connectors.urlfetch import fetch_url
from talkmill.config import FetchConfig, is_url
from talkmill.content.formats import SUFFIXES, is_readable
from talkmill.content.images import image_file_problem, image_problem
from talkmill.errors import ContentError
from talkmill.models import Script
from talks_contract.drivers import parse_driver_url
from talks_contract.errors import ContractViolation
from talks_contract.limits import MAX_IMAGE_BYTES, spoken_text_problem
from talks_contract.urlpolicy import UrlPolicy

PRESENTER_CHECK_TIMEOUT = 20.0  # seconds to fetch one presenter URL in a dry run
from tasks.layout import sidecar_key, video_key
from tasks.manifest import ManifestRow, planned_row
from tasks.publish import sidecar_result


def expand_sources(sources: list[str]) -> list[str]:
    """Folders become the readable files inside them (sorted, any depth; the suffixes of the formats
    registry); files and URLs stay as given, whatever their suffix (their content says what they are)."""
    expanded: list[str] = []
    for source in sources:
        path = Path(source)
        if not is_url(source) and path.is_dir():
            expanded += sorted(str(p) for p in path.rglob("*") if is_readable(p.name) and p.is_file())
        else:
            expanded.append(source)
    if not expanded:
        suffixes = ", ".join(SUFFIXES)
        raise ContentError(f"nothing to read in {sources}: give files ({suffixes}), folders or URLs")
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
            result = sidecar_result(store.get_bytes(sidecar_key(row.video_key)))
            row.finish("skipped_existing", video_uri=store.uri(row.video_key), size_bytes=info.size,
                       sha256=info.sha256, talk_id=result and result.id,
                       actual_seconds=result and result.duration)
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
def validate_plan(scripts: list[Script], fetch_config: FetchConfig | None = None) -> list[str]:
    """Every problem a dry run can find without creating a talk: presenters readable images, and
    lengths, voices and drivers as the Talks contract allows them (for any backend: the contract is
    what both sides of it agree on). Catalogues beyond the contract (which voices a backend serves) are
    the backend's to check when the talk is created. Presenter URLs are fetched through the URL policy
    (`fetch_config`, the config's `fetch`; None: from the environment)."""
    policy = (fetch_config or FetchConfig()).url_policy
    problems: list[str] = []
    checked: dict[str, str | None] = {}
    for script in scripts:
        where = f"{script.source.uri} [{script.id}]"
        if script.presenter not in checked:
            checked[script.presenter] = _presenter_problem(script.presenter, policy)
        if checked[script.presenter]:
            problems.append(f"{where}: presenter {script.presenter}: {checked[script.presenter]}")
        if problem := spoken_text_problem(script.text):
            problems.append(f"{where}: script text: {problem}")
        problems += [f"{where}: {p}" for p in _contract_problems(script)]
    return problems


def _presenter_problem(presenter: str, policy: UrlPolicy) -> str | None:
    """A JPEG, PNG or WebP by its header, within the contract's size: a local file, or an http(s) URL
    fetched through the URL policy (s3:// and upload:// are the backend's to read)."""
    try:
        if presenter.startswith(("http://", "https://")):
            limits = {"max_bytes": MAX_IMAGE_BYTES, "timeout": PRESENTER_CHECK_TIMEOUT}
            return image_problem(fetch_url(presenter, policy=policy, **limits))
        return None if is_url(presenter) else image_file_problem(Path(presenter))
    except (OSError, ContentError) as e:  # SourceReadError (a ContentError) names the URL and what went wrong
        return str(e)


def _contract_problems(script: Script) -> list[str]:
    from talks_contract.voices import parse_voice_request

    problems = []
    checks = [(parse_voice_request, script.voice.provider.model_dump(exclude_none=True), "script.provider")]
    if script.driver_url:
        checks.append((parse_driver_url, script.driver_url, "driver_url"))
    for check, value, field in checks:
        try:
            check(value, field)
        except ContractViolation as e:
            problems.append(f"{e} (allowed: {_allowed(e.allowed)})")
    return problems


def _allowed(allowed: object, shown: int = 12) -> str:
    """What the contract allows, as one line: long lists (Polly's voice names) are cut short."""
    if not isinstance(allowed, (list, tuple)):
        return str(allowed)
    more = f", … ({len(allowed) - shown} more)" if len(allowed) > shown else ""
    return ", ".join(map(str, allowed[:shown])) + more
