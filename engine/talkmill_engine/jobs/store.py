"""Persistent talks and their queue: the `TalkStore` interface and its SQLite default (data dir, WAL).

A talk is a JSON document (the public talk object, as GET answers it) plus a few indexed columns the
queue works on. `job` holds what is ours and never shown (result file names). PostgreSQL, for engine
replicas sharing one queue, is in pg_store.py; stores.open_talk_store picks one from the settings.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Collection, Iterator

from talkmill_engine.errors import BadRequestError, NotFoundError, NotReadyError

MAX_ATTEMPTS = 3  # a talk whose worker died this many times ends as an error, not a crash loop
ACTIVE = ("created", "started")
LEASE_SECONDS = 30.0  # a claimed talk is its worker's while the worker renews this lease
WEBHOOK_LEASE_SECONDS = 180.0  # longer than one delivery round (5 tries over ~70 s + timeouts)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS talks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    worker_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    webhook_state TEXT NOT NULL DEFAULT 'none',  -- none | waiting | pending | delivered | failed
    webhook_attempts INTEGER NOT NULL DEFAULT 0,
    webhook_next_at REAL NOT NULL DEFAULT 0,
    webhook_last_error TEXT,
    doc TEXT NOT NULL,
    job TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS talks_status ON talks (status, seq);
CREATE INDEX IF NOT EXISTS talks_webhook ON talks (webhook_state, webhook_next_at);
"""


