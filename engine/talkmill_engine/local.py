"""The embedded engine: `talkmill engine serve` started in the background on 127.0.0.1 for a run.

Its data dir persists (default ./.talkmill/engine), so a re-run finds talks still in flight, and it
keeps the port it used last (stored beside the data): a finished talk's result_url names that port.
The key and webhook secret are read or generated in the data dir, as the engine itself would. An engine
left running on that port by a run that was killed is adopted (and stopped at the end), never doubled.

It reaches public addresses only for inputs (the pipeline uploads local portraits through POST /images,
so it needs no private ones, and a CSV or a dropped file must not make it fetch internal addresses), and
loopback only for webhooks: the run's own receiver listens on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from talkmill_engine.settings import EngineSettings, prepare

DEFAULT_DATA_DIR = Path(".talkmill/engine")
PORT_FILE = "local_port"
PID_FILE = "local_pid"
START_TIMEOUT = 120.0  # the workers load their models before /health counts them
LOOPBACK = "127.0.0.0/8,::1/128"
URL_POLICY_ENV = {  # set whatever the caller's environment says: the embedded engine's policy is fixed
    "TALKMILL_ENGINE_ALLOWED_INPUT_NETWORKS": "",
    "TALKMILL_ENGINE_ALLOWED_WEBHOOK_NETWORKS": LOOPBACK,
    "TALKMILL_ENGINE_ALLOW_PRIVATE_URLS": "0",
}


class LocalEngine:
    def __init__(self, data_dir: Path = DEFAULT_DATA_DIR, workers: int | None = None) -> None:
        # allow_private_urls: this engine's URL policy is fixed (URL_POLICY_ENV); no deprecation warning
        settings, _ = prepare(EngineSettings(data_dir=data_dir, allow_private_urls=False))
        self.data_dir = data_dir
        self.key = settings.key_values()[0]
        self.webhook_secret = settings.webhook_secret.get_secret_value()
        self.workers = workers if workers is not None else settings.workers
        self.port = _port_for(data_dir)
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None
        self._pid: int | None = None

    def start(self) -> "LocalEngine":
        if self._adopt():
            return self
        env = {
            **os.environ,
            "TALKMILL_ENGINE_KEYS": self.key,
            "TALKMILL_ENGINE_WEBHOOK_SECRET": self.webhook_secret,
            **URL_POLICY_ENV,
        }
        command = [sys.executable, "-m", "talkmill_engine", "serve", "--port", str(self.port),
                   "--data-dir", str(self.data_dir), "--workers", str(self.workers), "--log-level", "warning"]
        log = open(self.data_dir / "engine.log", "ab")  # noqa: SIM115 (the child keeps it open)
        self._process = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
        self._pid = self._process.pid
        (self.data_dir / PID_FILE).write_text(f"{self._pid}\n")
        self._wait_healthy()
        return self

    def stop(self) -> None:
        """SIGTERM: the server stops its workers and re-queues their talks; SIGKILL if it hangs."""
        if self._pid is None:
            return
        try:
            os.killpg(self._pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while _alive(self._pid, self._process) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(self._pid, self._process):
                os.killpg(self._pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        (self.data_dir / PID_FILE).unlink(missing_ok=True)
        self._pid = None

    def _adopt(self) -> bool:
        """Take over an engine of this data dir still serving on its port (its run was killed)."""
        pid_file = self.data_dir / PID_FILE
        if _is_free(self.port) or not pid_file.exists():
            return False
        try:
            healthy = httpx.get(f"{self.url}/health", timeout=2).json().get("status") == "ok"
            authorized = httpx.get(f"{self.url}/talks?limit=1", timeout=5,
                                   headers={"Authorization": f"Bearer {self.key}"}).status_code == 200
        except (httpx.HTTPError, ValueError):
            return False
        if healthy and authorized:
            self._pid = int(pid_file.read_text().strip())
        return self._pid is not None

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
        self.stop()
        raise TimeoutError(f"the local engine did not become healthy in {START_TIMEOUT:.0f} s ({self.data_dir})")

    def __enter__(self) -> "LocalEngine":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port_for(data_dir: Path) -> int:
    """The port this data dir used last, if it is free or our engine still holds it; else a free one,
    remembered for next time."""
    remembered, pid_file = data_dir / PORT_FILE, data_dir / PID_FILE
    if remembered.exists():
        port = int(remembered.read_text().strip() or 0)
        ours = pid_file.exists() and _alive(int(pid_file.read_text().strip() or 0), None)
        if port and (_is_free(port) or ours):
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remembered.write_text(f"{port}\n")
    return port


def _alive(pid: int, process: subprocess.Popen | None) -> bool:
    if process is not None:
        return process.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return port > 0
