"""content_to_video end to end: a real Prefect run, the real engine on 127.0.0.1, stored videos decoded,
a real S3 server. The content is tests/pipeline/content: guide.md (two sections), rows.csv (two rows, one
with its own presenter) and note.txt: five short scripts, about a second of video each.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import html.parser
import io
import json
import uuid
from pathlib import Path
from typing import Any

import av
import pytest

from talkmill.errors import ContentError
from tests.pipeline.conftest import (
    CONTENT,
    engine_talks,
    grey_png,
    local_file,
    manifest_rows,
    run_flow,
    seconds_between,
    statuses,
    write_config,
)
from tests.s3server import S3Server

pytestmark = pytest.mark.usefixtures("prefect_harness")

SCRIPTS = 5
ASTRONAUT = (CONTENT / "astronaut.jpg").resolve()  # inside the folder of the CSV that names it
WEBHOOK_TIMEOUT = 120  # without its callback, a talk would be picked up only by the poll this long after


@pytest.fixture(scope="module")
def webhook_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The user's main path: no backend URL, so the flow starts the local engine itself (in
    ./.talkmill/engine of the current directory) and receives its webhooks."""
    work = tmp_path_factory.mktemp("webhook-run")
    config = write_config(work, {"backend": {"wait": "webhook", "webhook_timeout": WEBHOOK_TIMEOUT}})
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        patch.delenv("TALKMILL_TALKS_WEBHOOK_URL", raising=False)
        summary = run_flow([CONTENT], config=config, output=str(work / "out"))
    return {"summary": summary, "rows": manifest_rows(summary), "out": work / "out"}


@pytest.fixture(scope="module")
def poll_run(tmp_path_factory: pytest.TempPathFactory, talks_engine: Any) -> dict[str, Any]:
    """The same content against the shared engine as a remote backend, awaited by polling."""
    out = tmp_path_factory.mktemp("poll-run") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TALKMILL_TALKS_KEY", talks_engine.key)
        summary = run_flow([CONTENT], output=str(out), wait="poll", talks_url=talks_engine.url)
    return {"summary": summary, "rows": manifest_rows(summary), "out": out}


# -- webhook mode, the default backend ---------------------------------------------------------------


def test_webhook_run_makes_one_video_per_script(webhook_run: dict[str, Any]) -> None:
    summary, rows = webhook_run["summary"], webhook_run["rows"]
    assert statuses(rows) == ["done"] * SCRIPTS, [(r["status"], r["error_message"]) for r in rows]
    assert summary.counts == {"done": SCRIPTS} and summary.failed == 0
    assert summary.video_minutes > 0
    assert len({row["talk_id"] for row in rows}) == SCRIPTS
    for row in rows:  # stored within seconds of the talk ending: its callback woke the wait
        talk = json.loads(local_file(row["video_uri"]).with_suffix(".json").read_text())["talk"]
        assert seconds_between(talk["modified_at"], row["finished_at"]) < 20, (talk["modified_at"], row)


def test_csv_row_presenter_overrides_the_default(webhook_run: dict[str, Any]) -> None:
    by_section = {(row["source_id"], row["section"]): row for row in webhook_run["rows"]}
    assert by_section[("rows", "r1")]["presenter"] == str(ASTRONAUT)
    assert by_section[("rows", "r2")]["presenter"].endswith("grace_hopper.jpg")
    assert by_section[("guide", "Welcome")]["script_text"] == "Hello there. This is a test."


def test_stored_videos_decode_as_the_talks_say(webhook_run: dict[str, Any]) -> None:
    for row in webhook_run["rows"]:
        video = local_file(row["video_uri"])
        talk = json.loads(video.with_suffix(".json").read_text())["talk"]
        assert_decodes(video.read_bytes(), talk)


def test_sidecars_hold_the_talk_and_the_script(webhook_run: dict[str, Any]) -> None:
    for row in webhook_run["rows"]:
        sidecar = json.loads(local_file(row["video_uri"]).with_suffix(".json").read_text())
        assert sidecar["talk"]["id"] == row["talk_id"]
        assert sidecar["talk"]["status"] == "done"
        assert sidecar["talk"]["user_data"] == row["script_id"]
        assert sidecar["script"]["id"] == row["script_id"]
        assert sidecar["script"]["text"] == row["script_text"]
        assert sidecar["script"]["presenter"] == row["presenter"]


