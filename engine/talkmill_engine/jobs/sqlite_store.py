"""The talk store on SQLite (the data dir, WAL): one engine, its server and its worker processes.

Every step that reads then writes runs in a `BEGIN IMMEDIATE` transaction: SQLite's one write lock,
held across processes, makes claims exclusive and admission (count, then insert) one step.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from talkmill_engine.errors import NotFoundError, NotReadyError
from talkmill_engine.jobs.store import (
    ACTIVE,
    LEASE_SECONDS,
    LEGACY_OWNER,
    MAX_ATTEMPTS,
    WEBHOOK_LEASE_SECONDS,
    QueueFull,
    TalkRecord,
    TalkStore,
    crashed_doc,
    decode_token,
    encode_token,
    ended_doc,
    ended_webhook_state,
    owner_of,
    record_of,
    requeued_doc,
    started_doc,
    webhook_state_after,
)

# The first schema; MIGRATIONS bring it (a new database, or one an older engine made) up to date.
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
# PRAGMA user_version n → n + 1. Existing talks belong to whoever created them (their created_by).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        f"ALTER TABLE talks ADD COLUMN owner TEXT NOT NULL DEFAULT '{LEGACY_OWNER}'",
        f"UPDATE talks SET owner = COALESCE(json_extract(doc, '$.created_by'), '{LEGACY_OWNER}')",
        "CREATE INDEX talks_owner ON talks (owner, seq)",
        "ALTER TABLE talks ADD COLUMN ended_at REAL",  # unix time: the drain rate behind Retry-After
        "CREATE INDEX talks_ended ON talks (ended_at)",
    ),
)


class SqliteTalkStore(TalkStore):
    """One engine's store: its supervisor sees its workers die, so no leases are kept here."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)  # executescript manages its own transaction
        self._migrate()

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

    def _migrate(self) -> None:
        with self._transaction() as conn:  # the server and its workers open the store together
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {max(version, len(MIGRATIONS))}")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- talks ----------------------------------------------------------------------------------
    def create(
        self, doc: dict[str, Any], job: dict[str, Any] | None = None, max_active: int | None = None
    ) -> None:
        state = "waiting" if doc.get("webhook") else "none"
        with self._transaction() as conn:
            if max_active is not None and (active := self._count_active(conn)) >= max_active:
                raise QueueFull(active)
            conn.execute(
                "INSERT INTO talks (id, owner, status, created_at, webhook_state, doc, job) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (doc["id"], owner_of(doc), doc["status"], doc["created_at"], state, json.dumps(doc),
                 json.dumps(job or {})),
            )  # fmt: skip

    def get(self, talk_id: str, owner: str | None = None) -> TalkRecord | None:
        row = self._conn().execute(
            "SELECT * FROM talks WHERE id = ? AND (? IS NULL OR owner = ?)", (talk_id, owner, owner)
        ).fetchone()
        return record_of(row) if row else None

    def list_page(
        self, limit: int, token: str | None = None, owner: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        before = decode_token(token) if token else None
        where, params = ["(? IS NULL OR seq < ?)"], [before, before]
        if owner is not None:  # a condition of its own, so the (owner, seq) index serves it
            where.append("owner = ?")
            params.append(owner)
        rows = self._conn().execute(
            f"SELECT seq, doc FROM talks WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
            (*params, limit + 1),
        ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        next_token = encode_token(rows[-1]["seq"]) if more else None
        return [json.loads(row["doc"]) for row in rows], next_token

    def delete(self, talk_id: str, owner: str | None = None) -> TalkRecord:
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT * FROM talks WHERE id = ? AND (? IS NULL OR owner = ?)", (talk_id, owner, owner)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"Talk {talk_id!r} not found.")
            if row["status"] in ACTIVE:
                raise NotReadyError(f"Talk {talk_id!r} is still {row['status']}.", {"status": row["status"]})
            conn.execute("DELETE FROM talks WHERE id = ?", (talk_id,))
        return record_of(row)

    def count_active(self) -> int:
        return self._count_active(self._conn())

    @staticmethod
    def _count_active(conn: sqlite3.Connection) -> int:
        return conn.execute("SELECT COUNT(*) FROM talks WHERE status IN (?, ?)", ACTIVE).fetchone()[0]

    def recent_completions(self, window_seconds: float) -> tuple[int, float]:
        now = time.time()
        count, first = self._conn().execute(
            "SELECT COUNT(*), MIN(ended_at) FROM talks WHERE ended_at >= ?", (now - window_seconds,)
        ).fetchone()
        return count, (now - first if first is not None else 0.0)

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
                "UPDATE talks SET status = ?, doc = ?, job = ?, webhook_state = ?, webhook_next_at = 0, "
                "ended_at = ? WHERE id = ?",
                (status, json.dumps(doc), json.dumps(merged_job), ended_webhook_state(row["webhook_state"]),
                 time.time(), talk_id),
            )  # fmt: skip
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
                    "UPDATE talks SET status = 'error', attempts = ?, doc = ?, webhook_state = ?, "
                    "ended_at = ? WHERE id = ?",
                    (attempts, json.dumps(crashed_doc(doc, attempts)),
                     ended_webhook_state(row["webhook_state"]), time.time(), row["id"]),
                )  # fmt: skip
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
        # One engine: its dispatcher knows what it is delivering, so no lease hides a claim.
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
