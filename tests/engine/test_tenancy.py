"""Tenants apart, on a real engine with two keys: a talk or an upload of one key is, to the other, a thing
that does not exist (the same 404 or 400, word for word). An engine upgraded from before owners keeps
every talk with the key that created it."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from talkmill_engine.api.auth import identity

from tests.engine.helpers import KEY, Engine, StaticServer, start_engine, wait_for
from tests.engine.old_schema import old_sqlite_database

KEY_A, KEY_B = "keyA", "keyB"  # bare keys: their tenants are digests of them


@dataclass
class Tenants:
    engine: Engine
    a: httpx.Client
    b: httpx.Client


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    engine = start_engine(tmp_path_factory.mktemp("tenants") / "data", workers=1, keys=f"{KEY_A},{KEY_B}")
    a, b = (httpx.Client(base_url=engine.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            for key in (KEY_A, KEY_B))  # fmt: skip
    yield Tenants(engine, a, b)
    a.close()
    b.close()
    engine.kill()


def say(source_url: str, text: str = "Hello world!", **extra: object) -> dict:
    return {"source_url": source_url, "script": {"type": "text", "input": text}, **extra}


def as_absent(response: httpx.Response, real_id: str, absent_id: str) -> tuple[int, dict]:
    return response.status_code, json.loads(response.text.replace(real_id, absent_id))


def test_another_tenants_talk_is_answered_as_absent(tenants: Tenants, static_server: StaticServer) -> None:
    a, b = tenants.a, tenants.b
    talk_id = a.post("/talks", json=say(static_server.url("grace_hopper.jpg"))).json()["id"]
    done = wait_for(a, talk_id, timeout=240)
    assert done["status"] == "done", done
    absent = "tlk_" + "x" * len(talk_id.removeprefix("tlk_"))
    for method in ("GET", "DELETE"):
        missing = b.request(method, f"/talks/{absent}")
        assert missing.status_code == 404
        assert as_absent(b.request(method, f"/talks/{talk_id}"), talk_id, absent) == (404, missing.json())
    assert talk_id not in [t["id"] for t in b.get("/talks", params={"limit": 1000}).json()["talks"]]
    assert a.get(f"/talks/{talk_id}").json() == done  # B's DELETE left it as it was
    assert talk_id in [t["id"] for t in a.get("/talks").json()["talks"]]
    assert done["created_by"] == identity(KEY_A) != identity(KEY_B)
    result = httpx.URL(done["result_url"])  # served without a key: the file name is the credential
    assert len(result.path.rsplit("/", 1)[1].split(".")[0]) >= 32  # 24 random bytes, base64
    assert httpx.get(done["result_url"]).status_code == 200
    assert a.delete(f"/talks/{talk_id}").status_code == 200
    assert httpx.get(done["result_url"]).status_code == 404


def test_paging_lists_only_ones_own_talks(tenants: Tenants) -> None:
    a, b = tenants.a, tenants.b
    mine = [a.post("/talks", json=say(f"http://127.0.0.1:9/a{n}.png")).json()["id"] for n in range(3)]
    theirs = b.post("/talks", json=say("http://127.0.0.1:9/b.png")).json()["id"]
    first = a.get("/talks", params={"limit": 2}).json()
    assert [t["id"] for t in first["talks"]] == mine[:0:-1] and first["token"]
    b_with_a_token = b.get("/talks", params={"limit": 10, "token": first["token"]}).json()["talks"]
    assert not {t["id"] for t in b_with_a_token} & set(mine)  # a token is a place in a list, not a key
    assert theirs not in {t["id"] for t in a.get("/talks", params={"limit": 1000}).json()["talks"]}


def test_another_tenants_upload_is_answered_as_absent(tenants: Tenants, static_server: StaticServer) -> None:
    a, b = tenants.a, tenants.b
    portrait = (static_server.root / "grace_hopper.jpg").read_bytes()
    image = a.post("/images", files={"image": ("me.jpg", portrait, "image/jpeg")}).json()["url"]
    speech = (static_server.root / "speech.mp3").read_bytes()
    audio = a.post("/audios", files={"audio": ("a.mp3", speech, "audio/mpeg")}).json()["url"]
    for field, body in (("source_url", say(image)),
                        ("script.audio_url", {"source_url": static_server.url("grace_hopper.jpg"),
                                              "script": {"type": "audio", "audio_url": audio}})):  # fmt: skip
        url = image if field == "source_url" else audio
        name = url.rsplit("/", 1)[1]
        never = "x" + name[1:]  # the same shape, never uploaded
        refused = b.post("/talks", json=body)
        assert refused.status_code == 400 and refused.json()["details"]["field"] == field, refused.text
        absent = b.post("/talks", json=json.loads(json.dumps(body).replace(name, never)))
        assert refused.json() == json.loads(absent.text.replace(never, name))  # word for word, as absent
        assert a.post("/talks", json=body).status_code == 201  # its owner uses it


def test_uploads_from_before_owners_belong_to_the_first_key(tenants: Tenants, static_server: StaticServer) -> None:
    folder = tenants.engine.data_dir / "uploads" / "images"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(static_server.root / "grace_hopper.jpg", folder / "img_fromanolderengine0.jpg")  # <id>.<ext>
    body = say("upload://images/img_fromanolderengine0.jpg")
    assert tenants.a.post("/talks", json=body).status_code == 201
    assert tenants.b.post("/talks", json=body).status_code == 400


def test_identities_never_collide_with_digests() -> None:
    assert identity("alice:secret") == identity("alice:rotated") == "alice"  # one user, many keys
    assert identity(KEY_A).startswith("key|") and ":" not in identity(KEY_A)
    assert identity("key|0123456789abcdef:x") != "key|0123456789abcdef"  # no posing as a digest
    assert identity(":secret").startswith("key|")


def test_an_engine_upgraded_from_before_owners_keeps_each_talk_with_its_creator(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    old_sqlite_database(data / "talks.db")  # tlk_…1 by "tester" (KEY's user), tlk_…2 by another key
    engine = start_engine(data, workers=0, keys=f"{KEY},other:pw")
    try:
        with engine.client() as tester:
            assert tester.get("/talks/tlk_0000000001").json()["status"] == "done"
            assert [t["id"] for t in tester.get("/talks").json()["talks"]] == ["tlk_0000000001"]
            assert tester.get("/talks/tlk_0000000002").status_code == 404
        other = httpx.get(f"{engine.url}/talks", headers={"Authorization": "Bearer other:pw"}).json()
        assert other["talks"] == []
    finally:
        engine.kill()
    with sqlite3.connect(data / "talks.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)
