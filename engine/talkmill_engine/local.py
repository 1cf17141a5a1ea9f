"""The embedded engine: `talkmill engine serve` started in the background on 127.0.0.1 for a run.

Its data dir persists (default ./.talkmill/engine), so a re-run finds talks still in flight, and it
keeps the port it used last (stored beside the data): a finished talk's result_url names that port.
The key and webhook secret are read or generated in the data dir, as the engine itself would.

Who may stop it is written beside it (OWNER_FILE): the process that started it and its role ("serve" or
"run"), and every live process using it, each as (pid, start time), so a recycled pid is not taken for a
live user. A process that finds the engine serving joins its users instead of starting another. At the
end it stops the engine only if nobody else still uses it and it is not a live `talkmill serve`'s: a run
beside `talkmill serve` leaves serve's engine running, two runs on one data dir leave it to the last, and
the orphan of a killed run is stopped by whoever uses it next. serve's engine also dies with serve (a
parent-death signal), so a SIGKILLed serve leaves nothing listening.

It reaches public addresses only for inputs (the pipeline uploads local portraits through POST /images,
so it needs no private ones, and a CSV or a dropped file must not make it fetch internal addresses), and
loopback only for webhooks: the run's own receiver listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

import httpx

from talkmill_engine.settings import EngineSettings, prepare
from talks_contract.processes import alive, die_with_parent, locked, start_time, state

DEFAULT_DATA_DIR = Path(".talkmill/engine")
PORT_FILE = "local_port"
OWNER_FILE = "owner.json"  # {"engine_pid", "role", "owner": [pid, start], "users": [[pid, start], ...]}
LOCK_FILE = "owner.lock"  # held while the owner record is read and changed, and while an engine starts
LEGACY_PID_FILE = "local_pid"  # an engine started before owner records: an orphan, adopted
START_TIMEOUT = 120.0  # the workers load their models before /health counts them
STOP_GRACE = 30.0  # a render in progress is re-queued; SIGKILL after this
LOOPBACK = "127.0.0.0/8,::1/128"
URL_POLICY_ENV = {  # set whatever the caller's environment says: the embedded engine's policy is fixed
    "TALKMILL_ENGINE_ALLOWED_INPUT_NETWORKS": "",
    "TALKMILL_ENGINE_ALLOWED_WEBHOOK_NETWORKS": LOOPBACK,
    "TALKMILL_ENGINE_ALLOW_PRIVATE_URLS": "0",
}
Role = Literal["run", "serve"]


class LocalEngine:
    def __init__(self, data_dir: Path = DEFAULT_DATA_DIR, workers: int | None = None,
                 role: Role = "run") -> None:
        # allow_private_urls: this engine's URL policy is fixed (URL_POLICY_ENV); no deprecation warning
        settings, _ = prepare(EngineSettings(data_dir=data_dir, allow_private_urls=False))
        self.data_dir = data_dir
        self.key = settings.key_values()[0]
        self.webhook_secret = settings.webhook_secret.get_secret_value()
        self.workers = workers if workers is not None else settings.workers
        self.role = role
        self.port = _port_for(data_dir)
        self.url = f"http://127.0.0.1:{self.port}"
        self.started_here = False  # False: joined an engine already serving this data dir
        self._process: subprocess.Popen | None = None
        self._joined = False

    def start(self) -> "LocalEngine":
        with locked(self.data_dir / LOCK_FILE):  # held until healthy: a concurrent start waits, then joins
            record = _read_owner(self.data_dir)
            if not self._serving():
                record = self._launch()
                try:
                    self._wait_healthy()
                except BaseException:
                    _terminate(self._process.pid, self._process, grace=5)
                    raise
            elif record is None:  # serving, but its record is lost: use it, with no pid to stop
                record = {"engine_pid": None, "role": "run", "owner": None, "users": []}
            record["users"].append(_me())
            _write_owner(self.data_dir, record)
            self._joined = True
        return self

    @property
    def pid(self) -> int | None:
        """The engine's pid (its process group) if this object started it and it runs; else None."""
        running = self._process is not None and self._process.poll() is None
        return self._process.pid if running else None

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Leave the engine; stop it (SIGTERM: its workers stop and re-queue their talks; SIGKILL after
        `grace`) unless another live process still uses it or it is a live `talkmill serve`'s."""
        if not self._joined:
            return
        self._joined = False
        with locked(self.data_dir / LOCK_FILE):
            record = _read_owner(self.data_dir) or {"users": []}
            users = record["users"]
            if _me() in users:
                users.remove(_me())
            record["users"] = [user for user in users if _alive(user)]
            if self._leave_running(record):
                _write_owner(self.data_dir, record)
                return
            if pid := record.get("engine_pid"):
                _terminate(pid, self._process, grace)
            for name in (OWNER_FILE, LEGACY_PID_FILE):
                (self.data_dir / name).unlink(missing_ok=True)

    def _leave_running(self, record: dict[str, Any]) -> bool:
        owner = record.get("owner")
        if record.get("role") == "serve" and owner and _alive(owner):
            return owner != _me()  # only serve itself stops serve's engine
        return bool(record["users"])  # someone else still uses it: the last one out stops it

    def _launch(self) -> dict[str, Any]:
        """Start the engine (the lock is held, so a concurrent run waits and then joins it)."""
        env = {
            **os.environ,
            "TALKMILL_ENGINE_KEYS": self.key,
            "TALKMILL_ENGINE_WEBHOOK_SECRET": self.webhook_secret,
            **URL_POLICY_ENV,
        }
        command = [sys.executable, "-m", "talkmill_engine", "serve", "--port", str(self.port),
                   "--data-dir", str(self.data_dir), "--workers", str(self.workers), "--log-level", "warning"]
        log = open(self.data_dir / "engine.log", "ab")  # noqa: SIM115 (the child keeps it open)
        # serve's engine dies with serve; a run's outlives a killed run, so a re-run finds its talks
        on_start = die_with_parent(signal.SIGTERM) if self.role == "serve" else None
        self._process = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True,
                                         preexec_fn=on_start)
        self.started_here = True
        return {"engine_pid": self._process.pid, "role": self.role, "owner": _me(), "users": []}

    def _serving(self) -> bool:
        """An engine of this data dir answers on its port, with this data dir's key."""
        if _is_free(self.port):
            return False
        try:
            healthy = httpx.get(f"{self.url}/health", timeout=2).json().get("status") == "ok"
            authorized = httpx.get(f"{self.url}/talks?limit=1", timeout=5,
                                   headers={"Authorization": f"Bearer {self.key}"}).status_code == 200
        except (httpx.HTTPError, ValueError):
            return False
        return healthy and authorized

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = (self.data_dir / "engine.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the local engine exited with {self._process.returncode}:\n{tail}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).json().get("workers") == self.workers:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"the local engine did not become healthy in {START_TIMEOUT:.0f} s "
                           f"({self.data_dir})")

    def __enter__(self) -> "LocalEngine":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the owner record -------------------------------------------------------------------------------------




