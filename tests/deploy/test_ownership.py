"""Who stops the local engine: a run beside `talkmill serve` uses serve's engine and leaves it running;
two runs on one data dir leave it to the last; a killed run's orphan is stopped by the next user; serve's
engine dies with serve. Real engines (no workers where nothing renders) and real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from talkmill_engine.local import OWNER_FILE, LocalEngine

from tests.deploy.prefect_server import PrefectServer, wait_for

TALKMILL = Path(sys.executable).parent / "talkmill"
NOTE = "Hello from beside the service. This is a short test.\n"


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def user(data_dir: Path, role: str = "run", hold: bool = False) -> subprocess.Popen[str]:
    """Another process using the engine of `data_dir`: it starts (or joins) it and prints its URL; with
    `hold`, it stays until its stdin closes, then stops (or leaves) it; without, it exits at once as a
    killed run would, never calling stop()."""
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from talkmill_engine.local import LocalEngine
        engine = LocalEngine(Path({str(data_dir)!r}), workers=0, role={role!r}).start()
        print(engine.url, flush=True)
        if {hold!r}:
            sys.stdin.read()
            engine.stop()
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)


def url_of(process: subprocess.Popen[str]) -> str:
    line = process.stdout.readline().strip()
    assert line.startswith("http://127.0.0.1:"), f"no engine URL (exit {process.poll()})"
    return line


def release(process: subprocess.Popen[str]) -> None:
    process.stdin.close()
    assert process.wait(timeout=60) == 0


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "engine"
    path.mkdir()
    yield path
    record = path / OWNER_FILE
    if record.exists():  # a failed test must not leave an engine behind
        pid = json.loads(record.read_text()).get("engine_pid")
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_run_leaves_a_live_serves_engine_running(data_dir: Path) -> None:
    serve = user(data_dir, role="serve", hold=True)
    url = url_of(serve)
    with LocalEngine(data_dir, workers=0) as run:  # a run on the same data dir
        assert run.url == url and not run.started_here
    assert healthy(url), "the run stopped serve's engine"
    release(serve)  # serve itself stops it
    assert not healthy(url)


def test_two_runs_leave_the_engine_to_the_last(data_dir: Path) -> None:
    first = user(data_dir, hold=True)
    url = url_of(first)
    with LocalEngine(data_dir, workers=0) as second:
        assert second.url == url
    assert healthy(url), "the second run stopped the first one's engine"
    release(first)
    assert not healthy(url)


def test_the_orphan_of_a_killed_run_is_adopted_and_stopped(data_dir: Path) -> None:
    killed = user(data_dir)  # starts the engine and exits without stopping it
    url = url_of(killed)
    assert killed.wait(timeout=30) == 0 and healthy(url)
    with LocalEngine(data_dir, workers=0) as next_run:
        assert next_run.url == url and not next_run.started_here  # adopted, not doubled
    assert not healthy(url)
    assert not (data_dir / OWNER_FILE).exists()


def test_serves_engine_dies_with_serve(data_dir: Path) -> None:
    serve = user(data_dir, role="serve", hold=True)
    url = url_of(serve)
    pid = json.loads((data_dir / OWNER_FILE).read_text())["engine_pid"]
    serve.kill()
    serve.wait()
    wait_for(lambda: not healthy(url), 15, "serve's engine gone after SIGKILL of serve")
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in _state(pid), 15, "the engine process gone")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "Z"


def test_talkmill_run_beside_serve_keeps_serves_engine(tmp_path: Path, prefect_server: PrefectServer) -> None:
    """The whole path: an engine started as serve starts it, in a checkout's .talkmill/engine; two
    `talkmill run`s from that checkout render on it, and it is still serving after each."""
    with LocalEngine((tmp_path / ".talkmill" / "engine").resolve(), workers=1, role="serve") as engine:
        for name in ("first", "second"):
            (tmp_path / f"{name}.txt").write_text(f"{name.title()} run. {NOTE}")
            done = subprocess.run([str(TALKMILL), "run", f"{name}.txt", "--output", "out", "--wait", "poll"],
                                  cwd=tmp_path, env=prefect_server.env(), capture_output=True, text=True,
                                  timeout=300, check=False)
            assert done.returncode == 0, done.stderr[-3000:]
            assert healthy(engine.url), f"the {name} run stopped serve's engine"
        assert len(list((tmp_path / "out").rglob("*.mp4"))) == 2