def test_manifest_rows_describe_the_stored_files(webhook_run: dict[str, Any]) -> None:
    summary, out = webhook_run["summary"], webhook_run["out"]
    jsonl = webhook_run["rows"]
    csv_rows = list(csv.DictReader(io.StringIO(local_file(summary.manifest["manifest.csv"]).read_text())))
    assert [row["script_id"] for row in csv_rows] == [row["script_id"] for row in jsonl]
    for row, csv_row in zip(jsonl, csv_rows):
        video = local_file(row["video_uri"])
        assert video == out / row["video_key"] and video.suffix == ".mp4"
        data = video.read_bytes()
        assert row["size_bytes"] == len(data)
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        assert row["run_id"] == summary.run_id
        assert row["actual_seconds"] == json.loads(video.with_suffix(".json").read_text())["talk"]["duration"]
        for name in ("status", "talk_id", "size_bytes", "sha256", "video_uri", "script_id", "run_id"):
            assert csv_row[name] == str(row[name]), name
    assert local_file(summary.manifest["manifest.jsonl"]).parent == out / "runs" / summary.run_id


def test_gallery_shows_every_done_video(webhook_run: dict[str, Any]) -> None:
    gallery = local_file(webhook_run["summary"].manifest["gallery.html"])
    page = _Videos()
    page.feed(gallery.read_text())
    done = [row for row in webhook_run["rows"] if row["status"] == "done"]
    assert len(page.sources) == len(done) == SCRIPTS
    assert {(gallery.parent / src).resolve() for src in page.sources} == {
        local_file(row["video_uri"]) for row in done
    }
    assert "Hello there. This is a test." in gallery.read_text()


def test_prefect_artifacts_hold_the_summary_and_the_manifest_table(webhook_run: dict[str, Any]) -> None:
    summary = webhook_run["summary"]
    flow_run_prefix = summary.run_id.rsplit("-", 1)[1]
    mine = {artifact.key: artifact for artifact in asyncio.run(_run_artifacts())
            if str(artifact.flow_run_id).startswith(flow_run_prefix)}
    assert set(mine) == {"talkmill-manifest", "talkmill-summary"}
    table = mine["talkmill-manifest"].data
    table = json.loads(table) if isinstance(table, str) else table
    assert [row["status"] for row in table] == ["done"] * SCRIPTS
    assert {row["talk_id"] for row in table} == {row["talk_id"] for row in webhook_run["rows"]}
    markdown = mine["talkmill-summary"].data
    assert f"{SCRIPTS} done" in markdown and f"({summary.manifest['gallery.html']})" in markdown
    assert f"{SCRIPTS} done" in mine["talkmill-summary"].description


# -- poll mode, a remote backend ---------------------------------------------------------------------


def test_poll_run_makes_one_video_per_script(poll_run: dict[str, Any], talks_engine: Any) -> None:
    rows = poll_run["rows"]
    assert statuses(rows) == ["done"] * SCRIPTS, [(r["status"], r["error_message"]) for r in rows]
    on_engine = {talk["id"]: talk for talk in engine_talks(talks_engine)}
    for row in rows:
        assert on_engine[row["talk_id"]]["user_data"] == row["script_id"]
        video = local_file(row["video_uri"]).read_bytes()
        assert row["sha256"] == hashlib.sha256(video).hexdigest()
        assert_decodes(video, on_engine[row["talk_id"]])


def test_rerun_creates_no_talk_and_skips_every_row(poll_run: dict[str, Any], engine_key: Any) -> None:
    before = len(engine_talks(engine_key))
    again = run_flow([CONTENT], output=str(poll_run["out"]), wait="poll", talks_url=engine_key.url)
    rows = manifest_rows(again)
    assert statuses(rows) == ["skipped_existing"] * SCRIPTS
    assert len(engine_talks(engine_key)) == before
    first = {row["script_id"]: row for row in poll_run["rows"]}
    for row in rows:  # the manifest of the re-run still says where each video is and what it is
        earlier = first[row["script_id"]]
        for name in ("talk_id", "video_uri", "sha256", "size_bytes"):
            assert row[name] == earlier[name], name
    assert again.run_id != poll_run["summary"].run_id


