"""Fixtures for the end-to-end tests of the content_to_video flow: one Prefect test server and one local
engine for the whole session, and helpers to run the flow and read what it leaves behind.

Test modules that run flows opt in with `pytestmark = pytest.mark.usefixtures("prefect_harness")`, so the
unit tests in this folder do not pay for Prefect's server.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"  # before Prefect reads its settings

from talkmill_engine.local import LocalEngine

CONTENT = Path(__file__).parent / "content"  # guide.md (2 sections), rows.csv (2 rows), note.txt, a portrait
TALKMILL = Path(sys.executable).parent / "talkmill"


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[str]:
    """Prefect's temporary server and database for every flow run of the session; its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def talks_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEngine]:
    """The local engine (2 workers) that flows reach as a remote backend: `talks_url=talks_engine.url`."""
    engine = LocalEngine(tmp_path_factory.mktemp("talks-engine"), workers=2).start()
    yield engine
    engine.stop()


@pytest.fixture
def engine_key(talks_engine: LocalEngine, monkeypatch: pytest.MonkeyPatch) -> LocalEngine:
    """The shared engine, its key in TALKMILL_TALKS_KEY as a remote backend's would be."""
    monkeypatch.setenv("TALKMILL_TALKS_KEY", talks_engine.key)
    return talks_engine


# -- helpers -----------------------------------------------------------------------------------------


def run_flow(sources: list[str | Path], **options: Any) -> Any:
    """content_to_video, called as a library user would; its RunSummary (also of a run with failed rows,
    which raises RowsFailedError carrying it)."""
    from flows.content_to_video import content_to_video
    from talkmill.errors import RowsFailedError

    try:
        return asyncio.run(content_to_video([str(source) for source in sources], **options))
    except RowsFailedError as e:
        return e.summary


def engine_talks(engine: LocalEngine) -> list[dict[str, Any]]:
    """Every talk the engine holds (GET /talks, all pages)."""
    talks: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 1000}
    headers = {"Authorization": f"Bearer {engine.key}"}
    with httpx.Client(base_url=engine.url, headers=headers, timeout=10) as http:
        while True:
            page = http.get("/talks", params=params).raise_for_status().json()
            talks += page["talks"]
            if not page.get("token"):
                return talks
            params["token"] = page["token"]


def write_config(folder: Path, settings: dict[str, Any]) -> str:
    path = folder / "talkmill.yaml"
    path.write_text(yaml.safe_dump(settings))
    return str(path)


def local_file(uri: str) -> Path:
    assert uri.startswith("file://"), uri
    return Path(uri.removeprefix("file://"))


def manifest_rows(summary: Any) -> list[dict[str, Any]]:
    """The rows of a local run's manifest.jsonl."""
    text = local_file(summary.manifest["manifest.jsonl"]).read_text()
    return [json.loads(line) for line in text.splitlines()]


def statuses(rows: list[dict[str, Any]]) -> list[str]:
    return [row["status"] for row in rows]


def seconds_between(earlier: str, later: str) -> float:
    """Between two ISO 8601 stamps (the engine's and the manifest's "…Z")."""
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def grey_png(path: Path) -> Path:
    """A flat grey 256×256 image: a valid PNG with no face in it."""
    from tests.engine.helpers import png_bytes

    path.write_bytes(png_bytes(256, 256))
    return path


def cli_env(prefect_api_url: str, **extra: str) -> dict[str, str]:
    """The environment of a `talkmill run` subprocess: the session's Prefect server (no ephemeral one of
    its own to start), quiet logs, the width of a CI log."""
    env = {**os.environ, "PREFECT_API_URL": prefect_api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "COLUMNS": "80", **extra}
    env.pop("TALKMILL_TALKS_WEBHOOK_URL", None)
    return env
