"""`talkmill run` as a user runs it: a subprocess, its exit code, what it prints.

They print to a pipe, as in a CI log: rich lays out 80 columns (COLUMNS=80 in cli_env). The
subprocesses use the session's Prefect server (PREFECT_API_URL) instead of starting an ephemeral one
each (~15 s apiece), and the shared engine as their backend.
"""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
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
