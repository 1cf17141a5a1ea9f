"""Jobs survive crashes: talks left `started` and pending webhooks are finished after a restart."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from talkmill_engine.jobs.store import MAX_ATTEMPTS, TalkStore

from talks_contract.signatures import verify
from tests.engine.helpers import StaticServer, WebhookReceiver, free_port, probe_video, start_engine, wait_for
from tests.s3server import S3Server  # the `seaweedfs` fixture comes from tests/conftest.py

SECRET = "whsec-jobs-test"


def test_a_talk_started_when_the_engine_is_killed_is_rendered_after_restart(
    fresh_data_dir: Path, static_server: StaticServer
) -> None:
    first = start_engine(fresh_data_dir, workers=1)
    try:
        with first.client() as http:
            # The slow source keeps the talk `started` for 2 s: a window to crash in.
            body = {"source_url": f"{static_server.base}/slow/2/astronaut.png",
                    "script": {"type": "text", "input": "Hello world!"}}
            talk_id = http.post("/talks", json=body).json()["id"]
            assert wait_for(http, talk_id, ("started",), timeout=60)["status"] == "started"
    finally:
        first.kill(signal.SIGKILL)  # server and workers, no clean shutdown
    row = sqlite3.connect(fresh_data_dir / "talks.db").execute(
        "SELECT status, attempts FROM talks WHERE id = ?", (talk_id,)
    ).fetchone()
    assert row == ("started", 1)  # the crash left it half done

    second = start_engine(fresh_data_dir, workers=1)
    try:
        with second.client() as http:
            done = wait_for(http, talk_id, timeout=240)
            assert done["status"] == "done", done
            assert done["result_url"].startswith(second.url)
            assert http.get(done["result_url"]).status_code == 200
    finally:
        second.kill(signal.SIGTERM)


def test_a_pending_webhook_is_delivered_after_restart(fresh_data_dir: Path, static_server: StaticServer) -> None:
    hook_port = free_port()  # nothing listens yet: the first deliveries fail and stay pending
    first = start_engine(fresh_data_dir, workers=1, webhook_secret=SECRET)
    try:
        with first.client() as http:
            body = {"source_url": static_server.url("not-an-image.png"),
                    "script": {"type": "text", "input": "Hello world!"},
                    "webhook": f"http://127.0.0.1:{hook_port}/webhook", "user_data": "job-7"}
            talk_id = http.post("/talks", json=body).json()["id"]
            assert wait_for(http, talk_id)["status"] == "error"
            time.sleep(1.0)  # the dispatcher has tried once and waits to retry
    finally:
        first.kill(signal.SIGKILL)
    state = sqlite3.connect(fresh_data_dir / "talks.db").execute(
        "SELECT webhook_state FROM talks WHERE id = ?", (talk_id,)
    ).fetchone()
    assert state == ("pending",)

    receiver = WebhookReceiver(hook_port)
    second = start_engine(fresh_data_dir, workers=1, webhook_secret=SECRET)
    try:
        signature, raw = receiver.wait(timeout=30)
        verify(SECRET, signature, raw)  # raises on a bad signature
        delivered = json.loads(raw)
        assert (delivered["id"], delivered["status"], delivered["user_data"]) == (talk_id, "error", "job-7")
        assert delivered["error"]["kind"] == "SourceError"
        with second.client() as http:
            assert http.get(f"/talks/{talk_id}").json() == delivered  # the same body as GET
        deadline = time.monotonic() + 10
        while TalkStore(fresh_data_dir / "talks.db").webhook_state(talk_id) != "delivered":
            assert time.monotonic() < deadline, "delivery not recorded"
            time.sleep(0.1)
    finally:
        second.kill(signal.SIGTERM)
        receiver.close()


def test_a_talk_that_keeps_crashing_its_worker_ends_as_an_error(tmp_path: Path) -> None:
    store = TalkStore(tmp_path / "talks.db")
    store.create({"id": "tlk_crashy0000", "status": "created", "created_at": "2024-01-01T00:00:00.000Z",
                  "webhook": "http://127.0.0.1:9/hook"})
    for attempt in range(1, MAX_ATTEMPTS + 1):
        claimed = store.claim_next(f"w{attempt}")
        assert claimed is not None and claimed.attempts == attempt
        requeued = store.requeue_orphans(live_workers=())
        assert requeued == ([] if attempt == MAX_ATTEMPTS else ["tlk_crashy0000"])
    talk = store.get("tlk_crashy0000")
    assert talk.doc["status"] == "error"
    assert talk.doc["error"] == {"kind": "UnknownError", "description": f"rendering crashed {MAX_ATTEMPTS} times"}
    assert store.claim_next("w9") is None
    assert [r.id for r in store.pending_webhooks()] == ["tlk_crashy0000"]


def test_claims_are_exclusive_and_oldest_first(tmp_path: Path) -> None:
    store = TalkStore(tmp_path / "talks.db")
    for n in range(3):
        store.create({"id": f"tlk_{n:010d}", "status": "created", "created_at": "2024-01-01T00:00:00.000Z"})
    other = TalkStore(tmp_path / "talks.db")  # a second connection, as another worker process has
    claims = [store.claim_next("a"), other.claim_next("b"), store.claim_next("a"), other.claim_next("b")]
    assert [c.id if c else None for c in claims] == ["tlk_0000000000", "tlk_0000000001", "tlk_0000000002", None]
    assert store.finish_done("tlk_0000000001", {"duration": 1.0}, worker_id="a") is False  # not a's talk
    assert other.finish_done("tlk_0000000001", {"duration": 1.0}, worker_id="b") is True
    assert store.get("tlk_0000000001").doc["status"] == "done"
    assert store.count_active() == 2


@pytest.mark.parametrize("crashed, attempts", [(True, 1), (False, 0)])
def test_a_clean_stop_does_not_count_as_a_crash(tmp_path: Path, crashed: bool, attempts: int) -> None:
    store = TalkStore(tmp_path / "talks.db")
    store.create({"id": "tlk_stopped000", "status": "created", "created_at": "2024-01-01T00:00:00.000Z"})
    store.claim_next("w")
    assert store.requeue_orphans((), crashed=crashed) == ["tlk_stopped000"]
    assert store.get("tlk_stopped000").attempts == attempts


def _worker_pids(server_pid: int) -> list[int]:
    """The engine's worker processes: its children started by multiprocessing's spawn."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == server_pid and b"spawn_main" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


