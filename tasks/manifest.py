"""The run's manifest: one row per script saying what became of it, as JSONL, CSV and a gallery page.

Rows are plain data (pure); `write_manifest` stores them with atomic writes, so a crash never leaves a
half-written manifest where the last good one was.
"""

from __future__ import annotations

import csv
import html
import io
import json
import posixpath
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from connectors.storage import ObjectStore
from talkmill.models import Script
from tasks.layout import beside_keys, manifest_keys

STATUSES = ("planned", "skipped_existing", "done", "failed")
# the row's field for each file beside a video (tasks.layout.BESIDE names them)
BESIDE_FIELDS = {"vtt": "captions_vtt_key", "srt": "captions_srt_key", "poster": "poster_key"}


@dataclass
class ManifestRow:
    run_id: str
    source_type: str
    source_uri: str
    source_id: str
    source_checksum: str
    document_title: str
    section: str | None
    chunk_index: int
    chunk_count: int
    script_id: str
    script_text: str
    characters: int
    estimated_seconds: float
    presenter: str
    voice: str
    driver: str | None
    video_key: str
    status: str = "planned"
    actual_seconds: float | None = None
    talk_id: str | None = None
    attempts: int = 0
    error_kind: str | None = None
    error_message: str | None = None
    video_uri: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    captions_vtt_key: str | None = None  # beside the video, when the backend made captions
    captions_srt_key: str | None = None
    poster_key: str | None = None
    slide: int | None = None  # a slide deck's slide the script speaks (script.metadata["slide"])

    def finish(self, status: str, **values: Any) -> None:
        assert status in STATUSES, status
        self.status = status
        self.finished_at = now_iso()
        for name, value in values.items():
            setattr(self, name, value)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def planned_row(run_id: str, script: Script, video_key: str) -> ManifestRow:
    provider = script.voice.provider
    return ManifestRow(
        run_id=run_id,
        source_type=script.source.type,
        source_uri=script.source.uri,
        source_id=script.source.id,
        source_checksum=script.source.checksum,
        document_title=script.document_title,
        section=script.section_title,
        chunk_index=script.chunk_index,
        chunk_count=script.chunk_count,
        script_id=script.id,
        script_text=script.text,
        characters=len(script.text),
        estimated_seconds=script.estimated_seconds,
        presenter=script.presenter,
        voice=f"{provider.type}:{provider.voice_id}",
        driver=script.driver_url,
        video_key=video_key,
        slide=_slide(script.metadata.get("slide")),
    )


def _slide(value: str | None) -> int | None:
    return int(value) if value is not None and str(value).isdigit() else None


def note_existing_beside(rows: list[ManifestRow], store: ObjectStore) -> None:
    """Rows skipped as already made get the keys of the captions and poster stored beside their video."""
    for row in rows:
        if row.status != "skipped_existing" or row.poster_key or row.captions_vtt_key:
            continue
        for name, key in beside_keys(row.video_key).items():
            if store.exists(key):
                setattr(row, BESIDE_FIELDS[name], key)


def write_manifest(store: ObjectStore, run_id: str, rows: list[ManifestRow]) -> dict[str, str]:
    """Writes the three files; their URIs by name."""
    keys = manifest_keys(run_id)
    note_existing_beside(rows, store)
    store.put_atomic(keys["manifest.jsonl"], to_jsonl(rows).encode())
    store.put_atomic(keys["manifest.csv"], to_csv(rows).encode())
    store.put_atomic(keys["gallery.html"], to_gallery(rows, keys["gallery.html"]).encode())
    return {name: store.uri(key) for name, key in keys.items()}


def to_jsonl(rows: list[ManifestRow]) -> str:
    return "".join(json.dumps(asdict(row), ensure_ascii=False) + "\n" for row in rows)


def to_csv(rows: list[ManifestRow]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[f.name for f in fields(ManifestRow)])
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    return out.getvalue()


def table(rows: list[ManifestRow]) -> list[dict[str, Any]]:
    """The columns a person scans first, for the Prefect table artifact."""
    keep = ("source_id", "section", "chunk_index", "status", "talk_id", "actual_seconds", "video_uri",
            "error_kind", "error_message")
    return [{name: getattr(row, name) for name in keep} for row in rows]


def to_gallery(rows: list[ManifestRow], gallery_key: str) -> str:
    """A page with every video, its title and script. Links are relative to the page, so the gallery works
    wherever the output folder is served or copied (a local folder, a static S3 website)."""
    base = posixpath.dirname(gallery_key)
    cards = "\n".join(_card(row, lambda key: posixpath.relpath(key, base)) for row in rows)
    done = sum(row.status in ("done", "skipped_existing") for row in rows)
    return _PAGE.format(run=html.escape(rows[0].run_id if rows else ""), done=done, total=len(rows), cards=cards)


