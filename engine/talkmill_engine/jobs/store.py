"""Persistent talks and their queue: the `TalkStore` interface and what its backends share.

A talk is a JSON document (the public talk object, as GET answers it) plus a few indexed columns the
queue works on. `job` holds what is ours and never shown (result file names). The SQLite default (data
dir, WAL) is in sqlite_store.py, PostgreSQL (engine replicas sharing one queue) in pg_store.py;
stores.open_talk_store picks one from the settings.

Every talk has an owner: the identity of the API key that created it (its `created_by`). Reads, lists
and deletes given an owner see only that owner's talks; without one (the engine's own work) all.
"""

from __future__ import annotations

import base64
import binascii
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Collection

from talkmill_engine.errors import invalid

MAX_ATTEMPTS = 3  # a talk whose worker died this many times ends as an error, not a crash loop
ACTIVE = ("created", "started")
LEASE_SECONDS = 30.0  # a claimed talk is its worker's while the worker renews this lease
WEBHOOK_LEASE_SECONDS = 90.0  # longer than one delivery attempt (DNS, connect and answer timeouts)
# The owner of rows migrated from before owners existed that carry no created_by. No key's identity
# contains a colon (api/auth.identity), so no key can ever see them.
LEGACY_OWNER = "legacy:unowned"


def utc_now_iso() -> str:
    """ISO-8601 with milliseconds and Z, as D-ID writes its timestamps."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def owner_of(doc: dict[str, Any]) -> str:
    """A talk's owner: who created it (the same rule the migration of old rows follows)."""
    return doc.get("created_by") or LEGACY_OWNER


class QueueFull(Exception):
    """`create` refused a talk: `active` talks were already created or started."""

    def __init__(self, active: int) -> None:
        super().__init__(f"{active} talks created or started")
        self.active = active


@dataclass
class TalkRecord:
    doc: dict[str, Any]  # the public talk
    job: dict[str, Any]  # ours: result files, never shown
    attempts: int = 0
    worker_id: str | None = None
    webhook_attempts: int = 0
    owner: str = LEGACY_OWNER

    @property
    def id(self) -> str:
        return self.doc["id"]


class TalkStore(ABC):
    """What the engine needs of a talk store. Claims are exclusive; `finish_*` are fenced by worker id.

    `TalkStore(path)` opens the SQLite default, as it did before there was a second backend.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> TalkStore:
        if cls is TalkStore:
            from talkmill_engine.jobs.sqlite_store import SqliteTalkStore

            cls = SqliteTalkStore
        return super().__new__(cls)

    @abstractmethod
    def create(
        self, doc: dict[str, Any], job: dict[str, Any] | None = None, max_active: int | None = None
    ) -> None:
        """Stores a new talk, owned by `owner_of(doc)`. With `max_active`: raises QueueFull when that many
        talks are already created or started, counted and inserted as one step (a burst cannot overfill)."""
    @abstractmethod
    def get(self, talk_id: str, owner: str | None = None) -> TalkRecord | None: ...
    @abstractmethod
    def list_page(
        self, limit: int, token: str | None = None, owner: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; the token of the next page, or None on the last page."""
    @abstractmethod
    def delete(self, talk_id: str, owner: str | None = None) -> TalkRecord:
        """Removes a finished talk; NotFoundError, or NotReadyError while it is created or started."""
    @abstractmethod
    def count_active(self) -> int: ...
    @abstractmethod
    def recent_completions(self, window_seconds: float) -> tuple[int, float]:
        """(talks that ended in the last `window_seconds`, seconds since the first of them ended)."""

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
        """Records a delivery attempt (`attempts` made so far, across restarts). Not delivered with
        `next_at` (unix time): pending until then; without: failed for good."""
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


def webhook_state_after(delivered: bool, next_at: float | None) -> str:
    """A delivery attempt's outcome: delivered, pending (another attempt is due at next_at) or failed."""
    return "delivered" if delivered else ("pending" if next_at is not None else "failed")


def record_of(row: Any) -> TalkRecord:  # a sqlite3.Row or a psycopg dict row
    return TalkRecord(
        doc=json.loads(row["doc"]),
        job=json.loads(row["job"]),
        attempts=row["attempts"],
        worker_id=row["worker_id"],
        webhook_attempts=row["webhook_attempts"],
        owner=row["owner"],
    )


MAX_SEQ = 2**63  # SQLite's and PostgreSQL's BIGINT: a larger number in a token is not ours
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{4,40}$"  # what encode_token writes: base64url of "seq:<n>", unpadded


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
        raise invalid("token", "not a paging token of this engine", "the token of the previous page") from e