def _read_owner(data_dir: Path) -> dict[str, Any] | None:
    """The owner record, or None when there is none (or it is unreadable: then no engine is trusted)."""
    try:
        record = json.loads((data_dir / OWNER_FILE).read_text())
        record["users"] = [list(user) for user in record.get("users", [])]
        record["owner"] = list(record["owner"]) if record.get("owner") else None
        return record
    except FileNotFoundError:
        return _legacy_record(data_dir)
    except (ValueError, KeyError, TypeError):
        return None


def _legacy_record(data_dir: Path) -> dict[str, Any] | None:
    try:
        pid = int((data_dir / LEGACY_PID_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return {"engine_pid": pid, "role": "run", "owner": None, "users": []}


def _write_owner(data_dir: Path, record: dict[str, Any]) -> None:
    partial = data_dir / f"{OWNER_FILE}.partial"
    partial.write_text(json.dumps(record) + "\n")
    partial.replace(data_dir / OWNER_FILE)
    (data_dir / LEGACY_PID_FILE).unlink(missing_ok=True)


def _me() -> list[int]:
    return [os.getpid(), start_time(os.getpid())]


def _alive(identity: list[int]) -> bool:
    return alive(*identity)


def _terminate(pid: int, process: subprocess.Popen | None, grace: float) -> None:
    """SIGTERM to the engine's process group (its workers too), SIGKILL after `grace` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _running(pid, process) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _running(pid, process):
            os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if process is not None:
        process.wait()


def _running(pid: int, process: subprocess.Popen | None) -> bool:
    if process is not None:
        return process.poll() is None
    return start_time(pid) != 0 and "zombie" not in state(pid).lower()


def _port_for(data_dir: Path) -> int:
    """The port this data dir used last, if it is free or its engine still holds it; else a free one,
    remembered for next time."""
    remembered = data_dir / PORT_FILE
    if remembered.exists():
        port = int(remembered.read_text().strip() or 0)
        record = _read_owner(data_dir) or {}
        ours = bool(record.get("engine_pid")) and start_time(record["engine_pid"]) != 0
        if port and (_is_free(port) or ours):
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remembered.write_text(f"{port}\n")
    return port


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return port > 0
