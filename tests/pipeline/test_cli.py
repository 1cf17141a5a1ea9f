"""`talkmill run` as a user runs it: a subprocess, its exit code, what it prints.

They print to a pipe, as in a CI log: rich lays out 80 columns (COLUMNS=80 in cli_env). The
subprocesses use the session's Prefect server (PREFECT_API_URL) instead of starting an ephemeral one
each (~15 s apiece), and the shared engine as their backend.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from talkmill_engine.local import LocalEngine

from tests.pipeline.conftest import CONTENT, TALKMILL, cli_env, grey_png

pytestmark = pytest.mark.usefixtures("prefect_harness")


def talkmill(*args: str | Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [str(TALKMILL), *map(str, args)]
    return subprocess.run(command, check=False, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def env(prefect_harness: str, talks_engine: LocalEngine) -> dict[str, str]:
    return cli_env(prefect_harness, TALKMILL_TALKS_KEY=talks_engine.key)


def test_run_exits_0_and_the_summary_names_the_manifest(
    tmp_path: Path, env: dict, talks_engine: LocalEngine
) -> None:
    done = talkmill("run", CONTENT / "note.txt", "--output", tmp_path / "out",
                    "--talks-url", talks_engine.url, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (manifest,) = (tmp_path / "out").glob("runs/*/manifest.jsonl")
    assert manifest.as_uri() in done.stdout
    assert (manifest.parent / "gallery.html").as_uri() in done.stdout
    assert [json.loads(line)["status"] for line in manifest.read_text().splitlines()] == ["done"]
    assert "done" in done.stdout and "minutes of video" in done.stdout
    assert len(list((tmp_path / "out").rglob("*.mp4"))) == 1


def test_dry_run_exits_0_and_makes_no_video(tmp_path: Path, env: dict) -> None:
    planned = talkmill("run", CONTENT, "--output", tmp_path / "out", "--dry-run", env=env, cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr
    assert "dry run" in planned.stdout and "estimated minutes of video" in planned.stdout
    (manifest,) = (tmp_path / "out").glob("runs/*/manifest.jsonl")
    assert {json.loads(line)["status"] for line in manifest.read_text().splitlines()} == {"planned"}
    assert not list((tmp_path / "out").rglob("*.mp4"))
    assert not (tmp_path / ".talkmill").exists(), "a dry run started the local engine"


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory, env: dict) -> subprocess.CompletedProcess[str]:
    """`talkmill run` on a CSV whose third line asks for an expression that does not exist."""
    work = tmp_path_factory.mktemp("refused")
    (work / "rows.csv").write_text("text,expression\nA fine row.,happy\nAn angry row.,angry\n")
    return talkmill("run", work / "rows.csv", "--output", work / "out", env=env, cwd=work)


def test_a_bad_csv_row_exits_2_naming_its_line(refused: subprocess.CompletedProcess[str]) -> None:
    assert refused.returncode == 2, refused.stderr
    assert "refused:" in refused.stderr
    message = refused.stderr.split("refused:", 1)[1]
    assert "line 3, column 'expression'" in message and "'angry' is not allowed" in message
    assert "line 2" not in message


def test_a_refused_input_prints_no_traceback(refused: subprocess.CompletedProcess[str]) -> None:
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    assert "Still processing items" not in refused.stderr  # Prefect's event sender draining at exit


def test_a_bad_driver_url_row_exits_2_naming_its_line(tmp_path: Path, env: dict) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("text,driver_url\nA fine row.,\nA row with a bad driver.,bank://nowhere\n")
    refused = talkmill("run", rows, "--output", tmp_path / "out", env=env, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "line 3" in refused.stderr and "driver_url" in refused.stderr


@pytest.mark.parametrize(("options", "message"), [
    (["--output", "ftp://host/x"], "refused: output 'ftp://host/x': no store reads ftp:// URIs; allowed: "),
    (["--output", "s3://"], "refused: output 's3://': an s3:// URI needs a bucket"),
    (["--concurrency", "0"], "backend.concurrency: Input should be greater than or equal to 1"),
], ids=["unknown-scheme", "no-bucket", "bad-option"])
def test_a_bad_option_exits_2_with_one_readable_message(tmp_path: Path, env: dict, options: list[str],
                                                         message: str) -> None:
    refused = talkmill("run", CONTENT / "note.txt", *options, env=env, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr and message in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) <= 3  # a message, not a report


def test_a_failed_row_exits_1(tmp_path: Path, env: dict, talks_engine: LocalEngine) -> None:
    grey_png(tmp_path / "grey.png")
    rows = tmp_path / "faces.csv"
    rows.write_text("text,presenter_image\n"
                    "Hello there. This is a test.,\n"
                    "Nobody is here to say this.,grey.png\n")
    partial = talkmill("run", rows, "--output", tmp_path / "out", "--talks-url", talks_engine.url, env=env,
                       cwd=tmp_path)
    assert partial.returncode == 1, partial.stderr
    assert "failed" in partial.stdout and "done" in partial.stdout
    assert len(list((tmp_path / "out").rglob("*.mp4"))) == 1
    # stderr is a pipe, not a terminal: plain progress lines instead of a bar
    assert "talkmill: planned 2 videos" in partial.stderr
    assert "talkmill: 2/2 videos finished (1 failed)" in partial.stderr


def test_ctrl_c_says_how_to_resume(tmp_path: Path, env: dict, talks_engine: LocalEngine) -> None:
    rows = tmp_path / "many.csv"
    rows.write_text("text\n" + "".join(f"Sentence number {n} of a long batch {uuid.uuid4().hex[:6]}.\n"
                                         for n in range(12)))
    command = [str(TALKMILL), "run", str(rows), "--output", str(tmp_path / "out"),
               "--talks-url", talks_engine.url, "--concurrency", "1"]
    run = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    seen = []
    for line in run.stderr:  # wait until the plan is made and talks are under way
        seen.append(line)
        if "talkmill: planned" in line:
            break
    assert run.poll() is None, "".join(seen)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert "interrupted; run the same command again to resume" in err
    assert "Traceback" not in err


def test_run_help_lists_the_options(tmp_path: Path, env: dict) -> None:
    shown = talkmill("run", "--help", env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    options = ("--config", "--output", "--dry-run", "--wait", "--talks-url", "--concurrency", "--verbose")
    for option in options:
        assert option in shown.stdout, option
    assert "sources" in shown.stdout.lower()


def test_run_help_shows_the_defaults(tmp_path: Path, env: dict) -> None:
    shown = talkmill("run", "--help", env=env, cwd=tmp_path)
    assert "./output" in shown.stdout and "webhook]" in shown.stdout


# -- without PREFECT_API_URL: the Prefect server kept under .talkmill/prefect ---------------------------


def api_post(url: str, path: str, **body: object) -> list[dict]:
    import httpx

    return httpx.post(f"{url}{path}", json=body, timeout=10).raise_for_status().json()


@pytest.fixture(scope="module")
def own_server_runs(tmp_path_factory: pytest.TempPathFactory, talks_engine: LocalEngine) -> Iterator[dict]:
    """Two `talkmill run`s with no Prefect API named, from one directory: the first starts the server
    under .talkmill/prefect, the second finds it. Each run's wall time; the server stopped at the end."""
    from talkmill.local_prefect import running_server, stop_server

    work = tmp_path_factory.mktemp("own-server")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(COLUMNS="80", TALKMILL_TALKS_KEY=talks_engine.key, PREFECT_HOME=str(work / "no-profiles"))
    seconds = []
    try:
        for name in ("first", "second"):
            (work / f"{name}.txt").write_text(f"The {name} run of two. It needs no server of its own.\n")
            started = time.monotonic()
            done = talkmill("run", f"{name}.txt", "--output", "out", "--talks-url", talks_engine.url, env=env,
                            cwd=work)
            seconds.append(time.monotonic() - started)
            assert done.returncode == 0, done.stderr
        print(f"talkmill run, first (starts the server) {seconds[0]:.1f} s, second {seconds[1]:.1f} s")
        yield {"work": work, "env": env, "seconds": seconds, "server": running_server(work / ".talkmill")}
    finally:
        stop_server(work / ".talkmill")


