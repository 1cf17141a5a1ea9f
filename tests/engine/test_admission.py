"""Admission under load, on real engines: a burst of creates never overfills the queue (count and insert
are one step in either store), and a refusal's Retry-After follows how fast the queue really drains."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from talkmill_engine.jobs.admission import RETRY_AFTER_MAX
from talkmill_engine.jobs.store import TalkStore

from tests.engine.helpers import Engine, start_engine
from tests.engine.pg import new_database, postgres  # noqa: F401  (the session's PostgreSQL)

BURST, MAX_QUEUE = 200, 12


def say(n: int) -> dict:
    return {"source_url": f"http://127.0.0.1:9/p{n}.png", "script": {"type": "text", "input": f"Talk {n}."}}


def burst(engine: Engine, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    with engine.client(limits=limits) as http, ThreadPoolExecutor(64) as pool:
        return list(pool.map(lambda n: http.post("/talks", json=say(n)), range(count)))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_burst_of_creates_fills_the_queue_exactly(backend: str, tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:  # fmt: skip
    store = {"database_url": new_database(request.getfixturevalue("postgres"))} if backend == "postgres" else {}
    engine = start_engine(tmp_path / "data", workers=0, max_queue=str(MAX_QUEUE), **store)
    try:
        answers = burst(engine, BURST)
        statuses = Counter(answer.status_code for answer in answers)
        assert statuses == {201: MAX_QUEUE, 429: BURST - MAX_QUEUE}, statuses
        refused = [answer for answer in answers if answer.status_code == 429]
        assert all(answer.json()["kind"] == "TooManyRequestsError" for answer in refused)
        assert {int(answer.headers["Retry-After"]) for answer in refused} == {RETRY_AFTER_MAX}  # nothing drains
        with engine.client() as http:
            assert len(http.get("/talks", params={"limit": 1000}).json()["talks"]) == MAX_QUEUE
            assert http.get("/health").json()["queued"] == MAX_QUEUE
    finally:
        engine.kill()


def test_retry_after_follows_the_drain_rate(tmp_path: Path) -> None:
    engine = start_engine(tmp_path / "data", workers=0, max_queue="2")
    try:
        with engine.client() as http:
            for n in range(2):
                assert http.post("/talks", json=say(n)).status_code == 201
            idle = http.post("/talks", json=say(2))
            assert idle.status_code == 429 and int(idle.headers["Retry-After"]) == RETRY_AFTER_MAX
            # a worker elsewhere (another process on the same store) takes the two, and ends 20 more in a moment
            store = TalkStore(engine.data_dir / "talks.db")
            assert all(store.claim_next("elsewhere") for _ in range(2))  # rendering: still in the queue
            for n in range(20):
                store.create({"id": f"tlk_drained{n:08d}", "status": "created", "created_by": "tester",
                              "created_at": "2024-01-01T00:00:00.000Z"})  # fmt: skip
                store.finish_done(store.claim_next("elsewhere").id, {}, worker_id="elsewhere")
            busy = http.post("/talks", json=say(3))
            assert busy.status_code == 429
            assert 1 <= int(busy.headers["Retry-After"]) <= 2  # 20 ended in ~1 s: a place frees up at once
    finally:
        engine.kill()