def test_a_dead_worker_is_replaced_and_its_talk_rendered(fresh_data_dir: Path, static_server: StaticServer) -> None:
    engine = start_engine(fresh_data_dir, workers=1)
    try:
        with engine.client() as http:
            body = {"source_url": f"{static_server.base}/slow/2/grace_hopper.jpg",
                    "script": {"type": "text", "input": "Hello world!"}}
            talk_id = http.post("/talks", json=body).json()["id"]
            wait_for(http, talk_id, ("started",), timeout=60)
            (worker,) = _worker_pids(engine.process.pid)
            os.kill(worker, signal.SIGKILL)  # the worker dies mid-talk; the server lives on
            done = wait_for(http, talk_id, timeout=120)
            assert done["status"] == "done", done
            assert _worker_pids(engine.process.pid) != [worker]
            assert http.get("/health").json()["workers"] == 1
        row = sqlite3.connect(fresh_data_dir / "talks.db").execute(
            "SELECT attempts FROM talks WHERE id = ?", (talk_id,)
        ).fetchone()
        assert row == (2,)
    finally:
        engine.kill(signal.SIGTERM)


def test_a_result_url_on_s3_receives_the_video(
    fresh_data_dir: Path, static_server: StaticServer, seaweedfs: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", seaweedfs.access_key), ("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    engine = start_engine(fresh_data_dir, workers=1, s3_endpoint_url=seaweedfs.endpoint_url)
    try:
        with engine.client() as http:
            body = {"source_url": static_server.url("grace_hopper.jpg"),
                    "script": {"type": "text", "input": "Hello world!"}, "result_url": "s3://inbox/results/"}
            talk_id = http.post("/talks", json=body).json()["id"]
            done = wait_for(http, talk_id, timeout=120)
        assert done["status"] == "done", done
        assert done["result_url"] == f"s3://inbox/results/{talk_id}.mp4"
        stored = seaweedfs.client().get_object(Bucket="inbox", Key=f"results/{talk_id}.mp4")["Body"].read()
        facts = probe_video(stored)
        assert (facts.video_codec, facts.frames) == ("h264", done["metadata"]["num_frames"])
    finally:
        engine.kill(signal.SIGTERM)
