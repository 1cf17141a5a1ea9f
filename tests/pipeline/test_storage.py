"""Object stores: LocalStore and S3Store (real SeaweedFS on 127.0.0.1) pass the same contract tests."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from connectors.storage import (
    STORES,
    LocalStore,
    ObjectInfo,
    ObjectStore,
    S3Store,
    content_type_for,
    open_store,
)
from connectors.storage.s3 import CLIENT_OPTIONS
from talkmill.config import S3Config
from talkmill.errors import ConfigError, InputError, ObjectNotFound, StorageError, UnsafeKeyError
from tests.s3server import S3Server  # the `seaweedfs` fixture comes from tests/conftest.py

MB = 1 << 20


@pytest.fixture
def s3_env(seaweedfs: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return seaweedfs


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return open_store(str(tmp_path / "out"))
    server: S3Server = request.getfixturevalue("s3_env")
    settings = S3Config(endpoint_url=server.endpoint_url)
    return open_store(f"s3://talkmill/runs-{uuid.uuid4().hex[:8]}", settings)


def _pattern(size: int) -> bytes:
    """Bytes that differ along the file, so a shifted or repeated part would not hash the same."""
    block = hashlib.sha256(b"talkmill").digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def _chunks(data: bytes, size: int = 65536) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _achunks(data: bytes) -> AsyncIterator[bytes]:
    for chunk in _chunks(data):
        await asyncio.sleep(0)
        yield chunk


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the contract ------------------------------------------------------------------------------------------


def test_put_get_head_exists(store: ObjectStore) -> None:
    info = store.put_bytes("deck/001-abc.json", b'{"a": 1}')
    assert info == ObjectInfo(8, _sha(b'{"a": 1}'))
    assert store.get_bytes("deck/001-abc.json") == b'{"a": 1}'
    assert store.exists("deck/001-abc.json")
    assert store.head("deck/001-abc.json") == info


def test_missing_keys(store: ObjectStore) -> None:
    assert not store.exists("nope/x.mp4")
    assert store.head("nope/x.mp4") is None
    with pytest.raises(ObjectNotFound):
        store.get_bytes("nope/x.mp4")
    with pytest.raises(ObjectNotFound):
        store.move("nope/x.mp4", "nope/y.mp4")
    store.delete("nope/x.mp4")  # deleting what is not there is not an error


def test_put_stream_of_several_megabytes(store: ObjectStore) -> None:
    data = _pattern(12 * MB + 12345)  # over S3Store's 8 MiB part size: a multipart upload
    info = store.put_stream("deck/big.mp4", _chunks(data))
    assert info == ObjectInfo(len(data), _sha(data))
    assert store.head("deck/big.mp4") == info  # S3: the sha256 set after the multipart upload completed
    assert _sha(store.get_bytes("deck/big.mp4")) == _sha(data)


def test_aput_stream_takes_an_async_source(store: ObjectStore) -> None:
    data = _pattern(3 * MB + 7)
    info = asyncio.run(store.aput_stream("deck/async.mp4", _achunks(data)))
    assert info == ObjectInfo(len(data), _sha(data))
    assert store.get_bytes("deck/async.mp4") == data


def test_a_failed_stream_leaves_nothing_behind(store: ObjectStore) -> None:
    def broken() -> Iterator[bytes]:
        yield from _chunks(_pattern(9 * MB))  # past one S3 part: a multipart upload is under way
        raise ConnectionError("the provider hung up")

    with pytest.raises(ConnectionError):
        store.put_stream("deck/half.mp4", broken())
    assert not store.exists("deck/half.mp4")
    assert store.list() == []
    if isinstance(store, S3Store):
        assert "Uploads" not in store.s3.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)


def test_list_by_prefix(store: ObjectStore) -> None:
    for key in ("a/1.mp4", "a/1.json", "a/sub/2.mp4", "ab/3.csv", "b/4.html"):
        store.put_bytes(key, key.encode())
    assert store.list("a/") == ["a/1.json", "a/1.mp4", "a/sub/2.mp4"]
    assert store.list("a") == ["a/1.json", "a/1.mp4", "a/sub/2.mp4", "ab/3.csv"]
    assert store.list() == ["a/1.json", "a/1.mp4", "a/sub/2.mp4", "ab/3.csv", "b/4.html"]
    assert store.list("zzz/") == []


def test_move_and_delete(store: ObjectStore) -> None:
    store.put_bytes("tmp/v.mp4", b"video")
    store.move("tmp/v.mp4", "final/v.mp4")
    assert not store.exists("tmp/v.mp4")
    assert store.get_bytes("final/v.mp4") == b"video"
    store.delete("final/v.mp4")
    assert not store.exists("final/v.mp4")
    assert store.list() == []


def test_put_if_absent_creates_once(store: ObjectStore) -> None:
    assert store.put_if_absent("runs/r1/lock.json", b"first") is True
    assert store.put_if_absent("runs/r1/lock.json", b"second") is False
    assert store.get_bytes("runs/r1/lock.json") == b"first"
    assert store.list() == ["runs/r1/lock.json"]  # no temp file left either way


def test_put_atomic_replaces_whole(store: ObjectStore) -> None:
    store.put_atomic("runs/r1/manifest.jsonl", b'{"row": 1}\n')
    info = store.put_atomic("runs/r1/manifest.jsonl", b'{"row": 1}\n{"row": 2}\n')
    assert store.get_bytes("runs/r1/manifest.jsonl") == b'{"row": 1}\n{"row": 2}\n'
    assert store.head("runs/r1/manifest.jsonl") == info
    assert store.list() == ["runs/r1/manifest.jsonl"]


@pytest.mark.parametrize(
    "key", ["../escape.mp4", "a/../../escape.mp4", "/etc/passwd", "a//b.mp4", "", "a/./b.mp4", "a/..", "a\\b"]
)
def test_keys_that_could_escape_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(UnsafeKeyError):
        store.put_bytes(key, b"x")
    with pytest.raises(UnsafeKeyError):
        store.get_bytes(key)
    with pytest.raises(UnsafeKeyError):
        store.put_stream(key, [b"x"])
    with pytest.raises(UnsafeKeyError):
        store.move("fine.mp4", key)
    assert store.list() == []


def test_uri_names_the_object(store: ObjectStore, tmp_path: Path) -> None:
    if isinstance(store, LocalStore):
        assert store.uri("deck/v.mp4") == (tmp_path / "out" / "deck" / "v.mp4").as_uri()
    else:
        assert store.uri("deck/v.mp4") == f"s3://talkmill/{store.prefix}/deck/v.mp4"


# -- per backend -------------------------------------------------------------------------------------------


def test_s3_objects_carry_their_content_type(s3_env: S3Server) -> None:
    store = open_store(f"s3://talkmill/ct-{uuid.uuid4().hex[:8]}", S3Config(endpoint_url=s3_env.endpoint_url))
    store.put_bytes("v.mp4", b"m")
    store.put_stream("v.gif", [b"g"])
    store.put_atomic("m.jsonl", b"{}\n")
    store.put_if_absent("g.html", b"<p>")
    seen = {
        key: store.s3.head_object(Bucket="talkmill", Key=f"{store.prefix}/{key}")["ContentType"]
        for key in ("v.mp4", "v.gif", "m.jsonl", "g.html")
    }
    assert seen == {
        "v.mp4": "video/mp4", "v.gif": "image/gif", "m.jsonl": "application/x-ndjson", "g.html": "text/html"
    }  # fmt: skip


def test_s3_errors_are_storage_errors(s3_env: S3Server) -> None:
    wrong = S3Server(s3_env.endpoint_url, s3_env.access_key, "not-the-secret").client()
    store = S3Store("talkmill", "denied", client=wrong)
    with pytest.raises(StorageError) as caught:
        store.put_bytes("v.mp4", b"m")
    assert not isinstance(caught.value, ObjectNotFound)
    assert caught.value.__cause__ is not None


def test_put_if_absent_has_one_winner_under_a_race(store: ObjectStore) -> None:
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda n: store.put_if_absent("runs/r2/lock", f"{n}".encode()), range(8)))
    assert won.count(True) == 1
    assert store.get_bytes("runs/r2/lock") == str(won.index(True)).encode()


def test_local_writes_leave_no_temp_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_atomic("m.json", b"{}")
    store.put_if_absent("m.json", b"{}")
    store.put_stream("v.mp4", [b"a", b"b"])
    assert sorted(os.listdir(tmp_path)) == ["m.json", "v.mp4"]


def test_content_types() -> None:
    expected = {
        "a.mp4": "video/mp4", "a.MOV": "video/quicktime", "a.gif": "image/gif", "a.json": "application/json",
        "a.csv": "text/csv", "a.jsonl": "application/x-ndjson", "a.html": "text/html",
    }  # fmt: skip
    assert {key: content_type_for(key) for key in expected} == expected


def test_open_store_chooses_by_uri(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path / "plain")), LocalStore)
    by_uri = open_store((tmp_path / "by uri").as_uri())
    assert isinstance(by_uri, LocalStore) and by_uri.root == tmp_path / "by uri"
    s3 = open_store("s3://bucket/some/prefix/", S3Config(endpoint_url="http://127.0.0.1:1"))
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix) == ("bucket", "some/prefix")


@pytest.mark.parametrize(("uri", "wrong"), [
    ("ftp://host/dir", "no store reads ftp:// URIs"),
    ("s3://", "an s3:// URI needs a bucket"),
    ("s3:///prefix-without-bucket", "an s3:// URI needs a bucket"),
    ("file://elsewhere/videos", "names a folder on this machine, not on 'elsewhere'"),
])
def test_a_bad_store_uri_is_a_config_error_naming_the_option_and_the_allowed(uri: str, wrong: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store(uri, option="inbox")
    message = str(caught.value)
    assert message.startswith(f"inbox {uri!r}: ") and wrong in message
    assert all(f"{scheme}://" in message for scheme in STORES)  # the allowed ones, from the registry
    assert isinstance(caught.value, InputError)  # the CLI refuses it (exit 2), no traceback


def test_an_output_folder_that_cannot_be_made_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"output .*a-file/videos.*: cannot create the folder"):
        open_store(str(tmp_path / "a-file" / "videos"))


def test_every_s3_client_has_the_configured_endpoint_region_and_finite_timeouts() -> None:
    settings = S3Config(endpoint_url="http://127.0.0.1:1", region="eu-west-3")
    client = open_store("s3://bucket/prefix", settings).s3
    assert (client.meta.endpoint_url, client.meta.region_name) == ("http://127.0.0.1:1", "eu-west-3")
    assert client.meta.config.connect_timeout == CLIENT_OPTIONS["connect_timeout"] < 60
    assert client.meta.config.read_timeout == CLIENT_OPTIONS["read_timeout"] <= 60
    assert client.meta.config.retries["mode"] == "standard"  # throttling and 5xx are retried
