"""Where a run puts things in the output store: one place for every key the pipeline writes.

    <source-slug>/<NNN>-<script-id-12>.<ext>   a video (or <output_name>.<ext>)
    <source-slug>/<NNN>-<script-id-12>.json    its sidecar: the talk and the script
    <source-slug>/<NNN>-<script-id-12>.vtt     its captions (WebVTT), .srt the same as SubRip
    <source-slug>/<NNN>-<script-id-12>.jpg     its poster
    runs/<run-id>/manifest.jsonl, manifest.csv, gallery.html
"""

from __future__ import annotations

from datetime import datetime, timezone

from talkmill.models import Script

MANIFEST_FILES = ("manifest.jsonl", "manifest.csv", "gallery.html")


def new_run_id(flow_run_id: str | None) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{(flow_run_id or '')[:8] or 'local'}"


def video_key(script: Script, number: int) -> str:
    """`<source-slug>/<NNN>-<script-id-12>.<ext>`; a row's output_name replaces the file's stem."""
    ext = str(script.config.get("result_format") or "mp4").lstrip(".")
    stem = script.output_name or f"{number:03d}-{script.id.removeprefix('scr_')[:12]}"
    return f"{script.source.id}/{stem}.{ext}"


def sidecar_key(video_key: str) -> str:
    return beside_key(video_key, "json")


def beside_key(video_key: str, ext: str) -> str:
    """A file beside a video: its key with the extension `ext`."""
    return video_key.rsplit(".", 1)[0] + "." + ext


BESIDE = {"vtt": "vtt", "srt": "srt", "poster": "jpg"}  # a video's files beside it, by name: extension


def beside_keys(video_key: str) -> dict[str, str]:
    """The keys of a video's captions and poster: {"vtt": …, "srt": …, "poster": …}."""
    return {name: beside_key(video_key, ext) for name, ext in BESIDE.items()}


def manifest_keys(run_id: str) -> dict[str, str]:
    return {name: f"runs/{run_id}/{name}" for name in MANIFEST_FILES}
