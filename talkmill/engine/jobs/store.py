"""Persistent talks and their queue: SQLite in the data dir (WAL), one connection per thread.

A talk is a JSON document (the public talk object, as GET answers it) plus a few indexed columns the
queue works on. `job` holds what is ours and never shown (result file names). The methods are the
interface a PostgreSQL store would implement (`claim_next` maps to SELECT … FOR UPDATE SKIP LOCKED).
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Collection, Iterator

from talkmill.engine.errors import BadRequestError, NotFoundError, NotReadyError

MAX_ATTEMPTS = 3  # a talk whose worker died this many times ends as an error, not a crash loop
ACTIVE = ("created", "started")

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


class TalkStore:
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
        return _record(row) if row else None

    def list_page(self, limit: int, token: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; the token of the next page, or None on the last page."""
        before = _decode_token(token) if token else None
        rows = self._conn().execute(
            "SELECT seq, doc FROM talks WHERE (? IS NULL OR seq < ?) ORDER BY seq DESC LIMIT ?",
            (before, before, limit + 1),
        ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        next_token = _encode_token(rows[-1]["seq"]) if more else None
        return [json.loads(row["doc"]) for row in rows], next_token

    def delete(self, talk_id: str) -> TalkRecord:
        """Removes a finished talk; NotReadyError while it is created or started."""
        with self._transaction() as conn:
            row = conn.execute("SELECT * FROM talks WHERE id = ?", (talk_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"Talk {talk_id!r} not found.")
            if row["status"] in ACTIVE:
                raise NotReadyError(f"Talk {talk_id!r} is still {row['status']}.", {"status": row["status"]})
            conn.execute("DELETE FROM talks WHERE id = ?", (talk_id,))
        return _record(row)

    def count_active(self) -> int:
        row = self._conn().execute("SELECT COUNT(*) FROM talks WHERE status IN (?, ?)", ACTIVE).fetchone()
        return row[0]

    # -- queue ----------------------------------------------------------------------------------
    def claim_next(self, worker_id: str) -> TalkRecord | None:
        """Atomically moves the oldest `created` talk to `started` for this worker."""
        with self._transaction() as conn:
            row = conn.execute("SELECT * FROM talks WHERE status = 'created' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            doc = json.loads(row["doc"])
            now = utc_now_iso()
            doc.update(status="started", started_at=now, modified_at=now)
            conn.execute(
                "UPDATE talks SET status = 'started', worker_id = ?, attempts = attempts + 1, doc = ? "
                "WHERE id = ?",
                (worker_id, json.dumps(doc), row["id"]),
            )
        record = _record(row)
        record.doc, record.worker_id, record.attempts = doc, worker_id, record.attempts + 1
        return record

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

    def _finish(
        self, talk_id: str, status: str, fields: dict[str, Any], job: dict[str, Any], worker_id: str | None
    ) -> bool:
        """False when the talk is no longer this worker's (re-queued after it was presumed dead)."""
        with self._transaction() as conn:
            row = conn.execute("SELECT * FROM talks WHERE id = ?", (talk_id,)).fetchone()
            if row is None or row["status"] in ("done", "error"):
                return False
            if worker_id is not None and (row["worker_id"] != worker_id or row["status"] != "started"):
                return False
            doc = {**json.loads(row["doc"]), **fields, "status": status, "modified_at": utc_now_iso()}
            merged_job = {**json.loads(row["job"]), **job}
            state = "pending" if row["webhook_state"] == "waiting" else row["webhook_state"]
            conn.execute(
                "UPDATE talks SET status = ?, doc = ?, job = ?, webhook_state = ?, webhook_next_at = 0 "
                "WHERE id = ?",
                (status, json.dumps(doc), json.dumps(merged_job), state, talk_id),
            )
        return True

    def requeue_orphans(self, live_workers: Collection[str] = (), crashed: bool = True) -> list[str]:
        """Talks `started` by a worker not in `live_workers` go back to `created` (ids returned).

        `crashed=False` (a clean shutdown interrupted them) does not count the attempt. After
        MAX_ATTEMPTS crashes a talk ends with UnknownError instead of crashing workers forever.
        """
        requeued = []
        with self._transaction() as conn:
            rows = conn.execute("SELECT * FROM talks WHERE status = 'started'").fetchall()
            for row in rows:
                if row["worker_id"] in live_workers:
                    continue
                attempts = row["attempts"] if crashed else max(row["attempts"] - 1, 0)
                if attempts >= MAX_ATTEMPTS:
                    self._fail_crashed(conn, row, attempts)
                    continue
                doc = {**json.loads(row["doc"]), "status": "created", "modified_at": utc_now_iso()}
                doc.pop("started_at", None)
                conn.execute(
                    "UPDATE talks SET status = 'created', worker_id = NULL, attempts = ?, doc = ? "
                    "WHERE id = ?",
                    (attempts, json.dumps(doc), row["id"]),
                )
                requeued.append(row["id"])
        return requeued

    @staticmethod
    def _fail_crashed(conn: sqlite3.Connection, row: sqlite3.Row, attempts: int) -> None:
        error = {"kind": "UnknownError", "description": f"rendering crashed {attempts} times"}
        doc = {**json.loads(row["doc"]), "status": "error", "error": error, "modified_at": utc_now_iso()}
        state = "pending" if row["webhook_state"] == "waiting" else row["webhook_state"]
        conn.execute(
            "UPDATE talks SET status = 'error', attempts = ?, doc = ?, webhook_state = ? WHERE id = ?",
            (attempts, json.dumps(doc), state, row["id"]),
        )

    # -- webhooks -------------------------------------------------------------------------------
    def pending_webhooks(self, now: float | None = None, limit: int = 50) -> list[TalkRecord]:
        """Ended talks whose webhook is due (next attempt time reached)."""
        now = time.time() if now is None else now
        rows = self._conn().execute(
            "SELECT * FROM talks WHERE webhook_state = 'pending' AND webhook_next_at <= ? "
            "ORDER BY seq LIMIT ?",
            (now, limit),
        ).fetchall()
        return [_record(row) for row in rows]

    def mark_webhook(
        self,
        talk_id: str,
        delivered: bool,
        attempts: int,
        last_error: str | None = None,
        next_at: float | None = None,
    ) -> None:
        """Records a delivery attempt. Not delivered with `next_at`: retry then; without: give up."""
        state = "delivered" if delivered else ("pending" if next_at is not None else "failed")
        with self._transaction() as conn:
            conn.execute(
                "UPDATE talks SET webhook_state = ?, webhook_attempts = ?, webhook_last_error = ?, "
                "webhook_next_at = ? WHERE id = ?",
                (state, attempts, last_error, next_at or 0, talk_id),
            )

    def webhook_state(self, talk_id: str) -> str | None:
        row = self._conn().execute("SELECT webhook_state FROM talks WHERE id = ?", (talk_id,)).fetchone()
        return row[0] if row else None


def _record(row: sqlite3.Row) -> TalkRecord:
    return TalkRecord(
        doc=json.loads(row["doc"]),
        job=json.loads(row["job"]),
        attempts=row["attempts"],
        worker_id=row["worker_id"],
        webhook_attempts=row["webhook_attempts"],
    )


def _encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, seq = text.split(":", 1)
        if prefix != "seq":
            raise ValueError(text)
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError) as e:
        raise BadRequestError("Invalid paging token.", {"field": "token"}) from e
