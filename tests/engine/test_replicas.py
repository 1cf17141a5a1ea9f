"""Engine replicas: two engine processes share one PostgreSQL queue and keep their results in S3."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.engine.helpers import Engine, StaticServer, WebhookReceiver, probe_video, start_engine, wait_for
from tests.engine.pg import PgServer, new_database, postgres  # noqa: F401  (the session's PostgreSQL)
from tests.s3server import S3Server  # the `seaweedfs` fixture comes from tests/conftest.py

# The bucket the other engine tests write to: the session's SeaweedFS has volumes for ~one more
# collection (-volume.max=8, 7 a collection), so a bucket of its own fails when run after them.
BUCKET, PREFIX = "inbox", "engine-results"
LEASE = 2.0  # seconds: a killed replica's talk is free again this soon


@pytest.fixture
def replica_env(
    postgres: PgServer, seaweedfs: S3Server, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> dict[str, str]:
    """What every replica of one deployment shares: a fresh database, the results bucket, a short lease."""
    for name, value in (("AWS_ACCESS_KEY_ID", seaweedfs.access_key), ("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key),
                        ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    return {
        "database_url": new_database(postgres),
        "results_s3_url": f"s3://{BUCKET}/{PREFIX}",
        "s3_endpoint_url": seaweedfs.endpoint_url,
        "lease_seconds": str(LEASE),
        "fetch_timeout": "60",  # the slow source below answers after 15 s
    }


@pytest.fixture
def started() -> Iterator[list[Engine]]:
    """Engines a test starts; all killed at its end."""
    engines: list[Engine] = []
    yield engines
    for engine in engines:
        engine.kill(signal.SIGTERM)


def rows(database_url: str) -> dict[str, dict]:
    with psycopg.connect(database_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return {row["id"]: row for row in cur.execute("SELECT id, status, attempts, worker_id FROM talks")}


def result_files(seaweedfs: S3Server, talk_id: str) -> list[str]:  # noqa: F811
    listing = seaweedfs.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/{talk_id}/")
    return sorted(item["Key"].rsplit(".", 1)[1] for item in listing.get("Contents", []))


def say(static_server: StaticServer, text: str, source: str = "astronaut.png", **extra: object) -> dict:
    return {"source_url": f"{static_server.base}/{source}", "script": {"type": "text", "input": text}, **extra}


def test_two_replicas_render_every_talk_once_and_answer_for_all(
    tmp_path: Path, static_server: StaticServer, seaweedfs: S3Server, replica_env: dict[str, str],  # noqa: F811
    started: list[Engine],
) -> None:  # fmt: skip
    receiver = WebhookReceiver()
    started += [start_engine(tmp_path / name, workers=1, **replica_env) for name in ("a", "b")]
    a, b = started
    try:
        with a.client() as http_a, b.client() as http_b:
            ids = []
            for n in range(6):  # alternately to each replica
                http = (http_a, http_b)[n % 2]
                body = say(static_server, f"Talk number {n}.", webhook=receiver.url, user_data=f"n{n}")
                ids.append(http.post("/talks", json=body).json()["id"])
            # an image uploaded to one replica is a source for a talk posted to the other
            portrait = (static_server.root / "grace_hopper.jpg").read_bytes()
            uploaded = http_b.post("/images", files={"image": ("grace.jpg", portrait, "image/jpeg")}).json()
            assert uploaded["url"].startswith(f"s3://{BUCKET}/{PREFIX}/uploads/images/")
            body = {"source_url": uploaded["url"], "script": {"type": "text", "input": "Uploaded elsewhere."},
                    "webhook": receiver.url}
            ids.append(http_a.post("/talks", json=body).json()["id"])
            done = {talk_id: wait_for(http_a, talk_id, timeout=240) for talk_id in ids}
            assert all(talk["status"] == "done" for talk in done.values()), done
            for talk_id in ids:  # either replica answers for any talk, with the same document
                assert http_b.get(f"/talks/{talk_id}").json() == done[talk_id]
            listed = [t["id"] for t in http_b.get("/talks", params={"limit": 10}).json()["talks"]]
            assert listed == ids[::-1]
        stored = rows(replica_env["database_url"])
        assert {talk_id: stored[talk_id]["attempts"] for talk_id in ids} == dict.fromkeys(ids, 1)  # claimed once
        workers = {stored[talk_id]["worker_id"] for talk_id in ids}
        assert len({worker.split("-")[1] for worker in workers}) == 2  # both replicas took talks from the queue
        for talk_id in ids:  # rendered once: one video and one audio file in S3
            assert result_files(seaweedfs, talk_id) == ["jpg", "mp4", "wav"]
            assert not (tmp_path / "a" / "results" / talk_id).exists()
            assert not (tmp_path / "b" / "results" / talk_id).exists()
        talk = done[ids[0]]  # results are presigned S3 URLs: no engine and no credentials needed
        assert talk["result_url"].startswith(f"{seaweedfs.endpoint_url}/{BUCKET}/{PREFIX}/{ids[0]}/")
        assert "X-Amz-Signature=" in talk["result_url"]
        a.kill(signal.SIGTERM)
        video = httpx.get(talk["result_url"], timeout=30)
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        assert probe_video(video.content).frames == talk["metadata"]["num_frames"]
        assert httpx.get(talk["audio_url"], timeout=30).content[:4] == b"RIFF"
        with b.client() as http_b:  # deleting a talk removes its files from S3 too
            assert http_b.delete(f"/talks/{ids[0]}").status_code == 200
        assert result_files(seaweedfs, ids[0]) == []
        time.sleep(1.0)  # a second delivery, if any, would arrive by now
        delivered = Counter(json.loads(body)["id"] for _, body in receiver.calls)
        assert delivered == Counter(ids), delivered  # one webhook per talk, from one replica
    finally:
        receiver.close()


def test_a_replica_killed_mid_render_leaves_its_talk_to_the_other(
    tmp_path: Path, static_server: StaticServer, seaweedfs: S3Server, replica_env: dict[str, str],  # noqa: F811
    started: list[Engine],
) -> None:  # fmt: skip
    started.append(start_engine(tmp_path / "a", workers=1, **replica_env))
    a = started[0]
    with a.client() as http_a:
        # The slow source keeps the talk `started` on replica a (the only one yet) for 15 s.
        talk_id = http_a.post("/talks", json=say(static_server, "Hello!", "slow/15/grace_hopper.jpg")).json()["id"]
        wait_for(http_a, talk_id, ("started",), timeout=60)
    first_worker = rows(replica_env["database_url"])[talk_id]["worker_id"]
    started.append(start_engine(tmp_path / "b", workers=1, **replica_env))
    b = started[1]
    with b.client() as http_b:
        assert http_b.get(f"/talks/{talk_id}").json()["status"] == "started"  # still a's, mid-render
        a.kill(signal.SIGKILL)  # the whole replica: server and worker, no clean shutdown
        killed_at = time.monotonic()
        while rows(replica_env["database_url"])[talk_id]["worker_id"] in (first_worker, None):
            assert time.monotonic() - killed_at < 15, "the other replica never took the talk over"
            time.sleep(0.1)
        assert time.monotonic() - killed_at >= LEASE * 0.5  # not before its lease ran out
        done = wait_for(http_b, talk_id, timeout=240)
    assert done["status"] == "done", done.get("error")
    stored = rows(replica_env["database_url"])[talk_id]
    assert stored["attempts"] == 2 and stored["worker_id"] != first_worker
    assert result_files(seaweedfs, talk_id) == ["jpg", "mp4", "wav"]  # the killed render left nothing behind
    assert httpx.get(done["result_url"], timeout=30).status_code == 200
