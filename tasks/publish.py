"""Publish: each finished talk's video copied into the output store at once (provider URLs expire), with
its sidecar; repeats of a script get a copy of its video."""

from __future__ import annotations

import json
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from connectors.storage import ObjectStore
from connectors.talks.base import TalkResult, TalksBackend
from connectors.talks.did import talk_result
from talkmill.errors import TalksBadAnswer
from talkmill.models import Script
from talkmill.progress import emit
from tasks.layout import sidecar_key
from tasks.manifest import ManifestRow


async def publish_video(
    result: TalkResult, script: Script, row: ManifestRow, talks: TalksBackend, store: ObjectStore
) -> None:
    """Copies the result into the store at once (provider URLs expire), then the sidecar beside it."""
    info = await store.aput_stream(row.video_key, talks.stream_result(result))  # hashes as it writes
    store.put_bytes(sidecar_key(row.video_key), sidecar_bytes(result, script), "application/json")
    row.finish("done", video_uri=store.uri(row.video_key), size_bytes=info.size, sha256=info.sha256,
               actual_seconds=result.duration)


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
                   sha256=info.sha256, actual_seconds=original.actual_seconds)
    for _, row in repeats:
        emit("finished", row=row)
    return [row for _, row in repeats]
