"""Local processes that outlive a call: who a pid really is, a lock between processes, dying with a parent.

Shared by the embedded engine (talkmill_engine.local) and the kept Prefect server (talkmill.local_prefect),
which both leave a record of a process for later ones to find. Linux only (/proc, prctl), standard library.
"""

from __future__ import annotations

import ctypes
import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PR_SET_PDEATHSIG = 1


def start_time(pid: int) -> int:
    """Start time in clock ticks after boot (/proc/<pid>/stat field 22): with the pid, an identity a later
    process with a recycled pid does not share. 0 when gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def alive(pid: int, started: int) -> bool:
    """Whether the process that started at `started` still runs (not a zombie awaiting its parent)."""
    return started != 0 and start_time(pid) == started and "zombie" not in state(pid)


def state(pid: int) -> str:
    """The State line of /proc/<pid>/status ("S (sleeping)", "Z (zombie)"), "" when gone."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split("\n", 1)[0].strip()
    except (OSError, IndexError):
        return ""


def command_line(pid: int) -> str | None:
    """The process's command line, its words joined by spaces; None when gone or not ours to read."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return " ".join(word.decode(errors="replace") for word in words if word)


def die_with_parent(signal_number: int) -> Callable[[], None]:
    """A Popen `preexec_fn`: the child gets `signal_number` when its parent dies (survives exec)."""

    def arrange() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0)

    return arrange


@contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """An exclusive flock on `lock_file` (created if missing) for the block: one process at a time."""
    with lock_file.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