def test_runs_without_an_api_share_one_server_that_outlives_them(own_server_runs: dict) -> None:
    server = own_server_runs["server"]
    assert server is not None and server.role == "run"  # still up after both runs
    runs = api_post(server.api_url, "/flow_runs/filter", limit=10)
    assert len(runs) == 2 and {run["state_type"] for run in runs} == {"COMPLETED"}  # one UI for both
    first, second = own_server_runs["seconds"]
    assert second < first  # no server to start


def test_every_task_run_of_a_finished_flow_is_recorded_finished(own_server_runs: dict) -> None:
    from tests.deploy.prefect_server import wait_for

    url = own_server_runs["server"].api_url

    def all_completed() -> list[dict] | None:
        tasks = api_post(url, "/task_runs/filter", limit=200)
        return tasks if tasks and {task["state_type"] for task in tasks} == {"COMPLETED"} else None

    tasks = wait_for(all_completed, 30, "every task run COMPLETED")
    assert sum(task["name"].startswith("video-") for task in tasks) == 2  # one per talk, in both runs


def test_a_run_restarts_the_server_when_it_died(own_server_runs: dict) -> None:
    from talkmill.local_prefect import running_server

    work = own_server_runs["work"]
    os.killpg(own_server_runs["server"].pid, signal.SIGKILL)
    planned = talkmill("run", "first.txt", "--output", "out", "--dry-run", env=own_server_runs["env"],
                       cwd=work)
    assert planned.returncode == 0, planned.stderr
    restarted = running_server(work / ".talkmill")
    assert restarted is not None and restarted.pid != own_server_runs["server"].pid


def test_a_server_that_cannot_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    (tmp_path / ".talkmill").write_text("not a folder")  # its home cannot be made
    env["PREFECT_HOME"] = str(tmp_path / "p")
    refused = talkmill("run", CONTENT / "note.txt", "--dry-run", env=env, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "start `talkmill serve`" in refused.stderr and "PREFECT_API_URL" in refused.stderr


def test_talkmill_server_says_where_it_is_and_stops_it(own_server_runs: dict) -> None:
    work, env = own_server_runs["work"], own_server_runs["env"]
    status = talkmill("server", "status", env=env, cwd=work)
    assert status.returncode == 0 and status.stdout.startswith("running at http://127.0.0.1:"), status.stdout
    assert talkmill("server", "stop", env=env, cwd=work).stdout.strip() == "stopped"
    assert talkmill("server", env=env, cwd=work).stdout.strip() == "not running"
