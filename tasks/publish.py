"""Publish: each finished talk's video copied into the output store at once (provider URLs expire), with
its sidecar, captions and poster beside it; repeats of a script get a copy of its files.

Captions (.vtt, .srt) are stored when the backend made them (our engine does when asked; D-ID's cloud
never does: its videos get none). The poster is the backend's, or else a frame ~1 s into the video (a
copy spooled to a temporary file as it streams, only when the backend offers no poster; read back from
the store should the backend's poster fail to come), decoded with PyAV where it is installed (it comes with
the engine extra); without PyAV, no poster.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from prefect import task
from prefect.cache_policies import NO_CACHE

from connectors.storage import ObjectStore
from connectors.talks.base import TalkResult, TalksBackend
from connectors.talks.did import talk_result
from talkmill.errors import TalksBadAnswer, TalksError
from talkmill.models import Script
from talkmill.progress import emit
from tasks.layout import beside_keys, sidecar_key
from tasks.manifest import BESIDE_FIELDS, ManifestRow

log = logging.getLogger("talkmill.publish")
POSTER_SECONDS = 1.0  # into the video: past the first frames, where a head may still be settling
POSTER_QUALITY = 85
CONTENT_TYPES = {"vtt": "text/vtt; charset=utf-8", "srt": "application/x-subrip; charset=utf-8",
                 "poster": "image/jpeg"}  # fmt: skip


async def publish_video(
    result: TalkResult, script: Script, row: ManifestRow, talks: TalksBackend, store: ObjectStore
) -> None:
    """Copies the result into the store at once (provider URLs expire), then the sidecar, captions and
    poster beside it."""
    # a poster of our own needs the video's frames: spooled only when the backend made no poster
    spool = None if "poster" in result.beside() else _Spool(Path(row.video_key).suffix)
    try:
        chunks = talks.stream_result(result)
        # the store hashes as it writes
        info = await store.aput_stream(row.video_key, spool.tee(chunks) if spool else chunks)
        store.put_bytes(sidecar_key(row.video_key), sidecar_bytes(result, script), "application/json")
        stored = await publish_beside(result, row.video_key, talks, store, spool)
    finally:
        if spool:
            spool.remove()
    beside = {BESIDE_FIELDS[name]: key for name, key in stored.items()}
    row.finish("done", video_uri=store.uri(row.video_key), size_bytes=info.size, sha256=info.sha256,
               actual_seconds=result.duration, **beside)


async def publish_beside(
    result: TalkResult, video_key: str, talks: TalksBackend, store: ObjectStore, spool: _Spool | None
) -> dict[str, str]:
    """Stores the files the backend made beside the video, and a poster of our own if it made none (or
    its poster cannot be fetched); the keys stored, by name. Captions that cannot be fetched are left
    out with a warning: the video stands."""
    keys, stored = beside_keys(video_key), {}
    for name, url in result.beside().items():
        try:
            chunks = talks.stream_result(replace(result, result_url=url))
            await store.aput_stream(keys[name], chunks, CONTENT_TYPES[name])
            stored[name] = keys[name]
        except TalksError as e:
            log.warning("talk %s: its %s could not be fetched, left out: %s", result.id, name, e)
    if "poster" not in stored:
        # no spool: the backend promised a poster and failed to deliver it; the stored video is read back
        video = spool.path if spool else io.BytesIO(store.get_bytes(video_key))
        poster = await asyncio.to_thread(poster_from_video, video, video_key)
        if poster is not None:
            store.put_bytes(keys["poster"], poster, CONTENT_TYPES["poster"])
            stored["poster"] = keys["poster"]
    return stored


class _Spool:
    """A local copy of a video as it streams to the store, for a poster when the backend made none."""

    def __init__(self, suffix: str) -> None:
        handle, name = tempfile.mkstemp(prefix="talkmill-video-", suffix=suffix)
        os.close(handle)
        self.path = Path(name)

    async def tee(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        with self.path.open("wb") as file:
            async for chunk in chunks:
                file.write(chunk)
                yield chunk

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def poster_from_video(video: Path | BinaryIO, name: str, seconds: float = POSTER_SECONDS) -> bytes | None:
    """A JPEG of the frame shown `seconds` into `video` (a file or its bytes; the last frame of a shorter
    one); None without PyAV or for a video it cannot decode. `name` is the video's, for the log."""
    try:
        import av
    except ImportError:
        log.info("PyAV is not installed (it comes with talkmill[engine]): no poster for %s", name)
        return None
    try:
        with av.open(str(video) if isinstance(video, Path) else video) as container:
            frame = None
            for frame in container.decode(video=0):
                if frame.time is not None and frame.time >= seconds:
                    break
            if frame is None:
                return None
            buffer = io.BytesIO()
            frame.to_image().convert("RGB").save(buffer, "JPEG", quality=POSTER_QUALITY)
            return buffer.getvalue()
    except (av.FFmpegError, OSError, ValueError, IndexError) as e:  # IndexError: no video stream
        log.warning("no poster from %s: %s", name, e)
        return None


def sidecar_bytes(result: TalkResult, script: Script) -> bytes:
    """The sidecar: the talk as the backend sent it (for people and audits), its typed result (what the
    pipeline reads back), and the script."""
    sidecar = {"talk": dict(result.raw), "result": result.to_record(),
               "script": script.model_dump(mode="json")}
    return json.dumps(sidecar, indent=2).encode()


def sidecar_result(data: bytes) -> TalkResult | None:
    """The typed result a sidecar holds; None if it is unreadable. Sidecars written before the backend
    seam hold only D-ID's talk, read as such."""
    try:
        sidecar: Any = json.loads(data)
        if "result" in sidecar:
            return TalkResult.from_record(sidecar["result"])
        return talk_result(sidecar["talk"])
    except (ValueError, TypeError, KeyError, TalksBadAnswer):
        return None


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
                   sha256=info.sha256, actual_seconds=original.actual_seconds,
                   **copy_beside(original, row.video_key, store))
    for _, row in repeats:
        emit("finished", row=row)
    return [row for _, row in repeats]


def copy_beside(original: ManifestRow, video_key: str, store: ObjectStore) -> dict[str, Any]:
    """The original's captions and poster copied beside a repeat's video; the row fields to set."""
    keys, values = beside_keys(video_key), {}
    for name, field in BESIDE_FIELDS.items():
        source = getattr(original, field)
        if source:
            store.put_bytes(keys[name], store.get_bytes(source), CONTENT_TYPES[name])
            values[field] = keys[name]
    return values
