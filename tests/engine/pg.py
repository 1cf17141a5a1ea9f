"""A real PostgreSQL server for tests: Debian's package (scripts/bootstrap installs it), on 127.0.0.1.

PostgreSQL refuses to run as root, so initdb and pg_ctl run as the `postgres` user in a temp dir of its
own. `postgres` is a session-scoped fixture; `new_database(server)` gives a test a fresh database.
A test module imports the fixture: `from tests.engine.pg import postgres  # noqa: F401`.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.engine.helpers import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
ROLE, PASSWORD = "talkmill", "talkmill-test-secret"
START_SECONDS = 30
_names = itertools.count(1)


@dataclass(frozen=True)
class PgServer:
    port: int
    socket_dir: Path

    def url(self, database: str = "talkmill") -> str:
        return f"postgresql://{ROLE}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def admin(self):  # noqa: ANN201  (a psycopg connection, as the superuser over the socket: trust)
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres", dbname="postgres",
                               autocommit=True)  # fmt: skip


def _as_postgres(*command: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    args = ["runuser", "-u", "postgres", "--", *map(str, command)]
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60)


@contextmanager
def running_postgres() -> Iterator[PgServer]:
    """initdb + pg_ctl start in a fresh temp dir; the role `talkmill` (password auth over TCP)."""
    if not (BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL 15 is not installed ({BIN}): apt-get install postgresql (scripts/bootstrap)")
    root = Path(tempfile.mkdtemp(prefix="talkmill-pg-"))  # not under pytest's tmp: postgres cannot enter it
    shutil.chown(root, "postgres", "postgres")
    data, log, port = root / "data", root / "server.log", free_port()
    _as_postgres(BIN / "initdb", "-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=md5", "-E", "UTF8")
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c fsync=off"
    _as_postgres(BIN / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", str(START_SECONDS), "start",
                 check=False)  # its outcome is judged by _wait_ready, which shows the log
    server = PgServer(port, root)
    try:
        _wait_ready(server, log)
        with server.admin() as conn:
            conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
            conn.execute(f"CREATE DATABASE talkmill OWNER {ROLE}")
        yield server
    finally:
        _as_postgres(BIN / "pg_ctl", "-D", data, "stop", "-m", "immediate", check=False)
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(server: PgServer, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            server.admin().close()
            return
        except Exception as e:  # noqa: BLE001  (not up yet)
            if time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
                pytest.fail(f"PostgreSQL not ready within {START_SECONDS} s ({e}):\n{tail}")
            time.sleep(0.1)


def new_database(server: PgServer) -> str:
    """A fresh, empty database owned by the test role; its URL."""
    name = f"t{os.getpid()}_{next(_names)}"
    with server.admin() as conn:
        conn.execute(f"CREATE DATABASE {name} OWNER {ROLE}")
    return server.url(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    """A PostgreSQL 15 server on 127.0.0.1, for the session."""
    with running_postgres() as server:
        yield server