# -- dry run -----------------------------------------------------------------------------------------


def test_dry_run_plans_and_creates_nothing(tmp_path: Path, engine_key: Any) -> None:
    before = len(engine_talks(engine_key))
    summary = run_flow([CONTENT], output=str(tmp_path / "out"), dry_run=True, talks_url=engine_key.url)
    rows = manifest_rows(summary)
    assert statuses(rows) == ["planned"] * SCRIPTS
    assert all(row["talk_id"] is None and row["video_uri"] is None for row in rows)
    assert summary.dry_run and summary.estimated_minutes > 0
    assert len(engine_talks(engine_key)) == before
    assert not list((tmp_path / "out").rglob("*.mp4"))


def test_the_flow_run_log_says_what_is_planned_and_where_it_goes(tmp_path: Path) -> None:
    summary = run_flow([CONTENT], output=str(tmp_path / "out"), dry_run=True)
    messages = asyncio.run(_run_logs(summary.run_id.rsplit("-", 1)[1]))
    planned = next(m for m in messages if m.startswith("planned "))
    assert planned.startswith(f"planned {SCRIPTS} videos (") and "estimated minutes) from 3 sources" in planned
    assert any(summary.manifest["manifest.jsonl"] in m and summary.manifest["gallery.html"] in m for m in messages)


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"presenter": "/nowhere/ghost.png"}, "ghost.png"),
        ({"driver_url": "bank://natural/driver-99"}, "driver-99"),
        ({"voice": {"provider": {"type": "microsoft", "voice_id": "NobodyNeural"}}}, "NobodyNeural"),
    ],
    ids=["missing-presenter", "unknown-driver", "unknown-voice"],
)
def test_dry_run_refuses_a_bad_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: dict, named: str
) -> None:
    monkeypatch.chdir(tmp_path)  # the local engine's catalogue is checked; no engine is started
    with pytest.raises(ContentError, match=named):
        run_flow([CONTENT / "note.txt"], config=write_config(tmp_path, setting), output="out", dry_run=True)
    assert not (tmp_path / ".talkmill").exists(), "a dry run started the engine"


# -- S3 output ---------------------------------------------------------------------------------------


