"""Crashed runs resumed: a runner killed mid-run leaves its flow run behind; resume_crashed schedules it
again, a new runner finishes it, and no talk is created twice. A real Prefect server, real runner processes,
a fake Talks server in its own process (bench/fake_talks.py: it counts every talk created)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.states import Crashed

from bench.fake_talks import serve as serve_fake_talks
from bench.pipeline_overhead import write_config, write_content
from flows.resume import RESUMED_TAG, resume_crashed
from tests.deploy.prefect_server import PrefectServer, api, stop, wait_final, wait_for

ROWS = 8
LATENCY = 3.0  # seconds a fake talk renders: with concurrency 2 the run lasts ~12 s, long enough to kill


@pytest.fixture(scope="module")
def fake_talks() -> Iterator[str]:
    url, process = serve_fake_talks(LATENCY)
    yield url
    process.terminate()
    process.join(10)


def start_runner(server: PrefectServer, name: str, log: Path) -> subprocess.Popen:
    """A process serving content_to_video as deployment `name` (what a worker is to a work pool)."""
    code = ("import sys, prefect\nfrom flows.content_to_video import content_to_video\n"  # as talkmill serve does
            "prefect.serve(content_to_video.to_deployment(name=sys.argv[1]), print_starting_message=False)\n")
    env = server.env(PREFECT_RUNNER_POLL_FREQUENCY="1", TALKMILL_TALKS_KEY="fake-key")
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-c", code, name], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own group: killed with its flow-run processes


def talks_created(url: str) -> int:
    return httpx.get(f"{url}/stats", timeout=5).json()["talks"]


def resume(server: PrefectServer, deployment: str) -> list[str]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        return resume_crashed(deployment)


def call(server: PrefectServer, method: str, *args: Any, **kwargs: Any) -> Any:
    """One Prefect client call (it retries the 503s a loaded server answers)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as client:
        return getattr(client, method)(*args, **kwargs)


@pytest.fixture(scope="module")
def crashed_and_resumed(prefect_server: PrefectServer, fake_talks: str,
                        tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("resume")
    name = f"resume-{uuid.uuid4().hex[:6]}"
    deployment = f"content_to_video/{name}"
    log = work / "runners.log"
    runner = start_runner(prefect_server, name, log)
    try:
        found = wait_for(lambda: _deployment(prefect_server, deployment), 120, f"{deployment} served (log: {log})")
        parameters = {"sources": [str(write_content(work, ROWS))], "output": str(work / "out"),
                      "config": str(write_config(work, fake_talks, concurrency=2))}
        run = {"id": str(call(prefect_server, "create_flow_run_from_deployment", found["id"], parameters=parameters).id)}
        wait_for(lambda: talks_created(fake_talks) >= 3, 120, f"the run's first talks (log: {log})")
        os.killpg(runner.pid, signal.SIGKILL)  # the runner and its flow-run process die mid-run
        runner.wait()
        created_before = talks_created(fake_talks)
        # what Prefect records when a worker dies with its runs
        call(prefect_server, "set_flow_run_state", run["id"], Crashed(message="the worker died"), force=True)
        runner = start_runner(prefect_server, name, log)
        resumed = resume(prefect_server, deployment)
        again = resume(prefect_server, deployment)
        final = wait_final(prefect_server, run["id"], 180)
        yield {"run": final, "resumed": resumed, "again": again, "created_before": created_before,
               "created": talks_created(fake_talks), "out": work / "out", "deployment": deployment}
    finally:
        stop(runner)


def _deployment(server: PrefectServer, name: str) -> dict[str, Any] | None:
    try:
        return api(server, "GET", f"/deployments/name/{name}")
    except httpx.HTTPStatusError:
        return None


def test_the_crashed_run_is_resumed_once_and_completes(crashed_and_resumed: dict[str, Any]) -> None:
    run = crashed_and_resumed["run"]
    assert crashed_and_resumed["resumed"] == [run["id"]] and crashed_and_resumed["again"] == []
    assert run["state_type"] == "COMPLETED", run["state"]
    assert RESUMED_TAG in run["tags"]


def test_the_resumed_run_makes_every_video_without_a_duplicate_talk(crashed_and_resumed: dict[str, Any]) -> None:
    assert 0 < crashed_and_resumed["created_before"] < ROWS  # killed mid-run
    assert crashed_and_resumed["created"] == ROWS
    run_dirs = list((crashed_and_resumed["out"] / "runs").glob(f"*-{crashed_and_resumed['run']['id'][:8]}"))
    assert len(run_dirs) == 1  # the same run, the same folder
    rows = [json.loads(line) for line in (run_dirs[0] / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == ROWS and {row["status"] for row in rows} <= {"done", "skipped_existing"}
    assert len({row["talk_id"] for row in rows}) == ROWS


def test_runs_that_did_not_crash_are_left_alone(prefect_server: PrefectServer,
                                                crashed_and_resumed: dict[str, Any]) -> None:
    assert resume(prefect_server, crashed_and_resumed["deployment"]) == []