def _card(row: ManifestRow, href: Callable[[str], str]) -> str:
    title = html.escape(" — ".join(part for part in (row.document_title, row.section) if part))
    media = (
        _video(row, href)
        if row.status in ("done", "skipped_existing")
        else f'<p class="missing">{html.escape(row.status)}: {html.escape(row.error_message or "no video")}</p>'
    )
    return (
        f'<article class="{html.escape(row.status)}"><h2>{title}</h2>{media}'
        f"<p class=\"meta\">{html.escape(row.script_id)} · part {row.chunk_index + 1}/{row.chunk_count}"
        f" · {html.escape(row.status)}</p><p>{html.escape(row.script_text)}</p></article>"
    )


def _video(row: ManifestRow, href: Callable[[str], str]) -> str:
    """The <video>, with its poster and captions track when they are stored beside it."""
    poster = f' poster="{html.escape(href(row.poster_key))}"' if row.poster_key else ""
    track = ""
    if row.captions_vtt_key:
        language = caption_language(row.voice)
        track = (f'<track kind="captions" srclang="{html.escape(language)}" label="{html.escape(language)}" '
                 f'src="{html.escape(href(row.captions_vtt_key))}" default>')
    return f'<video controls preload="metadata" src="{html.escape(href(row.video_key))}"{poster}>{track}</video>'


def caption_language(voice: str) -> str:
    """The captions' language (BCP 47) from the row's voice ("microsoft:en-US-JennyNeural", "talkmill:
    fr-FR-ff_siwis", "talkmill:de-espeak"): its locale when it names one, else English."""
    match = re.search(r"(?:^|:)([a-z]{2,3}(?:-[A-Z][A-Za-z]{1,3})?)(?=-|$)", voice)
    return match[1] if match else "en"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>talkmill run {run}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; background: #f6f6f4; color: #222; }}
main {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 1.5rem; }}
article {{ background: #fff; border-radius: 8px; padding: 1rem; box-shadow: 0 1px 3px #0002; }}
video {{ width: 100%; border-radius: 4px; background: #000; }}
h2 {{ font-size: 1rem; margin: 0 0 .5rem; }} .meta {{ color: #777; font-size: .8rem; }}
.missing {{ color: #a00; }}
</style></head>
<body><h1>talkmill run {run}</h1><p>{done} of {total} videos</p>
<main>
{cards}
</main></body></html>
"""


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


@task(cache_policy=NO_CACHE)
def finish_run(store: ObjectStore, run_id: str, rows: list[ManifestRow], dry_run: bool = False) -> RunSummary:
    """The manifest, gallery and Prefect table artifact of the run, and its summary."""
    uris = write_manifest(store, run_id, rows)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    video_seconds = sum(row.actual_seconds or 0 for row in rows if row.status in ("done", "skipped_existing"))
    estimated = sum(row.estimated_seconds for row in rows)
    summary = RunSummary(run_id, counts, round(video_seconds / 60, 2), round(estimated / 60, 2), uris, dry_run)
    create_markdown_artifact(markdown=summary_markdown(summary), key="talkmill-summary",
                             description=f"talkmill run {run_id}: {counts_line(counts)}")
    create_table_artifact(table=table(rows), key="talkmill-manifest",
                          description=f"talkmill run {run_id}: one row per script")
    print(f"run {run_id}: {counts_line(counts)}")
    for name, uri in uris.items():
        print(f"{name}: {uri}")
    return summary


def counts_line(counts: dict[str, int]) -> str:
    """"3 done, 1 failed": what a person reads, in the order of STATUSES."""
    return ", ".join(f"{counts[s]} {s.replace('_', ' ')}" for s in STATUSES if counts.get(s)) or "nothing to do"


def summary_markdown(summary: RunSummary) -> str:
    """The run as its Prefect artifact shows it: counts, minutes and links to the manifest and gallery."""
    kind = "dry run" if summary.dry_run else "run"
    minutes = (f"estimated minutes of video: {summary.estimated_minutes:.1f}" if summary.dry_run
               else f"minutes of video: {summary.video_minutes:.1f}")
    links = "\n".join(f"- [{name}]({uri})" for name, uri in summary.manifest.items())
    return f"## talkmill {kind} {summary.run_id}\n\n{counts_line(summary.counts)}; {minutes}\n\n{links}\n"
