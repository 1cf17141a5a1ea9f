"""The talk store on PostgreSQL: engine replicas share one queue (TALKMILL_ENGINE_DATABASE_URL).

Claims lock the oldest `created` row with FOR UPDATE SKIP LOCKED, so two replicas never take the same
talk and never wait on each other. A replica cannot see another's workers, so a claim is a lease
(database clock): its worker renews it while rendering, and any replica re-queues a talk whose lease
ran out. Webhook deliveries are claimed the same way (their due time pushed past a delivery attempt).
Admission (count, then insert) holds an advisory lock, so replicas admitting together cannot overfill.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

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

POOL_SIZE = 8  # connections per process; FastAPI's thread pool waits for one rather than opening 40
_SCHEMA_LOCK = 7_405_301  # advisory lock ids: replicas starting together create the schema once,
_ADMISSION_LOCK = 7_405_302  # and admit one talk at a time (count, then insert)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS talks (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    worker_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_until TIMESTAMPTZ,
    webhook_state TEXT NOT NULL DEFAULT 'none',
    webhook_attempts INTEGER NOT NULL DEFAULT 0,
    webhook_next_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    webhook_last_error TEXT,
    doc TEXT NOT NULL,  -- text, not jsonb: GET answers the document byte for byte, keys in order
    job TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS talks_status ON talks (status, seq);
CREATE INDEX IF NOT EXISTS talks_webhook ON talks (webhook_state, webhook_next_at);
"""
# Run when `owner` is missing (a database an older engine made; or a new one, from _SCHEMA). Existing
# talks belong to whoever created them (their created_by).
_OWNERS_MIGRATION = f"""
ALTER TABLE talks ADD COLUMN owner TEXT;
UPDATE talks SET owner = COALESCE(doc::json ->> 'created_by', '{LEGACY_OWNER}');
ALTER TABLE talks ALTER COLUMN owner SET NOT NULL, ALTER COLUMN owner SET DEFAULT '{LEGACY_OWNER}';
ALTER TABLE talks ADD COLUMN ended_at DOUBLE PRECISION;  -- unix time: the drain rate behind Retry-After
CREATE INDEX talks_owner ON talks (owner, seq);
CREATE INDEX talks_ended ON talks (ended_at);
"""
_HAS_OWNER = (
    "SELECT 1 FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND table_name = 'talks' AND column_name = 'owner'"
)
_NOW = "extract(epoch FROM now())"
_LEASE = "now() + make_interval(secs => %s)"