def test_s3_output_holds_videos_sidecars_and_manifest(
    tmp_path: Path, engine_key: Any, seaweedfs: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    prefix = f"runs-test-{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path, {"s3": {"endpoint_url": seaweedfs.endpoint_url}})
    summary = run_flow([CONTENT], config=config, output=f"s3://talkmill/{prefix}", wait="poll",
                       talks_url=engine_key.url)
    s3 = seaweedfs.client()

    def get(key: str) -> tuple[bytes, str]:
        answer = s3.get_object(Bucket="talkmill", Key=f"{prefix}/{key}")
        return answer["Body"].read(), answer["ContentType"]

    manifest_key = f"runs/{summary.run_id}/manifest.jsonl"
    assert summary.manifest["manifest.jsonl"] == f"s3://talkmill/{prefix}/{manifest_key}"
    body, content_type = get(manifest_key)
    assert content_type == "application/x-ndjson"
    rows = [json.loads(line) for line in body.decode().splitlines()]
    assert statuses(rows) == ["done"] * SCRIPTS
    assert get(f"runs/{summary.run_id}/manifest.csv")[1] == "text/csv"
    assert get(f"runs/{summary.run_id}/gallery.html")[1].startswith("text/html")
    for row in rows:
        assert row["video_uri"] == f"s3://talkmill/{prefix}/{row['video_key']}"
        video, video_type = get(row["video_key"])
        sidecar, sidecar_type = get(row["video_key"].removesuffix(".mp4") + ".json")
        assert (video_type, sidecar_type) == ("video/mp4", "application/json")
        assert row["size_bytes"] == len(video) and row["sha256"] == hashlib.sha256(video).hexdigest()
        talk = json.loads(sidecar)["talk"]
        assert talk["id"] == row["talk_id"]
        assert_decodes(video, talk)


# -- partial failure ---------------------------------------------------------------------------------


def test_a_faceless_presenter_fails_its_row_only(tmp_path: Path, engine_key: Any) -> None:
    grey_png(tmp_path / "grey.png")
    rows_csv = tmp_path / "faces.csv"
    rows_csv.write_text("id,text,presenter_image\n"
                        "good,Hello there. This is a test.,\n"
                        "faceless,Nobody is here to say this.,grey.png\n")
    summary = run_flow([rows_csv], output=str(tmp_path / "out"), wait="poll", talks_url=engine_key.url)
    rows = {row["section"]: row for row in manifest_rows(summary)}
    assert rows["good"]["status"] == "done"
    assert rows["faceless"]["status"] == "failed"
    assert rows["faceless"]["error_kind"] == "FaceError"
    assert rows["faceless"]["error_message"] and rows["faceless"]["video_uri"] is None
    assert summary.counts == {"done": 1, "failed": 1} and summary.failed == 1
    assert len(list((tmp_path / "out").rglob("*.mp4"))) == 1
    from flows.content_to_video import content_to_video

    state = asyncio.run(content_to_video([str(rows_csv)], output=str(tmp_path / "out"), wait="poll",
                                         talks_url=engine_key.url, return_state=True))
    assert state.is_failed() and "1 of 2 videos failed" in state.message


def test_a_repeated_script_is_rendered_once_and_stored_for_each_row(tmp_path: Path, engine_key: Any) -> None:
    line = f"The same words twice for {uuid.uuid4().hex[:6]}."  # new to the shared engine
    rows_csv = tmp_path / "twice.csv"
    rows_csv.write_text(f"id,text\nfirst,{line}\nsecond,{line}\n")
    summary = run_flow([rows_csv], output=str(tmp_path / "out"), wait="poll", talks_url=engine_key.url)
    rows = {row["section"]: row for row in manifest_rows(summary)}
    assert statuses(list(rows.values())) == ["done", "done"]
    assert rows["first"]["talk_id"] == rows["second"]["talk_id"]
    assert rows["first"]["video_key"] != rows["second"]["video_key"]
    assert rows["first"]["sha256"] == rows["second"]["sha256"]
    assert all(local_file(row["video_uri"]).stat().st_size == row["size_bytes"] for row in rows.values())
    same = [talk for talk in engine_talks(engine_key) if talk.get("user_data") == rows["first"]["script_id"]]
    assert len(same) == 1


# -- helpers -----------------------------------------------------------------------------------------


def assert_decodes(video: bytes, talk: dict[str, Any]) -> None:
    """An h264 512×512 video with aac audio, every frame decodable, as long as the talk says."""
    with av.open(io.BytesIO(video)) as container:
        (picture,), (sound,) = container.streams.video, container.streams.audio
        assert picture.codec_context.name == "h264" and (picture.width, picture.height) == (512, 512)
        assert sound.codec_context.name == "aac"
        assert container.duration / av.time_base == pytest.approx(talk["duration"], abs=0.04)
        frames = sum(1 for _ in container.decode(picture))
    assert frames == talk["metadata"]["num_frames"] > 0


class _Videos(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "video":
            self.sources.append(dict(attrs)["src"] or "")


async def _run_artifacts() -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        wanted = ArtifactFilter(key=ArtifactFilterKey(any_=["talkmill-manifest", "talkmill-summary"]))
        return await client.read_artifacts(artifact_filter=wanted)


async def _run_logs(flow_run_prefix: str) -> list[str]:
    """The messages of the flow run whose id starts with the prefix (its run id's suffix), once sent."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    await APILogHandler.aflush()  # the run's log lines leave in batches
    async with get_client() as client:
        runs = [run for run in await client.read_flow_runs(limit=200) if str(run.id).startswith(flow_run_prefix)]
        wanted = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id for run in runs]))
        return [log.message for log in await client.read_logs(log_filter=wanted)]
