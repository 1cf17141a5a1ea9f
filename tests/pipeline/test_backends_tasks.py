"""The talk stage (tasks.talks.make_videos) driven through the TalksBackend protocol only: a backend with no
wire format at all brings rows to done and failed, into a local store, and a re-plan reads the sidecars
back; then the real D-ID client's bad answers, from a real server, fail only their own rows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Collection, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from connectors.storage import open_store
from connectors.talks.backend import Backend
from connectors.talks.base import TalkFailure, TalkRef, TalkResult, WebhookRejected
from connectors.talks.did import DidTalks
from talkmill.config import BackendConfig
from talkmill.errors import TalksBadAnswer
from talkmill.models import Script
from talks_contract.errors import ContractViolation
from tasks.layout import sidecar_key, video_key
from tasks.manifest import ManifestRow, planned_row
from tasks.plan import plan_rows
from tasks.talks import make_videos
from tests.engine.helpers import png_bytes
from tests.pipeline.test_talks_client import KEY, RESULT, FakeTalks, fake_app, script_for, serve

pytestmark = pytest.mark.usefixtures("prefect_harness")

VIDEO = b"\x00\x00\x00\x18ftypmp42 not really a video" * 100
POLL = BackendConfig(wait="poll", poll_interval=0.05, poll_max_interval=0.1, talk_timeout=10, concurrency=2)


class ScriptedTalks:
    """A TalksBackend that speaks no wire format: typed answers only, and `raw` left empty, so a task
    reading a wire dict would find nothing there."""

    kind: ClassVar[str] = "scripted"
    default_url: ClassVar[str | None] = None
    local_engine: ClassVar[bool] = False
    webhook_schemes: ClassVar[tuple[str, ...]] = ("https",)

    def __init__(self, endings: dict[str, TalkResult], existing: dict[str, TalkRef]) -> None:
        self.endings, self.existing = endings, existing  # by script id
        self.created: list[str] = []
        self.uploads: list[str] = []

    async def find_existing(self, script_ids: Collection[str]) -> dict[str, TalkRef]:
        return {script_id: ref for script_id, ref in self.existing.items() if script_id in script_ids}

    async def create(self, script: Script, source_url: str, webhook: str | None) -> TalkRef:
        if script.config.get("result_format") == "gif":
            raise ContractViolation("config.result_format", "the scripted backend does not make 'gif'",
                                    ["mp4"])
        self.created.append(script.id)
        return TalkRef(f"tlk_{script.id}", "created")

    async def upload_image(self, path: Path) -> str:
        if path.name == "no-url.png":
            raise TalksBadAnswer("POST /images answered without a url")
        self.uploads.append(path.name)
        return f"mem://{path.name}"

    async def wait(self, talk_id: str, *, poll_interval: float, max_interval: float, timeout: float,
                   wake: asyncio.Event | None = None) -> TalkResult:
        return self.endings[talk_id.removeprefix("tlk_")]

    async def _chunks(self) -> AsyncIterator[bytes]:
        for start in range(0, len(VIDEO), 1000):
            yield VIDEO[start : start + 1000]

    def stream_result(self, result: TalkResult) -> AsyncIterator[bytes]:
        return self._chunks()

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> TalkRef:
        raise WebhookRejected(401, "the scripted backend sends no callbacks")

    async def aclose(self) -> None:
        pass


def planned(scripts: list[Script]) -> list[tuple[Script, ManifestRow]]:
    numbered = enumerate(scripts, 1)
    return [(script, planned_row("run-1", script, video_key(script, n))) for n, script in numbered]


def make(talks: Any, scripts: list[Script], store: Any) -> dict[str, ManifestRow]:
    async def stage() -> list[ManifestRow]:
        backend = Backend(talks, POLL, slots=asyncio.Semaphore(POLL.concurrency))
        await backend.index_existing({script.id for script in scripts})
        return await make_videos(planned(scripts), backend, store)

    return {row.script_id: row for row in asyncio.run(stage())}


def test_a_backend_with_no_wire_format_drives_the_talk_stage(tmp_path: Path) -> None:
    portrait = tmp_path / "face.png"
    portrait.write_bytes(b"\x89PNG")
    (tmp_path / "no-url.png").write_bytes(b"\x89PNG")
    scripts = [
        script_for("scr_done", presenter=str(portrait)),
        script_for("scr_face"),
        script_for("scr_rejected"),
        script_for("scr_existing"),
        script_for("scr_upload", presenter=str(tmp_path / "no-url.png")),
        script_for("scr_gif", config={"result_format": "gif"}),
    ]
    endings = {
        "scr_done": TalkResult("tlk_scr_done", "done", "mem://video", 2.5),
        "scr_face": TalkResult("tlk_scr_face", "error",
                               error=TalkFailure("FaceError", "No valid face detected")),
        "scr_rejected": TalkResult("tlk_scr_rejected", "rejected"),
        "scr_existing": TalkResult("tlk_scr_existing", "done", "mem://video", 1.0),
    }
    talks = ScriptedTalks(endings, existing={"scr_existing": TalkRef("tlk_scr_existing", "started")})
    store = open_store(str(tmp_path / "out"))
    rows = make(talks, scripts, store)

    found = {sid: (row.status, row.error_kind, row.error_message) for sid, row in rows.items()}
    assert found == {
        "scr_done": ("done", None, None),
        "scr_face": ("failed", "FaceError", "No valid face detected"),
        "scr_rejected": ("failed", "Rejected", "talk ended rejected"),
        "scr_existing": ("done", None, None),
        "scr_upload": ("failed", "BadAnswer", "POST /images answered without a url"),
        "scr_gif": ("failed", "ValidationError",
                    "config.result_format: the scripted backend does not make 'gif'; allowed: ['mp4']"),
    }  # fmt: skip
    assert sorted(talks.created) == ["scr_done", "scr_face", "scr_rejected"] and talks.uploads == ["face.png"]
    done = rows["scr_done"]
    assert (done.talk_id, done.actual_seconds, done.attempts) == ("tlk_scr_done", 2.5, 1)
    assert done.size_bytes == len(VIDEO)
    assert store.get_bytes(done.video_key) == VIDEO
    assert (rows["scr_existing"].talk_id, rows["scr_existing"].attempts) == ("tlk_scr_existing", 0)

    sidecar = json.loads(store.get_bytes(sidecar_key(done.video_key)))
    assert sidecar["talk"] == {} and sidecar["script"]["id"] == "scr_done"
    assert sidecar["result"] == {"id": "tlk_scr_done", "status": "done", "result_url": "mem://video",
                                 "duration": 2.5, "error": None}
    replanned = {row.script_id: row for row in plan_rows.fn("run-2", scripts, store)}
    again = replanned["scr_done"]
    assert (again.status, again.talk_id, again.actual_seconds) == ("skipped_existing", "tlk_scr_done", 2.5)
    assert replanned["scr_face"].status == "planned"


def test_each_talk_is_a_task_run_named_for_its_script(tmp_path: Path) -> None:
    """People watch the talks in Prefect's UI: one task run per talk, named video-<script id>, Completed
    (whether its row is done or failed: the row says which), though its inputs are quote()d."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    from tests.deploy.prefect_server import wait_for

    endings = {"scr_seen_done": TalkResult("tlk_scr_seen_done", "done", "mem://video", 1.0),
               "scr_seen_failed": TalkResult("tlk_scr_seen_failed", "rejected")}
    make(ScriptedTalks(endings, existing={}), [script_for(script_id) for script_id in endings],
         open_store(str(tmp_path)))
    names = [f"video-{script_id}" for script_id in endings]

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=names)))

    def recorded() -> dict[str, str] | None:  # the server records task runs from events, a moment later
        found = {run.name: run.state_type.value for run in asyncio.run(read()) if run.state_type}
        return found if found == dict.fromkeys(names, "COMPLETED") else None

    wait_for(recorded, 30, "a Completed task run per talk")


