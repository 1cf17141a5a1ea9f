"""A bounded pool of worker processes (rendering is CPU-bound: one per core by default).

Each worker loads the models once, then loops: claim the oldest `created` talk → render → finish,
renewing the talk's lease meanwhile. The pool, in the server process, restarts a worker that died and
puts its talk back in the queue, and re-queues talks whose lease ran out (another replica died).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import secrets
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from talkmill_engine.errors import EngineError, UnknownError, from_violation
from talkmill_engine.fetch import FetchPolicy
from talkmill_engine.jobs.store import LEASE_SECONDS, TalkRecord, TalkStore
from talkmill_engine.jobs.stores import open_store
from talkmill_engine.results import Results
from talks_contract.errors import ContractViolation

log = logging.getLogger("talkmill_engine.workers")

POLL_SECONDS = 0.2  # idle workers look at the queue this often
STOP_GRACE_SECONDS = 5.0
_CTX = multiprocessing.get_context("spawn")  # fork would copy the server's threads and sockets


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs, picklable: no API keys, no open handles."""

    db_path: Path
    results: Results  # where results go: the data dir, or S3 (talkmill_engine.results)
    policy: FetchPolicy
    parent_pid: int
    database_url: str | None = None  # PostgreSQL (replicas); None: SQLite at db_path
    lease_seconds: float = LEASE_SECONDS


def worker_main(worker_id: str, spec: WorkerSpec, stop, ready) -> None:  # noqa: ANN001 (shared c_bools)
    # Ctrl-C reaches the whole process group: the server decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {worker_id} %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from talkmill_engine.jobs.work import load_context

    store = open_store(spec.database_url, spec.db_path)
    started = time.monotonic()
    ctx = load_context(spec.results, spec.policy)
    ready.value = True  # /health counts this worker from now on
    log.info("models loaded in %.1f s", time.monotonic() - started)
    while not stop.value and os.getppid() == spec.parent_pid:  # orphaned: the server is gone
        record = store.claim_next(worker_id, spec.lease_seconds)
        if record is None:
            time.sleep(POLL_SECONDS)
            continue
        with _heartbeat(store, record.id, worker_id, spec.lease_seconds):
            run_one(store, record, ctx, worker_id)


@contextmanager
def _heartbeat(store: TalkStore, talk_id: str, worker_id: str, lease_seconds: float) -> Iterator[None]:
    """Renews the talk's lease every third of it, from a thread: rendering holds the main one."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(lease_seconds / 3):
            try:
                if not store.renew_lease(talk_id, worker_id, lease_seconds):
                    log.warning("talk %s was re-queued while rendering: its result will be refused", talk_id)
                    return
            except Exception:  # a database hiccup: try again next beat, the lease has slack
                log.exception("renewing the lease of talk %s failed", talk_id)

    thread = threading.Thread(target=beat, name=f"lease-{talk_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def run_one(store: TalkStore, record: TalkRecord, ctx, worker_id: str) -> None:  # noqa: ANN001
    """Processes one claimed talk; never raises: every failure ends the talk with an error body."""
    from talkmill_engine.jobs.work import process_talk

    started = time.monotonic()
    try:
        fields = process_talk(record, ctx)
    except (EngineError, ContractViolation) as e:
        error = from_violation(e) if isinstance(e, ContractViolation) else e
        log.info("talk %s: %s: %s", record.id, error.kind, error.description)
        store.finish_error(record.id, error.to_body(), worker_id=worker_id)
    except Exception as e:  # a bug must end one talk, not the worker
        log.error("talk %s crashed:\n%s", record.id, traceback.format_exc())
        error = UnknownError(f"Rendering failed: {type(e).__name__}: {str(e)[:200]}")
        store.finish_error(record.id, error.to_body(), worker_id=worker_id)
    else:
        store.finish_done(record.id, fields, worker_id=worker_id)
        log.info("talk %s done in %.1f s", record.id, time.monotonic() - started)


@dataclass
class _Slot:
    worker_id: str
    process: BaseProcess
    ready: Any  # a shared c_bool its worker sets once its models are loaded
    started_at: float
    restarts: int = 0
    next_start: float = 0.0

    @property
    def serving(self) -> bool:
        return bool(self.ready.value) and self.process.is_alive()


@dataclass
class WorkerPool:
    size: int
    spec: WorkerSpec
    store: TalkStore
    slots: list[_Slot] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A lock-free flag, not an mp.Event: a worker killed while waiting on an Event's condition
        # leaves it unable to notify, and set() would then block forever.
        self._stop = _CTX.RawValue(ctypes.c_bool, False)
        self._boot = secrets.token_hex(3)  # worker ids differ between server runs

    def start(self) -> None:
        self.slots = [self._spawn(index) for index in range(self.size)]

    def _spawn(self, index: int, restarts: int = 0) -> _Slot:
        worker_id = f"w{index}-{self._boot}-{restarts}"
        ready = _CTX.RawValue(ctypes.c_bool, False)
        process = _CTX.Process(
            target=worker_main, args=(worker_id, self.spec, self._stop, ready), name=worker_id, daemon=True
        )
        process.start()
        return _Slot(worker_id, process, ready, time.monotonic(), restarts)

    def alive_count(self) -> int:
        return sum(slot.process.is_alive() for slot in self.slots)

    def ready_count(self) -> int:
        """Workers alive with their models loaded: the ones that render a talk without a cold start."""
        return sum(slot.serving for slot in self.slots)

    def supervise(self) -> None:
        """Restarts dead workers (backing off if they die young) and re-queues their talks, and the
        talks whose lease ran out (their worker or replica died: a replica sees no other's workers)."""
        if self._stop.value:
            return
        expired = self.store.requeue_expired()
        if expired:
            log.warning("re-queued talk(s) whose lease expired: %s", ", ".join(expired))
        dead = [index for index, slot in enumerate(self.slots) if not slot.process.is_alive()]
        if not dead:
            return
        requeued = self.store.requeue_workers([self.slots[index].worker_id for index in dead])
        now = time.monotonic()
        for index in dead:
            slot = self.slots[index]
            if slot.next_start == 0.0:
                exitcode = slot.process.exitcode
                log.warning("worker %s died (exit %s); re-queued %s", slot.worker_id, exitcode, requeued)
                lived = now - slot.started_at
                slot.next_start = now + (0 if lived > 60 else min(30.0, 2.0 ** min(slot.restarts, 5)))
            if now >= slot.next_start:
                self.slots[index] = self._spawn(index, slot.restarts + 1)

    def stop(self) -> None:
        """Asks workers to stop after their current talk; kills the ones still busy after a grace period.

        Their talks go back to the queue without counting as a crash.
        """
        self._stop.value = True
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for slot in self.slots:
            slot.process.join(max(0.0, deadline - time.monotonic()))
        for slot in self.slots:
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join(2)
        self.store.requeue_workers([slot.worker_id for slot in self.slots], crashed=False)
