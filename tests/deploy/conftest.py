"""Fixtures for talkmill's service tests: one real Prefect server and one `talkmill serve` for the session,
serving both deployments against it, the engine it starts, and an inbox on SeaweedFS.

`talkmill serve` runs as a subprocess, exactly as a user starts it; the tests reach it only through the
Prefect API, the S3 server and the output folder.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.deploy.prefect_server import PrefectServer, api, running_prefect_server, stop, wait_for
from tests.s3server import S3Server

TALKMILL = Path(sys.executable).parent / "talkmill"
INBOX = "s3://inbox/drop/"
WATCH_INTERVAL = 8  # seconds between two looks of the one watcher run at the inbox


@dataclass(frozen=True)
class Service:
    prefect: PrefectServer
    output: Path  # where runs write unless told otherwise
    config: Path  # the runs' pipeline config (the S3 endpoint)
    s3: S3Server
    log: Path

    def env(self) -> dict[str, str]:
        return self.prefect.env(AWS_ACCESS_KEY_ID=self.s3.access_key, AWS_SECRET_ACCESS_KEY=self.s3.secret_key,
                                AWS_DEFAULT_REGION="us-east-1", PREFECT_LOGGING_LEVEL="INFO")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    with running_prefect_server(tmp_path_factory.mktemp("prefect-home")) as server:
        yield server


@pytest.fixture(scope="session")
def service(prefect_server: PrefectServer, seaweedfs: S3Server,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`talkmill serve --inbox s3://inbox/drop/` against the session's Prefect server, its engine in its
    own working directory; ready once both deployments are registered."""
    work = tmp_path_factory.mktemp("serve")
    config = work / "talkmill.yaml"
    config.write_text(yaml.safe_dump({"s3": {"endpoint_url": seaweedfs.endpoint_url}}))
    service = Service(prefect_server, work / "out", config, seaweedfs, work / "serve.log")
    command = [str(TALKMILL), "serve", "--inbox", INBOX, "--output", str(service.output), "--config", str(config),
               "--watch-interval", str(WATCH_INTERVAL), "--talks-budget", "3"]
    with service.log.open("wb") as log:
        process = subprocess.Popen(command, cwd=work, env=service.env(), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_for(lambda: _registered(service, process), 120, f"talkmill serve ready (log: {service.log})")
        yield service
    finally:
        stop(process, grace=40)  # SIGTERM: the runner stops, then the engine


def _registered(service: Service, process: subprocess.Popen) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"talkmill serve exited with {process.returncode}:\n{service.log.read_text()[-3000:]}")
    names = {item["name"] for item in api(service.prefect, "POST", "/deployments/filter")}
    return {"content-to-video", "bucket-watch"} <= names and "Prefect UI at" in service.log.read_text()