class PgTalkStore(TalkStore):
    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        with self._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            cur.execute(_SCHEMA)
            if cur.execute(_HAS_OWNER).fetchone() is None:
                cur.execute(_OWNERS_MIGRATION)

    # -- connections ----------------------------------------------------------------------------
    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor]:
        """An autocommit cursor on a pooled connection; a broken connection is dropped, not reused."""
        if not self._slots.acquire(timeout=60):
            raise TimeoutError("no free database connection in 60 s")
        conn = None
        try:
            conn = self._take()
            with conn.cursor() as cur:
                yield cur
        finally:
            if conn is not None and not conn.closed and not conn.broken:
                self._idle.put(conn)
            elif conn is not None:
                conn.close()
            self._slots.release()

    def _take(self) -> psycopg.Connection:
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return psycopg.connect(self.url, autocommit=True, row_factory=dict_row, connect_timeout=10)
            if not conn.closed and not conn.broken:
                return conn

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor]:
        with self._cursor() as cur, cur.connection.transaction():
            yield cur

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()

    # -- talks ----------------------------------------------------------------------------------
    def create(
        self, doc: dict[str, Any], job: dict[str, Any] | None = None, max_active: int | None = None
    ) -> None:
        state = "waiting" if doc.get("webhook") else "none"
        with self._transaction() as cur:
            if max_active is not None:  # the lock orders admissions; each count sees the last insert
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_ADMISSION_LOCK,))
                if (active := self._count_active(cur)) >= max_active:
                    raise QueueFull(active)
            cur.execute(
                "INSERT INTO talks (id, owner, status, created_at, webhook_state, doc, job) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (doc["id"], owner_of(doc), doc["status"], doc["created_at"], state, json.dumps(doc),
                 json.dumps(job or {})),
            )  # fmt: skip

    def get(self, talk_id: str, owner: str | None = None) -> TalkRecord | None:
        with self._cursor() as cur:
            row = cur.execute(
                "SELECT * FROM talks WHERE id = %s AND (%s::text IS NULL OR owner = %s)",
                (talk_id, owner, owner),
            ).fetchone()
        return record_of(row) if row else None

    def list_page(
        self, limit: int, token: str | None = None, owner: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        before = decode_token(token) if token else None
        where, params = ["(%s::bigint IS NULL OR seq < %s)"], [before, before]
        if owner is not None:  # a condition of its own, so the (owner, seq) index serves it
            where.append("owner = %s")
            params.append(owner)
        with self._cursor() as cur:
            rows = cur.execute(
                f"SELECT seq, doc FROM talks WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT %s",
                (*params, limit + 1),
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return [json.loads(row["doc"]) for row in rows], encode_token(rows[-1]["seq"]) if more else None

    def delete(self, talk_id: str, owner: str | None = None) -> TalkRecord:
        with self._transaction() as cur:
            row = cur.execute(
                "SELECT * FROM talks WHERE id = %s AND (%s::text IS NULL OR owner = %s) FOR UPDATE",
                (talk_id, owner, owner),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"Talk {talk_id!r} not found.")
            if row["status"] in ACTIVE:
                raise NotReadyError(f"Talk {talk_id!r} is still {row['status']}.", {"status": row["status"]})
            cur.execute("DELETE FROM talks WHERE id = %s", (talk_id,))
        return record_of(row)

    def count_active(self) -> int:
        with self._cursor() as cur:
            return self._count_active(cur)

    @staticmethod
    def _count_active(cur: psycopg.Cursor) -> int:
        row = cur.execute("SELECT COUNT(*) AS n FROM talks WHERE status = ANY(%s)", (list(ACTIVE),))
        return row.fetchone()["n"]

    def recent_completions(self, window_seconds: float) -> tuple[int, float]:
        with self._cursor() as cur:  # the database's clock: the one ended_at was written with
            row = cur.execute(
                f"SELECT COUNT(*) AS n, {_NOW} - MIN(ended_at) AS age FROM talks "
                f"WHERE ended_at >= {_NOW} - %s",
                (window_seconds,),
            ).fetchone()
        return row["n"], float(row["age"] or 0.0)

    # -- queue ----------------------------------------------------------------------------------
    def claim_next(self, worker_id: str, lease_seconds: float = LEASE_SECONDS) -> TalkRecord | None:
        with self._transaction() as cur:
            row = cur.execute(
                "SELECT * FROM talks WHERE status = 'created' ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED"
            ).fetchone()
            if row is None:
                return None
            doc = started_doc(json.loads(row["doc"]))
            cur.execute(
                f"UPDATE talks SET status = 'started', worker_id = %s, attempts = attempts + 1, "
                f"lease_until = {_LEASE}, doc = %s WHERE seq = %s",
                (worker_id, lease_seconds, json.dumps(doc), row["seq"]),
            )
        record = record_of(row)
        record.doc, record.worker_id, record.attempts = doc, worker_id, record.attempts + 1
        return record

    def renew_lease(self, talk_id: str, worker_id: str, lease_seconds: float = LEASE_SECONDS) -> bool:
        with self._cursor() as cur:
            cur.execute(
                f"UPDATE talks SET lease_until = {_LEASE} "
                "WHERE id = %s AND status = 'started' AND worker_id = %s",
                (lease_seconds, talk_id, worker_id),
            )
            return cur.rowcount == 1

    def _finish(
        self, talk_id: str, status: str, fields: dict[str, Any], job: dict[str, Any], worker_id: str | None
    ) -> bool:
        with self._transaction() as cur:
            row = cur.execute("SELECT * FROM talks WHERE id = %s FOR UPDATE", (talk_id,)).fetchone()
            if row is None or row["status"] in ("done", "error"):
                return False
            if worker_id is not None and (row["worker_id"] != worker_id or row["status"] != "started"):
                return False
            doc = ended_doc(json.loads(row["doc"]), status, fields)
            cur.execute(
                "UPDATE talks SET status = %s, doc = %s, job = %s, webhook_state = %s, webhook_next_at = 0, "
                f"lease_until = NULL, ended_at = {_NOW} WHERE id = %s",
                (status, json.dumps(doc), json.dumps({**json.loads(row["job"]), **job}),
                 ended_webhook_state(row["webhook_state"]), talk_id),
            )  # fmt: skip
        return True

    def requeue_workers(self, worker_ids: Collection[str], crashed: bool = True) -> list[str]:
        where = "worker_id = ANY(%s)"
        return self._requeue(where, (list(worker_ids),), crashed)

    def requeue_expired(self) -> list[str]:
        return self._requeue("lease_until < now()", (), crashed=True)

    def recover_interrupted(self) -> list[str]:
        return self.requeue_expired()  # other replicas may be rendering: only expired leases are orphans

    def _requeue(self, where: str, params: tuple[Any, ...], crashed: bool) -> list[str]:
        requeued = []
        with self._transaction() as cur:
            rows = cur.execute(
                f"SELECT * FROM talks WHERE status = 'started' AND {where} "
                "ORDER BY seq FOR UPDATE SKIP LOCKED",
                params,
            ).fetchall()
            for row in rows:
                attempts = row["attempts"] if crashed else max(row["attempts"] - 1, 0)
                doc = json.loads(row["doc"])
                if attempts >= MAX_ATTEMPTS:
                    cur.execute(
                        "UPDATE talks SET status = 'error', attempts = %s, doc = %s, webhook_state = %s, "
                        f"lease_until = NULL, ended_at = {_NOW} WHERE seq = %s",
                        (attempts, json.dumps(crashed_doc(doc, attempts)),
                         ended_webhook_state(row["webhook_state"]), row["seq"]),
                    )  # fmt: skip
                    continue
                cur.execute(
                    "UPDATE talks SET status = 'created', worker_id = NULL, attempts = %s, doc = %s, "
                    "lease_until = NULL WHERE seq = %s",
                    (attempts, json.dumps(requeued_doc(doc)), row["seq"]),
                )
                requeued.append(row["id"])
        return requeued

    # -- webhooks -------------------------------------------------------------------------------
    def claim_webhooks(
        self, limit: int = 50, lease_seconds: float = WEBHOOK_LEASE_SECONDS
    ) -> list[TalkRecord]:
        # Pushing the due time past a delivery attempt hides the claim from other replicas; if this one
        # dies mid-delivery, the talk is due again when that time comes.
        with self._transaction() as cur:  # the database's clock, as for leases: replicas' clocks may differ
            rows = cur.execute(
                "SELECT * FROM talks WHERE webhook_state = 'pending' "
                f"AND webhook_next_at <= {_NOW} "
                "ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED",
                (limit,),
            ).fetchall()
            if rows:
                cur.execute(
                    f"UPDATE talks SET webhook_next_at = {_NOW} + %s WHERE seq = ANY(%s)",
                    (lease_seconds, [row["seq"] for row in rows]),
                )
        return [record_of(row) for row in rows]

    def mark_webhook(
        self,
        talk_id: str,
        delivered: bool,
        attempts: int,
        last_error: str | None = None,
        next_at: float | None = None,
    ) -> None:
        state = webhook_state_after(delivered, next_at)
        with self._cursor() as cur:
            cur.execute(
                "UPDATE talks SET webhook_state = %s, webhook_attempts = %s, webhook_last_error = %s, "
                "webhook_next_at = %s WHERE id = %s",
                (state, attempts, last_error, next_at or 0, talk_id),
            )

    def webhook_state(self, talk_id: str) -> str | None:
        with self._cursor() as cur:
            row = cur.execute("SELECT webhook_state FROM talks WHERE id = %s", (talk_id,)).fetchone()
        return row["webhook_state"] if row else None
