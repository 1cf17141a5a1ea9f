"""Shared fixtures: a static file server, real engine processes and SeaweedFS (S3) on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from talks_contract import processes
from tests.engine.helpers import (
    PORTRAITS,
    Engine,
    StaticServer,
    bomb_png,
    png_bytes,
    serve_directory,
    speechlike_mp3,
    start_engine,
)
from tests.s3server import seaweedfs  # noqa: F401  (SeaweedFS on 127.0.0.1: one server a session, for all)


@pytest.fixture(scope="session")
def static_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticServer]:
    """Serves the portraits and test media over http://127.0.0.1:<port>/<name> (also /slow/<s>/<name>)."""
    root = tmp_path_factory.mktemp("static")
    for name, path in PORTRAITS.items():
        shutil.copy(path, root / name)
    (root / "not-an-image.png").write_bytes(b"this is text, not a PNG\n" * 20)
    (root / "bomb.png").write_bytes(bomb_png())
    (root / "grey.png").write_bytes(png_bytes(256, 256))
    (root / "speech.mp3").write_bytes(speechlike_mp3())
    (root / "garbage.mp3").write_bytes(b"\x00\x01 definitely not audio " * 50)
    server = serve_directory(root)
    yield server
    server.server.shutdown()


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The engine most tests share: 2 workers, loopback fetches allowed, key tests.helpers.KEY."""
    started = start_engine(tmp_path_factory.mktemp("engine") / "data", workers=2)
    yield started
    started.kill()


@pytest.fixture
def client(engine: Engine) -> Iterator[httpx.Client]:
    with engine.client() as http:
        yield http


@pytest.fixture
def astronaut_url(static_server: StaticServer) -> str:
    return static_server.url("astronaut.png")


@pytest.fixture
def fresh_data_dir(tmp_path: Path) -> Path:
    return tmp_path / "engine-data"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No test leaves a process running: one still alive with this session's temporary folder in its
    command line (a server a test started and did not stop) is killed, and fails the session."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or factory._basetemp is None:
        return
    left = leftover_processes(str(factory.getbasetemp()))
    if left:
        for pid, _ in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        listed = "\n  ".join(command for _, command in left)
        session.config.get_terminal_writer().line(f"\nprocesses left running by tests (killed):\n  {listed}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def leftover_processes(marker: str) -> list[tuple[int, str]]:
    pids = (int(proc.name) for proc in Path("/proc").iterdir() if proc.name.isdigit())
    commands = ((pid, processes.command_line(pid)) for pid in pids if pid != os.getpid())
    return [(pid, command) for pid, command in commands if command and marker in command]
