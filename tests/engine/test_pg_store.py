"""The talk store contract, for both backends: SQLite (the default) and PostgreSQL (engine replicas)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from talkmill_engine.errors import NotFoundError, NotReadyError, ValidationError
from talkmill_engine.jobs.pg_store import PgTalkStore
from talkmill_engine.jobs.sqlite_store import SqliteTalkStore
from talkmill_engine.jobs.store import LEGACY_OWNER, MAX_ATTEMPTS, QueueFull, TalkStore
from talkmill_engine.jobs.stores import open_talk_store
from talkmill_engine.settings import EngineSettings

from tests.engine.old_schema import OLD_IDS, old_pg_database, old_sqlite_database
from tests.engine.pg import PgServer, new_database, postgres  # noqa: F401  (the session's PostgreSQL)

CREATED_AT = "2024-01-01T00:00:00.000Z"


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TalkStore, TalkStore]]:
    """Two stores on one fresh database: two connections, as two processes or replicas have."""
    if request.param == "sqlite":
        pair = (SqliteTalkStore(tmp_path / "talks.db"), SqliteTalkStore(tmp_path / "talks.db"))
    else:
        url = new_database(request.getfixturevalue("postgres"))
        pair = (PgTalkStore(url), PgTalkStore(url))
    yield pair
    for store in pair:
        store.close()


def talk(n: int, **extra: object) -> dict:
    return {"id": f"tlk_{n:010d}", "status": "created", "created_at": CREATED_AT, **extra}


def test_create_get_list_and_page(stores: tuple[TalkStore, TalkStore]) -> None:
    store, other = stores
    for n in range(5):
        store.create(talk(n, user_data=f"u{n}"), {"secret": n})
    record = other.get("tlk_0000000003")
    assert (record.doc, record.job, record.attempts) == (talk(3, user_data="u3"), {"secret": 3}, 0)
    assert list(record.doc) == list(talk(3, user_data="u3"))  # the document keeps its key order
    assert other.get("tlk_missing000") is None
    first, token = other.list_page(2)
    second, token2 = other.list_page(2, token)
    last, token3 = other.list_page(2, token2)
    assert [t["id"][-1] for t in first + second + last] == ["4", "3", "2", "1", "0"]  # newest first
    assert token3 is None
    with pytest.raises(ValidationError):
        other.list_page(2, "not-a-token")


def test_delete_refuses_active_talks(stores: tuple[TalkStore, TalkStore]) -> None:
    store, other = stores
    store.create(talk(1))
    with pytest.raises(NotReadyError):  # 409 while created
        other.delete("tlk_0000000001")
    claimed = store.claim_next("w")
    with pytest.raises(NotReadyError):  # and while started
        other.delete(claimed.id)
    assert store.finish_error(claimed.id, {"kind": "SourceError"}, worker_id="w")
    assert other.delete(claimed.id).doc["status"] == "error"
    assert store.get(claimed.id) is None
    with pytest.raises(NotFoundError):
        other.delete(claimed.id)


def test_claims_are_exclusive_oldest_first_and_fenced(stores: tuple[TalkStore, TalkStore]) -> None:
    store, other = stores
    for n in range(3):
        store.create(talk(n))
    claims = [store.claim_next("a"), other.claim_next("b"), store.claim_next("a"), other.claim_next("b")]
    assert [c.id if c else None for c in claims] == ["tlk_0000000000", "tlk_0000000001", "tlk_0000000002", None]
    assert claims[1].doc["status"] == "started" and claims[1].attempts == 1
    assert store.finish_done("tlk_0000000001", {"duration": 1.0}, worker_id="a") is False  # not a's talk
    assert other.finish_done("tlk_0000000001", {"duration": 1.0}, {"files": 1}, worker_id="b") is True
    assert other.finish_done("tlk_0000000001", {"duration": 2.0}, worker_id="b") is False  # ended once
    done = store.get("tlk_0000000001")
    assert (done.doc["status"], done.doc["duration"], done.job) == ("done", 1.0, {"files": 1})
    assert store.count_active() == 2


def test_concurrent_claims_take_each_talk_once(stores: tuple[TalkStore, TalkStore]) -> None:
    store, other = stores
    for n in range(40):
        store.create(talk(n))
    taken: list[str] = []

    def work(source: TalkStore, name: str) -> None:
        while (record := source.claim_next(name)) is not None:
            taken.append(record.id)

    threads = [threading.Thread(target=work, args=(s, f"w{i}")) for i, s in enumerate([store, other] * 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(taken) == [f"tlk_{n:010d}" for n in range(40)]  # none twice, none lost


@pytest.mark.parametrize("crashed, attempts", [(True, 1), (False, 0)])
def test_requeue_workers(stores: tuple[TalkStore, TalkStore], crashed: bool, attempts: int) -> None:
    store, other = stores
    store.create(talk(1))
    store.create(talk(2))
    store.claim_next("dead")
    other.claim_next("alive")
    assert other.requeue_workers(["dead"], crashed=crashed) == ["tlk_0000000001"]
    requeued = store.get("tlk_0000000001")
    assert (requeued.doc["status"], requeued.attempts, requeued.worker_id) == ("created", attempts, None)
    assert "started_at" not in requeued.doc
    assert store.get("tlk_0000000002").doc["status"] == "started"  # the live worker keeps its talk


def test_a_talk_that_keeps_crashing_ends_as_an_error(stores: tuple[TalkStore, TalkStore]) -> None:
    store, other = stores
    store.create(talk(1, webhook="http://127.0.0.1:9/hook"))
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert store.claim_next(f"w{attempt}").attempts == attempt
        assert other.requeue_workers([f"w{attempt}"]) == ([] if attempt == MAX_ATTEMPTS else ["tlk_0000000001"])
    ended = store.get("tlk_0000000001").doc
    assert ended["error"] == {"kind": "UnknownError", "description": f"rendering crashed {MAX_ATTEMPTS} times"}
    assert store.claim_next("w9") is None
    assert [r.id for r in other.claim_webhooks()] == ["tlk_0000000001"]  # its webhook is now due


def test_leases(stores: tuple[TalkStore, TalkStore]) -> None:
    store, other = stores
    store.create(talk(1))
    store.claim_next("w", lease_seconds=0.5)
    assert store.renew_lease("tlk_0000000001", "w", 0.5) is True
    assert store.renew_lease("tlk_0000000001", "someone-else", 0.5) is False
    time.sleep(1.0)  # the lease runs out: its worker stopped renewing
    if isinstance(store, PgTalkStore):
        assert other.requeue_expired() == ["tlk_0000000001"]
        assert store.renew_lease("tlk_0000000001", "w", 0.5) is False  # the worker learns it lost the talk
        assert other.claim_next("v").attempts == 2
    else:  # one engine: its supervisor sees its workers die, so SQLite keeps no leases
        assert other.requeue_expired() == []
        assert store.renew_lease("tlk_0000000001", "w", 0.5) is True


def test_webhooks_wait_for_the_end_and_are_claimed_once(stores: tuple[TalkStore, TalkStore]) -> None:
    store, other = stores
    store.create(talk(1, webhook="http://127.0.0.1:9/hook"))
    store.create(talk(2))
    assert store.webhook_state("tlk_0000000001") == "waiting"
    assert store.claim_webhooks() == []
    for n in (1, 2):
        claimed = store.claim_next("w")
        store.finish_error(claimed.id, {"kind": "SourceError"}, worker_id="w")
    assert store.webhook_state("tlk_0000000001") == "pending"
    assert store.webhook_state("tlk_0000000002") == "none"
    assert [r.id for r in store.claim_webhooks()] == ["tlk_0000000001"]
    # Replicas: a claimed delivery is not handed to another; SQLite's one dispatcher dedups in memory.
    assert len(other.claim_webhooks()) == (0 if isinstance(store, PgTalkStore) else 1)
    other.mark_webhook("tlk_0000000001", delivered=False, attempts=5, last_error="refused", next_at=0.0)
    assert [r.webhook_attempts for r in store.claim_webhooks()] == [5]  # due again now
    store.mark_webhook("tlk_0000000001", delivered=True, attempts=6)
    assert other.webhook_state("tlk_0000000001") == "delivered"
    assert other.claim_webhooks() == []


def test_open_talk_store_follows_the_settings(tmp_path: Path, postgres: PgServer) -> None:  # noqa: F811
    sqlite = open_talk_store(EngineSettings(data_dir=tmp_path))
    assert isinstance(sqlite, SqliteTalkStore) and (tmp_path / "talks.db").exists()
    url = new_database(postgres)
    pg = open_talk_store(EngineSettings(data_dir=tmp_path, database_url=url))
    assert isinstance(pg, PgTalkStore) and isinstance(pg, TalkStore)
    pg.create(talk(7))
    assert PgTalkStore(url).get("tlk_0000000007") is not None  # the schema exists once, shared
    assert url.split("@")[0] not in repr(EngineSettings(database_url=url))  # the password stays hidden


# -- owners, admission, the drain rate -----------------------------------------------------------------


def test_an_owner_sees_reads_pages_and_deletes_only_its_own(stores: tuple[TalkStore, TalkStore]) -> None:
    store, other = stores
    for n in range(6):
        store.create(talk(n, created_by="alice" if n % 2 else "bob"))
    assert store.get("tlk_0000000001", owner="bob") is None
    assert store.get("tlk_0000000001", owner="alice").owner == "alice"
    first, token = other.list_page(2, owner="alice")
    rest, last = other.list_page(2, token, owner="alice")
    assert [t["id"][-1] for t in first + rest] == ["5", "3", "1"] and last is None
    assert [t["id"][-1] for t in other.list_page(10, token, owner="bob")[0]] == ["2", "0"]  # a token is no key
    assert len(other.list_page(10)[0]) == 6  # the engine's own view: every talk
    for n in (0, 1):
        store.finish_error(store.claim_next("w").id, {"kind": "SourceError"}, worker_id="w")
    with pytest.raises(NotFoundError):
        other.delete("tlk_0000000001", owner="bob")
    assert store.get("tlk_0000000001") is not None  # refused, and left as it was
    assert other.delete("tlk_0000000001", owner="alice").owner == "alice"


def test_admission_counts_and_inserts_as_one_step(stores: tuple[TalkStore, TalkStore]) -> None:
    store, other = stores
    refused: list[int] = []

    def admit(n: int) -> None:
        try:
            (store, other)[n % 2].create(talk(n, created_by="alice"), max_active=12)
        except QueueFull as full:
            refused.append(full.active)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(admit, range(100)))
    assert store.count_active() == 12 and len(refused) == 88
    assert set(refused) == {12}
    store.finish_done(store.claim_next("w").id, {}, worker_id="w")
    other.create(talk(500), max_active=12)  # one ended: one place free
    with pytest.raises(QueueFull):
        other.create(talk(501), max_active=12)


def test_recent_completions_measure_the_drain(stores: tuple[TalkStore, TalkStore]) -> None:
    store, other = stores
    assert other.recent_completions(60) == (0, 0.0)
    for n in range(3):
        store.create(talk(n))
        store.finish_error(store.claim_next("w").id, {"kind": "SourceError"}, worker_id="w")
        time.sleep(0.2)
    count, age = other.recent_completions(60)
    assert count == 3 and 0.4 <= age < 5
    assert other.recent_completions(0.1) == (0, 0.0)  # all older than the window


# -- databases an older engine made ------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgres"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201  (a store factory)
    if request.param == "sqlite":
        path = old_sqlite_database(tmp_path / "talks.db")
        return lambda: SqliteTalkStore(path)
    url = old_pg_database(new_database(request.getfixturevalue("postgres")))
    return lambda: PgTalkStore(url)


def test_a_database_of_an_older_engine_gets_owners_from_created_by(old_database) -> None:  # noqa: ANN001
    store = old_database()
    assert [store.get(talk_id).owner for talk_id in OLD_IDS] == ["tester", "key|0123456789abcdef", LEGACY_OWNER]
    assert [t["id"] for t in store.list_page(10, owner="tester")[0]] == ["tlk_0000000001"]
    assert store.get("tlk_0000000002", owner="tester") is None
    assert store.count_active() == 1
    store.create(talk(4, created_by="tester"), max_active=5)  # the new columns work on old rows
    store.finish_done(store.claim_next("w").id, {}, worker_id="w")  # the old created talk, first in line
    assert store.recent_completions(60)[0] == 1
    again = old_database()  # a second start: migrated once, nothing repeated or lost
    assert len(again.list_page(10)[0]) == 4
    assert again.get("tlk_0000000004", owner="tester") is not None
