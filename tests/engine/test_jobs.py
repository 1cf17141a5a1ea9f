"""Jobs survive crashes: talks left `started` and pending webhooks are finished after a restart."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from talkmill_engine.jobs.dispatch import SCHEDULE
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


def seed_ended_talk(data_dir: Path, webhook: str) -> str:
    """An ended talk whose webhook is due, written as a worker would: engines with no worker deliver it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = TalkStore(data_dir / "talks.db")
    talk_id = "tlk_seeded00000000"
    store.create({"id": talk_id, "object": "talk", "status": "created", "created_at": "2024-01-01T00:00:00.000Z",
                  "created_by": "tester", "webhook": webhook})  # fmt: skip
    store.claim_next("seed")
    store.finish_error(talk_id, {"kind": "SourceError", "description": "seeded"}, worker_id="seed")
    store.close()
    return talk_id


def webhook_row(data_dir: Path, talk_id: str) -> tuple[str, int, str | None]:
    with sqlite3.connect(data_dir / "talks.db") as conn:
        return conn.execute("SELECT webhook_state, webhook_attempts, webhook_last_error FROM talks WHERE id = ?",
                            (talk_id,)).fetchone()  # fmt: skip


def wait_row(data_dir: Path, talk_id: str, done: object, timeout: float) -> tuple[str, int, str | None]:
    deadline = time.monotonic() + timeout
    while not done(row := webhook_row(data_dir, talk_id)):
        assert time.monotonic() < deadline, f"webhook still {row} after {timeout} s"
        time.sleep(0.1)
    return row


def test_a_receiver_down_longer_than_a_round_of_tries_still_gets_its_delivery(fresh_data_dir: Path) -> None:
    """The schedule at 1/1000 of its length: attempts at about 0, 0.3, 0.6, 2, 7.5, 18 s. The receiver is
    down for the first five (all of what the engine used to try, over 70 s) and up for the sixth."""
    hook_port = free_port()
    talk_id = seed_ended_talk(fresh_data_dir, f"http://127.0.0.1:{hook_port}/webhook")
    engine = start_engine(fresh_data_dir, workers=0, webhook_secret=SECRET, webhook_schedule_scale="0.001")
    receiver = None
    try:
        state, attempts, error = wait_row(fresh_data_dir, talk_id, lambda row: row[1] >= 5, timeout=30)
        assert (state, attempts) == ("pending", 5) and "ConnectError" in error
        receiver = WebhookReceiver(hook_port)
        signature, raw = receiver.wait(timeout=30)
        verify(SECRET, signature, raw)
        assert json.loads(raw)["id"] == talk_id
        assert wait_row(fresh_data_dir, talk_id, lambda row: row[0] != "pending", timeout=10)[:2] == ("delivered", 6)
        assert len(receiver.calls) == 1
    finally:
        engine.kill(signal.SIGTERM)
        if receiver:
            receiver.close()


def test_the_schedule_carries_on_across_a_restart_then_gives_up(fresh_data_dir: Path) -> None:
    """At 1/10000 of its length the whole schedule takes ~9 s; the engine is killed midway."""
    talk_id = seed_ended_talk(fresh_data_dir, f"http://127.0.0.1:{free_port()}/webhook")  # never listening
    fast = {"webhook_secret": SECRET, "webhook_schedule_scale": "0.0001"}
    first = start_engine(fresh_data_dir, workers=0, **fast)
    try:
        wait_row(fresh_data_dir, talk_id, lambda row: row[1] >= 3, timeout=30)
    finally:
        first.kill(signal.SIGKILL)
    state, made, _ = webhook_row(fresh_data_dir, talk_id)
    assert state == "pending" and 3 <= made < len(SCHEDULE)  # the count is in the store
    second = start_engine(fresh_data_dir, workers=0, **fast)
    try:
        state, attempts, error = wait_row(fresh_data_dir, talk_id, lambda row: row[0] != "pending", timeout=60)
        assert (state, attempts) == ("failed", len(SCHEDULE))  # the restart went on counting, not from 0
        assert "ConnectError" in error
    finally:
        second.kill(signal.SIGTERM)


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


def watch_health(url: str, seen: list[tuple[int, str, int, int]], stop: threading.Event) -> None:
    """Records every change of (HTTP status, status, workers, starting) of /health, and that /live answers."""
    while not stop.is_set():
        try:
            answer = httpx.get(f"{url}/health", timeout=2)
            live = httpx.get(f"{url}/live", timeout=2).status_code
        except httpx.HTTPError:
            time.sleep(0.02)
            continue
        body = answer.json()
        state = (answer.status_code, body["status"], body["workers"], body["starting"])
        assert live == 200, state  # alive all along, models or not
        if not seen or seen[-1] != state:
            seen.append(state)
        time.sleep(0.02)


def test_health_turns_green_only_once_a_worker_has_loaded_its_models(fresh_data_dir: Path) -> None:
    port, seen, stop = free_port(), [], threading.Event()
    watcher = threading.Thread(target=watch_health, args=(f"http://127.0.0.1:{port}", seen, stop), daemon=True)
    watcher.start()
    ready, loading = (200, "ok", 1, 0), (503, "starting", 0, 1)
    engine = start_engine(fresh_data_dir, workers=1, port=port)
    try:
        wait_until(lambda: seen[-1:] == [ready], seen)
        assert seen == [loading, ready]
        (worker,) = _worker_pids(engine.process.pid)
        os.kill(worker, signal.SIGKILL)  # its replacement loads the models again: not ready meanwhile
        wait_until(lambda: loading in seen[2:] and seen[-1] == ready, seen)
    finally:
        stop.set()
        watcher.join(5)
        engine.kill(signal.SIGTERM)


def wait_until(condition: object, seen: list, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)


def test_an_engine_without_workers_is_ready_at_once(fresh_data_dir: Path) -> None:
    engine = start_engine(fresh_data_dir, workers=0)
    try:
        health = httpx.get(f"{engine.url}/health")
        assert (health.status_code, health.json()) == (200, {"status": "ok", "workers": 0, "starting": 0, "queued": 0})
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
