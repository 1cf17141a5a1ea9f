"""The embedded engine: `talkmill engine serve` started in the background on 127.0.0.1 for a run.

Its data dir persists (default ./.talkmill/engine), so a re-run finds talks still in flight, and it
keeps the port it used last (stored beside the data): a finished talk's result_url names that port.
The key and webhook secret are read or generated in the data dir, as the engine itself would.
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

from talkmill.engine.settings import EngineSettings, prepare

DEFAULT_DATA_DIR = Path(".talkmill/engine")
PORT_FILE = "local_port"
START_TIMEOUT = 120.0  # the workers load their models before /health counts them


class LocalEngine:
    def __init__(self, data_dir: Path = DEFAULT_DATA_DIR, workers: int | None = None) -> None:
        settings, _ = prepare(EngineSettings(data_dir=data_dir))
        self.data_dir = data_dir
        self.key = settings.key_values()[0]
        self.webhook_secret = settings.webhook_secret.get_secret_value()
        self.workers = workers if workers is not None else settings.workers
        self.port = _port_for(data_dir)
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None

    def start(self) -> "LocalEngine":
        env = {
            **os.environ,
            "TALKMILL_ENGINE_KEYS": self.key,
            "TALKMILL_ENGINE_WEBHOOK_SECRET": self.webhook_secret,
            # Loopback only: webhooks go to the pipeline's receiver on 127.0.0.1.
            "TALKMILL_ENGINE_ALLOW_PRIVATE_URLS": "1",
        }
        command = [sys.executable, "-m", "talkmill", "engine", "serve", "--port", str(self.port),
                   "--data-dir", str(self.data_dir), "--workers", str(self.workers), "--log-level", "warning"]
        log = open(self.data_dir / "engine.log", "ab")  # noqa: SIM115 (the child keeps it open)
        self._process = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
        self._wait_healthy()
        return self

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        os.killpg(self._process.pid, signal.SIGTERM)  # the server stops its workers and re-queues their talks
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(5)

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
    """The port this data dir used last, if it is free; else a free one, remembered for next time."""
    remembered = data_dir / PORT_FILE
    if remembered.exists() and _is_free(port := int(remembered.read_text().strip() or 0)):
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