def test_a_sidecar_from_before_the_seam_is_still_read(tmp_path: Path) -> None:
    """Sidecars written before the backend seam hold only D-ID's talk: a re-run still skips their video."""
    script = script_for("scr_old")
    store = open_store(str(tmp_path / "out"))
    key = video_key(script, 1)
    store.put_bytes(key, VIDEO)
    old = {"talk": {"id": "tlk_old", "status": "done", "result_url": "http://x/v.mp4", "duration": 3.2},
           "script": script.model_dump(mode="json")}
    store.put_bytes(sidecar_key(key), json.dumps(old).encode())
    (row,) = plan_rows.fn("run-1", [script], store)
    assert (row.status, row.talk_id, row.actual_seconds) == ("skipped_existing", "tlk_old", 3.2)


def test_bad_answers_of_a_real_server_fail_only_their_rows(tmp_path: Path) -> None:
    """POST /images without a url, and a talk done without a result_url: those rows fail as BadAnswer,
    with a message saying what was missing; the good row beside them is done."""
    (tmp_path / "no-url.png").write_bytes(png_bytes(8, 8))
    scripts = [
        script_for("scr_good"),
        script_for("scr_no_url", presenter=str(tmp_path / "no-url.png")),
        script_for("scr_no_result", output_name="no-result"),
    ]
    state = FakeTalks(latency=0.1)
    store = open_store(str(tmp_path / "out"))
    with serve(fake_app(state), ports=2) as (api, results):
        state.result_base = results
        rows = make(DidTalks(api, KEY), scripts, store)

    assert rows["scr_good"].status == "done" and store.get_bytes(rows["scr_good"].video_key) == RESULT
    for script_id, missing in (("scr_no_url", "POST /images answered without a url"),
                               ("scr_no_result", "is done but the API gave no result_url")):
        row = rows[script_id]
        assert (row.status, row.error_kind, row.video_uri) == ("failed", "BadAnswer", None)
        assert missing in row.error_message
    assert rows["scr_no_result"].talk_id in state.talks and state.creates("scr_no_url") == 0
