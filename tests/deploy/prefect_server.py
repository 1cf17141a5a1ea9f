"""A real Prefect server for tests: `prefect server start` on 127.0.0.1, its home and database in a temp
dir, and helpers to wait for flow runs through its API."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

PREFECT = Path(sys.executable).parent / "prefect"
T = TypeVar("T")


@dataclass(frozen=True)
class PrefectServer:
    url: str  # the UI's root, http://127.0.0.1:<port>
    home: Path

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a process that talks to this server (and never starts one of its own)."""
        return {**os.environ, "PREFECT_HOME": str(self.home), "PREFECT_API_URL": self.api_url,
                "PREFECT_UI_API_URL": self.api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_LOGGING_LEVEL": "WARNING", **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], T | None], seconds: float, what: str, interval: float = 0.3) -> T:
    """The first truthy value of `check()` within `seconds`; AssertionError naming `what` otherwise."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {seconds:g} s")


@contextmanager
def running_prefect_server(home: Path, timeout: float = 90) -> Iterator[PrefectServer]:
    port = free_port()
    server = PrefectServer(f"http://127.0.0.1:{port}", home)
    log = home / "server.log"
    command = [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=server.env(), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        _wait_healthy(server, process, log, timeout)
        yield server
    finally:
        stop(process)


def _wait_healthy(server: PrefectServer, process: subprocess.Popen, log: Path, timeout: float) -> None:
    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"prefect server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{server.api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, timeout, f"prefect server healthy (log: {log})")


def stop(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM to the process group (uvicorn, run subprocesses), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    import signal

    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def api(server: PrefectServer, method: str, path: str, **body: Any) -> Any:
    """One call to the server's REST API; its JSON."""
    response = httpx.request(method, f"{server.api_url}{path}", json=body or None, timeout=10)
    response.raise_for_status()
    return response.json() if response.content else None


def flow_runs(server: PrefectServer, deployment_name: str) -> list[dict[str, Any]]:
    """Every flow run of the deployment "<flow>/<deployment>"."""
    deployment = api(server, "GET", f"/deployments/name/{deployment_name}")
    return api(server, "POST", "/flow_runs/filter",
               deployments={"id": {"any_": [deployment["id"]]}}, limit=200)


def wait_final(server: PrefectServer, flow_run_id: str, seconds: float) -> dict[str, Any]:
    """The flow run once its state is final (completed, failed, crashed, cancelled)."""
    final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

    def done() -> dict[str, Any] | None:
        run = api(server, "GET", f"/flow_runs/{flow_run_id}")
        return run if run["state_type"] in final else None

    return wait_for(done, seconds, f"flow run {flow_run_id} finished", interval=0.5)
