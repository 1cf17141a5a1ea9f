"""A Prefect server of talkmill's own on this machine: its home (database, profiles) under .talkmill/, the
UI wired to the address it listens on, a port already taken named with the process holding it.

Nothing here imports Prefect: its settings are read from the environment when Prefect is imported, so
PREFECT_HOME must be set before that (cli.py calls use_home first).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx

from talks_contract import processes

DATA_DIR = Path(".talkmill")  # of the current directory, as the engine's data dir
HOME_NAME = "prefect"  # PREFECT_HOME: .talkmill/prefect
START_TIMEOUT = 120.0  # a first start migrates a fresh database; 2 loaded cores take their time
ANY_ADDRESS = {"0.0.0.0", "::", ""}


class PortInUseError(RuntimeError):
    pass


def home(data_dir: Path = DATA_DIR) -> Path:
    return (data_dir / HOME_NAME).resolve()


def use_home(path: Path) -> None:
    """Prefect's home for this process and its children (before Prefect is imported)."""
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(path)


def configured_api_url() -> str | None:
    """A Prefect API the user named: $PREFECT_API_URL, or the active profile's (read as Prefect would,
    from $PREFECT_HOME or ~/.prefect, without importing Prefect)."""
    if url := os.environ.get("PREFECT_API_URL"):
        return url
    profiles = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect") / "profiles.toml"
    try:
        document = tomllib.loads(profiles.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or document.get("active", "ephemeral")
    return document.get("profiles", {}).get(active, {}).get("PREFECT_API_URL") or None


def ui_api_url(host: str, port: int) -> str:
    """The API address the UI's browser calls: the one the server listens on (a wildcard address is
    reached by this machine's name)."""
    reachable = socket.gethostname() if host in ANY_ADDRESS else host
    if ":" in reachable:
        reachable = f"[{reachable}]"
    return f"http://{reachable}:{port}/api"


def start_server(host: str, port: int, log: Path, die_with_parent: bool) -> subprocess.Popen:
    """`prefect server start` in its own session (Ctrl-C in our terminal is ours to handle), its UI wired
    to host:port. With `die_with_parent`, the kernel kills it when this process dies, even by SIGKILL."""
    check_port_free(host, port)
    env = {**os.environ,
           "PREFECT_SERVER_ANALYTICS_ENABLED": os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
           "PREFECT_SERVER_API_HOST": host, "PREFECT_SERVER_API_PORT": str(port),
           "PREFECT_UI_API_URL": os.environ.get("PREFECT_UI_API_URL") or ui_api_url(host, port)}
    env.pop("PREFECT_API_URL", None)  # the UI would follow it: the server serves its own address
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    on_start = processes.die_with_parent(signal.SIGKILL) if die_with_parent else None  # SQLite survives it
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=on_start)


def wait_healthy(api_url: str, process: subprocess.Popen, log: Path, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise RuntimeError(f"the Prefect server exited with {process.returncode} (log {log}):\n{tail}")
        if is_healthy(api_url):
            return
        time.sleep(0.3)
    stop_group(process, grace=5)
    raise TimeoutError(f"the Prefect server did not answer at {api_url} within {timeout:.0f} s (log {log})")


def is_healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stop_group(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the process's group, SIGKILL after `grace` seconds."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


# -- a port already taken -----------------------------------------------------------------------------------


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            holder = port_holder(port) or "a process this user cannot see"
            raise PortInUseError(f"port {port} on {host} is in use by {holder}: stop it, or pick another "
                                 f"--port ({e.strerror})") from e


def port_holder(port: int) -> str | None:
    """'pid N (command line)' of a process listening on the TCP port, from /proc; None if not found."""
    inodes = _listening_inodes(port)
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            links = {os.readlink(fd) for fd in fd_dir.iterdir()}
        except OSError:  # another user's process, or gone
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            pid = fd_dir.parent.name
            return f"pid {pid} ({_command_line(pid)})"
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(fields[9])
    return inodes


def _command_line(pid: str) -> str:
    text = processes.command_line(int(pid)) or "?"
    return text if len(text) <= 120 else text[:117] + "..."


# -- the persistent server `talkmill run` uses ---------------------------------------------------------

RECORD = "server.json"  # {"pid", "started", "port", "role"}: the server running on this home, who started it
LOCK = "server.lock"


@dataclass(frozen=True)
class RunningServer:
    api_url: str
    pid: int
    role: str  # "run": started by `talkmill run`, detached; "serve": a live `talkmill serve`'s


def running_server(data_dir: Path = DATA_DIR) -> RunningServer | None:
    """This home's server (started by a run, or by serve) if it is alive and answers."""
    record = _read_record(home(data_dir))
    if record is None or not processes.alive(record["pid"], record["started"]):
        return None
    url = f"http://127.0.0.1:{record['port']}/api"
    return RunningServer(url, record["pid"], record["role"]) if is_healthy(url) else None


def ensure_server(data_dir: Path = DATA_DIR) -> str:
    """The API URL of this home's server, started once, detached (it outlives the run: the next run starts
    in seconds, and every run shows in one UI), and started again if it died."""
    path = home(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    with processes.locked(path / LOCK):
        if running := running_server(data_dir):
            return running.api_url
        port = _free_port()
        process = start_server("127.0.0.1", port, path / "server.log", die_with_parent=False)
        write_record(path, process.pid, port, role="run")
        wait_healthy(f"http://127.0.0.1:{port}/api", process, path / "server.log")
        return f"http://127.0.0.1:{port}/api"


def write_record(path: Path, pid: int, port: int, role: str) -> None:
    partial = path / f"{RECORD}.partial"
    record = {"pid": pid, "started": processes.start_time(pid), "port": port, "role": role}
    partial.write_text(json.dumps(record) + "\n")
    partial.replace(path / RECORD)


def forget_record(path: Path, pid: int) -> None:
    """Remove the record if it names `pid` (a server about to stop)."""
    record = _read_record(path)
    if record is not None and record["pid"] == pid:
        (path / RECORD).unlink(missing_ok=True)


def stop_server(data_dir: Path = DATA_DIR, grace: float = 10.0) -> bool:
    """Stop this home's server if it runs; whether one did."""
    path = home(data_dir)
    record = _read_record(path)
    (path / RECORD).unlink(missing_ok=True)
    if record is None or not processes.alive(record["pid"], record["started"]):
        return False
    os.killpg(record["pid"], signal.SIGTERM)
    deadline = time.monotonic() + grace
    while processes.alive(record["pid"], record["started"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    if processes.alive(record["pid"], record["started"]):
        os.killpg(record["pid"], signal.SIGKILL)
    return True


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads((path / RECORD).read_text())
        return {key: record[key] for key in ("pid", "started", "port", "role")}
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None




def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
