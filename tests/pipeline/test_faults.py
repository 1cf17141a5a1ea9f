"""Faults the flow must survive: a webhook that never comes, a run killed mid-batch, a talk that never
finishes. 429s and 503s at the talk stage are covered in test_talks_client.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from talkmill_engine.local import LocalEngine

from tests.pipeline.conftest import (
    TALKMILL,
    cli_env,
    engine_talks,
    local_file,
    manifest_rows,
    run_flow,
    seconds_between,
    statuses,
    write_config,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_lost_webhook_falls_back_to_polling(
    tmp_path: Path, engine_key: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend is told to call back on a port where nothing listens: every callback is lost, and
    polling every webhook_timeout seconds still brings the talk home, long before talk_timeout."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    monkeypatch.setenv("TALKMILL_TALKS_WEBHOOK_SECRET", engine_key.webhook_secret)
    monkeypatch.setenv("TALKMILL_TALKS_WEBHOOK_URL", f"http://127.0.0.1:{closed_port}/talks-webhook")
    (tmp_path / "lost.txt").write_text("This callback never arrives. Polling finds it.\n")
    backend = {"wait": "webhook", "webhook_timeout": 1, "talk_timeout": 120}
    config = write_config(tmp_path, {"backend": backend})
    summary = run_flow([tmp_path / "lost.txt"], config=config, output=str(tmp_path / "out"),
                       talks_url=engine_key.url)
    (row,) = manifest_rows(summary)
    assert (row["status"], row["error_message"]) == ("done", None)
    assert local_file(row["video_uri"]).stat().st_size == row["size_bytes"] > 0
    talk = next(talk for talk in engine_talks(engine_key) if talk["id"] == row["talk_id"])
    assert seconds_between(talk["modified_at"], row["finished_at"]) < 10  # found by the next 1 s poll
    assert talk["webhook"] == f"http://127.0.0.1:{closed_port}/talks-webhook"  # webhook mode it was


def test_killed_run_rerun_finishes_without_duplicate_talks(
    tmp_path: Path, engine_key: LocalEngine, prefect_harness: str
) -> None:
    """`talkmill run` is SIGKILLed once its first talk exists; the re-run picks up the talks in flight
    and creates the rest: one talk per script at the engine, every row done or skipped."""
    batch = tmp_path / "batch.csv"
    numbers = ("one", "two", "three", "four")
    batch.write_text("text\n" + "".join(f"Kill test row {n}. It is short.\n" for n in numbers))
    out = tmp_path / "out"
    plan = manifest_rows(run_flow([batch], output=str(tmp_path / "plan"), dry_run=True,
                                  talks_url=engine_key.url))
    script_ids = {row["script_id"] for row in plan}
    assert len(script_ids) == 4

    def ours() -> list[dict[str, Any]]:
        return [talk for talk in engine_talks(engine_key) if talk.get("user_data") in script_ids]

    command = [str(TALKMILL), "run", str(batch), "--output", str(out), "--talks-url", engine_key.url,
               "--wait", "poll"]
    env = cli_env(prefect_harness, TALKMILL_TALKS_KEY=engine_key.key)
    with _started(command, env, tmp_path / "first.log") as first:
        deadline = time.monotonic() + 120
        while not ours():
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "no talk was created within 120 s"
            time.sleep(0.02)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    assert sum(talk["status"] == "done" for talk in ours()) < 4, "killed too late: the batch was done"
    assert len(list(out.rglob("*.mp4"))) < 4

    second = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    (manifest,) = out.glob("runs/*/manifest.jsonl")  # the killed run never got to write one
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert {row["script_id"] for row in rows} == script_ids
    assert set(statuses(rows)) <= {"done", "skipped_existing"}
    talks_per_script = Counter(talk["user_data"] for talk in ours())
    assert talks_per_script == Counter({script_id: 1 for script_id in script_ids})
    assert {row["talk_id"] for row in rows} == {talk["id"] for talk in ours()}
    assert len(list(out.rglob("*.mp4"))) == 4


@pytest.fixture(scope="module")
def idle_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEngine]:
    """An engine with no render workers: it accepts talks and never finishes one."""
    engine = LocalEngine(tmp_path_factory.mktemp("idle-engine"), workers=0).start()
    yield engine
    engine.stop()


def test_talk_past_its_timeout_fails_its_row_and_the_run_finishes(
    tmp_path: Path, idle_engine: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALKMILL_TALKS_KEY", idle_engine.key)
    (tmp_path / "stuck.txt").write_text("This talk is never rendered.\n")
    config = write_config(tmp_path, {"backend": {"wait": "poll", "talk_timeout": 2, "poll_interval": 0.2,
                                                 "poll_max_interval": 0.5}})
    began = time.monotonic()
    summary = run_flow([tmp_path / "stuck.txt"], config=config, output=str(tmp_path / "out"),
                       talks_url=idle_engine.url)
    assert time.monotonic() - began < 30
    (row,) = manifest_rows(summary)
    assert (row["status"], row["error_kind"]) == ("failed", "Timeout")
    assert row["talk_id"] and row["video_uri"] is None
    assert summary.failed == 1
    assert local_file(summary.manifest["manifest.csv"]).exists()
    assert local_file(summary.manifest["gallery.html"]).exists()
    (talk,) = engine_talks(idle_engine)
    assert talk["status"] == "created"  # the engine still has it: the flow gave up, it did not hang


class _started:
    """A subprocess in its own process group, its output in a file; killed on the way out."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.command, self.env, self.log = command, env, log

    def __enter__(self) -> subprocess.Popen:
        self.file = self.log.open("wb")
        self.process = subprocess.Popen(self.command, env=self.env, stdout=self.file,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        return self.process

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.file.close()