def utc_now_iso() -> str:
    """ISO-8601 with milliseconds and Z, as D-ID writes its timestamps."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class TalkRecord:
    doc: dict[str, Any]  # the public talk
    job: dict[str, Any]  # ours: result files, never shown
    attempts: int = 0
    worker_id: str | None = None
    webhook_attempts: int = 0

    @property
    def id(self) -> str:
        return self.doc["id"]


class TalkStore(ABC):
    """What the engine needs of a talk store. Claims are exclusive; `finish_*` are fenced by worker id.

    `TalkStore(path)` opens the SQLite default, as it did before there was a second backend.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> TalkStore:
        return super().__new__(SqliteTalkStore if cls is TalkStore else cls)

    @abstractmethod
    def create(self, doc: dict[str, Any], job: dict[str, Any] | None = None) -> None: ...
    @abstractmethod
    def get(self, talk_id: str) -> TalkRecord | None: ...
    @abstractmethod
    def list_page(self, limit: int, token: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; the token of the next page, or None on the last page."""
    @abstractmethod
    def delete(self, talk_id: str) -> TalkRecord:
        """Removes a finished talk; NotFoundError, or NotReadyError while it is created or started."""
    @abstractmethod
    def count_active(self) -> int: ...

    @abstractmethod
    def claim_next(self, worker_id: str, lease_seconds: float = LEASE_SECONDS) -> TalkRecord | None:
        """Atomically moves the oldest `created` talk to `started` for this worker (attempts + 1)."""
    @abstractmethod
    def renew_lease(self, talk_id: str, worker_id: str, lease_seconds: float = LEASE_SECONDS) -> bool:
        """Extends the worker's claim; False when the talk is no longer this worker's."""
    @abstractmethod
    def _finish(
        self, talk_id: str, status: str, fields: dict[str, Any], job: dict[str, Any], worker_id: str | None
    ) -> bool:
        """False when the talk is no longer this worker's (re-queued after it was presumed dead)."""

    def finish_done(
        self,
        talk_id: str,
        fields: dict[str, Any],
        job: dict[str, Any] | None = None,
        worker_id: str | None = None,
    ) -> bool:
        return self._finish(talk_id, "done", fields, job or {}, worker_id)

    def finish_error(self, talk_id: str, error: dict[str, Any], worker_id: str | None = None) -> bool:
        return self._finish(talk_id, "error", {"error": error}, {}, worker_id)

    @abstractmethod
    def requeue_workers(self, worker_ids: Collection[str], crashed: bool = True) -> list[str]:
        """The talks these (dead or stopped) workers had started go back to `created` (ids returned).

        `crashed=False` (a clean stop interrupted them) does not count the attempt. After MAX_ATTEMPTS
        crashes a talk ends with UnknownError instead of crashing workers forever.
        """
    @abstractmethod
    def requeue_expired(self) -> list[str]:
        """Re-queues (as crashed) `started` talks whose lease ran out: their worker or replica died."""
    @abstractmethod
    def recover_interrupted(self) -> list[str]:
        """At start-up, before this engine's workers run: re-queues the talks a crash left `started`."""

    @abstractmethod
    def claim_webhooks(
        self, limit: int = 50, lease_seconds: float = WEBHOOK_LEASE_SECONDS
    ) -> list[TalkRecord]:
        """Ended talks whose webhook is due, for this engine to deliver (see mark_webhook)."""
    @abstractmethod
    def mark_webhook(
        self, talk_id: str, delivered: bool, attempts: int, last_error: str | None = None,
        next_at: float | None = None,
    ) -> None:
        """Records a delivery attempt. Not delivered with `next_at`: retry then; without: give up."""
    @abstractmethod
    def webhook_state(self, talk_id: str) -> str | None: ...
    @abstractmethod
    def close(self) -> None: ...


# -- the talk document's transitions, shared by the backends ----------------------------------------


def started_doc(doc: dict[str, Any]) -> dict[str, Any]:
    now = utc_now_iso()
    return {**doc, "status": "started", "started_at": now, "modified_at": now}


def ended_doc(doc: dict[str, Any], status: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {**doc, **fields, "status": status, "modified_at": utc_now_iso()}


def requeued_doc(doc: dict[str, Any]) -> dict[str, Any]:
    doc = {**doc, "status": "created", "modified_at": utc_now_iso()}
    doc.pop("started_at", None)
    return doc


def crashed_doc(doc: dict[str, Any], attempts: int) -> dict[str, Any]:
    error = {"kind": "UnknownError", "description": f"rendering crashed {attempts} times"}
    return ended_doc(doc, "error", {"error": error})


def ended_webhook_state(state: str) -> str:
    """A webhook waits for its talk to end, then is due."""
    return "pending" if state == "waiting" else state


class SqliteTalkStore(TalkStore):
    """One engine's store: its supervisor sees its workers die, so no leases are kept here."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)  # executescript manages its own transaction

    # -- connection -----------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so read-then-write steps cannot interleave.
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- talks ----------------------------------------------------------------------------------
    def create(self, doc: dict[str, Any], job: dict[str, Any] | None = None) -> None:
        state = "waiting" if doc.get("webhook") else "none"
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO talks (id, status, created_at, webhook_state, doc, job) VALUES (?,?,?,?,?,?)",
                (doc["id"], doc["status"], doc["created_at"], state, json.dumps(doc), json.dumps(job or {})),
            )

    def get(self, talk_id: str) -> TalkRecord | None:
        row = self._conn().execute("SELECT * FROM talks WHERE id = ?", (talk_id,)).fetchone()
        return record_of(row) if row else None

    def list_page(self, limit: int, token: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        before = decode_token(token) if token else None
        rows = self._conn().execute(
            "SELECT seq, doc FROM talks WHERE (? IS NULL OR seq < ?) ORDER BY seq DESC LIMIT ?",
            (before, before, limit + 1),
        ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        next_token = encode_token(rows[-1]["seq"]) if more else None
        return [json.loads(row["doc"]) for row in rows], next_token

    def delete(self, talk_id: str) -> TalkRecord:
        with self._transaction() as conn:
            row = conn.execute("SELECT * FROM talks WHERE id = ?", (talk_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"Talk {talk_id!r} not found.")
            if row["status"] in ACTIVE:
                raise NotReadyError(f"Talk {talk_id!r} is still {row['status']}.", {"status": row["status"]})
            conn.execute("DELETE FROM talks WHERE id = ?", (talk_id,))
        return record_of(row)

    def count_active(self) -> int:
        row = self._conn().execute("SELECT COUNT(*) FROM talks WHERE status IN (?, ?)", ACTIVE).fetchone()
        return row[0]

    # -- queue ----------------------------------------------------------------------------------
    def claim_next(self, worker_id: str, lease_seconds: float = LEASE_SECONDS) -> TalkRecord | None:
        with self._transaction() as conn:  # the write lock makes the claim exclusive
            row = conn.execute("SELECT * FROM talks WHERE status = 'created' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            doc = started_doc(json.loads(row["doc"]))
            conn.execute(
                "UPDATE talks SET status = 'started', worker_id = ?, attempts = attempts + 1, doc = ? "
                "WHERE id = ?",
                (worker_id, json.dumps(doc), row["id"]),
            )
        record = record_of(row)
        record.doc, record.worker_id, record.attempts = doc, worker_id, record.attempts + 1
        return record

    def renew_lease(self, talk_id: str, worker_id: str, lease_seconds: float = LEASE_SECONDS) -> bool:
        row = self._conn().execute("SELECT status, worker_id FROM talks WHERE id = ?", (talk_id,)).fetchone()
        return row is not None and tuple(row) == ("started", worker_id)

    def _finish(
        self, talk_id: str, status: str, fields: dict[str, Any], job: dict[str, Any], worker_id: str | None
    ) -> bool:
        with self._transaction() as conn:
            row = conn.execute("SELECT * FROM talks WHERE id = ?", (talk_id,)).fetchone()
            if row is None or row["status"] in ("done", "error"):
                return False
            if worker_id is not None and (row["worker_id"] != worker_id or row["status"] != "started"):
                return False
            doc = ended_doc(json.loads(row["doc"]), status, fields)
            merged_job = {**json.loads(row["job"]), **job}
            conn.execute(
                "UPDATE talks SET status = ?, doc = ?, job = ?, webhook_state = ?, webhook_next_at = 0 "
                "WHERE id = ?",
                (status, json.dumps(doc), json.dumps(merged_job), ended_webhook_state(row["webhook_state"]),
                 talk_id),
            )
        return True

    def requeue_orphans(self, live_workers: Collection[str] = (), crashed: bool = True) -> list[str]:
        """Talks `started` by a worker not in `live_workers` go back to `created` (see requeue_workers)."""
        with self._transaction() as conn:
            rows = conn.execute("SELECT * FROM talks WHERE status = 'started'").fetchall()
            return self._requeue(conn, [row for row in rows if row["worker_id"] not in live_workers], crashed)

    def requeue_workers(self, worker_ids: Collection[str], crashed: bool = True) -> list[str]:
        with self._transaction() as conn:
            rows = conn.execute("SELECT * FROM talks WHERE status = 'started'").fetchall()
            return self._requeue(conn, [row for row in rows if row["worker_id"] in worker_ids], crashed)

    def requeue_expired(self) -> list[str]:
        return []  # no leases: one engine, whose supervisor re-queues the talks of workers that died

    def recover_interrupted(self) -> list[str]:
        return self.requeue_orphans(())  # one engine per database: no worker is alive yet

    @staticmethod
    def _requeue(conn: sqlite3.Connection, rows: list[sqlite3.Row], crashed: bool) -> list[str]:
        requeued = []
        for row in rows:
            attempts = row["attempts"] if crashed else max(row["attempts"] - 1, 0)
            doc = json.loads(row["doc"])
            if attempts >= MAX_ATTEMPTS:
                conn.execute(
                    "UPDATE talks SET status = 'error', attempts = ?, doc = ?, webhook_state = ? "
                    "WHERE id = ?",
                    (attempts, json.dumps(crashed_doc(doc, attempts)),
                     ended_webhook_state(row["webhook_state"]), row["id"]),
                )
                continue
            conn.execute(
                "UPDATE talks SET status = 'created', worker_id = NULL, attempts = ?, doc = ? WHERE id = ?",
                (attempts, json.dumps(requeued_doc(doc)), row["id"]),
            )
            requeued.append(row["id"])
        return requeued

    # -- webhooks -------------------------------------------------------------------------------
    def pending_webhooks(self, now: float | None = None, limit: int = 50) -> list[TalkRecord]:
        """Ended talks whose webhook is due (next attempt time reached)."""
        now = time.time() if now is None else now
        rows = self._conn().execute(
            "SELECT * FROM talks WHERE webhook_state = 'pending' AND webhook_next_at <= ? "
            "ORDER BY seq LIMIT ?",
            (now, limit),
        ).fetchall()
        return [record_of(row) for row in rows]

    def claim_webhooks(
        self, limit: int = 50, lease_seconds: float = WEBHOOK_LEASE_SECONDS
    ) -> list[TalkRecord]:
        # One engine: its dispatcher knows what it is delivering, and a restart delivers at once.
        return self.pending_webhooks(limit=limit)

    def mark_webhook(
        self,
        talk_id: str,
        delivered: bool,
        attempts: int,
        last_error: str | None = None,
        next_at: float | None = None,
    ) -> None:
        state = webhook_state_after(delivered, next_at)
        with self._transaction() as conn:
            conn.execute(
                "UPDATE talks SET webhook_state = ?, webhook_attempts = ?, webhook_last_error = ?, "
                "webhook_next_at = ? WHERE id = ?",
                (state, attempts, last_error, next_at or 0, talk_id),
            )

    def webhook_state(self, talk_id: str) -> str | None:
        row = self._conn().execute("SELECT webhook_state FROM talks WHERE id = ?", (talk_id,)).fetchone()
        return row[0] if row else None


def webhook_state_after(delivered: bool, next_at: float | None) -> str:
    """A delivery round's outcome: delivered, pending (another round is due at next_at) or failed."""
    return "delivered" if delivered else ("pending" if next_at is not None else "failed")


def record_of(row: Any) -> TalkRecord:  # a sqlite3.Row or a psycopg dict row
    return TalkRecord(
        doc=json.loads(row["doc"]),
        job=json.loads(row["job"]),
        attempts=row["attempts"],
        worker_id=row["worker_id"],
        webhook_attempts=row["webhook_attempts"],
    )


MAX_SEQ = 2**63  # SQLite's and PostgreSQL's BIGINT: a larger number in a token is not ours


def encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def decode_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, seq = text.split(":", 1)
        if prefix != "seq" or not seq.isascii() or not seq.isdigit() or int(seq) >= MAX_SEQ:
            raise ValueError(text)
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError) as e:
        raise BadRequestError("Invalid paging token.", {"field": "token"}) from e
