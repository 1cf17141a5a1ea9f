"""Schemathesis fuzzes a real engine (`--workers 0`: it accepts, never renders) from its own OpenAPI schema:
no answer may be a server error, and every answer must be one the schema documents (status, content type,
headers, body). A few talks exist first, so the schema's links lead the stateful phase to real ones.

Bounded to a few dozen cases per operation (about a minute on two cores); a failure prints schemathesis's
report, with a `curl` line reproducing each case.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.helpers import KEY, Engine, start_engine

pytestmark = pytest.mark.timeout(300)  # a hung run fails here, not at the suite's 600 s

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance", "unsupported_method")  # fmt: skip
MAX_EXAMPLES = 25  # per operation and phase
SEED = 8  # reproducible: the same cases each run


@pytest.fixture(scope="module")
def idle_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = start_engine(tmp_path_factory.mktemp("fuzz") / "data", workers=0)
    with engine.client() as http:
        for n in range(3):
            body = {"source_url": "http://127.0.0.1:9/portrait.jpg", "script": {"type": "text", "input": f"Talk {n}."}}
            assert http.post("/talks", json=body).status_code == 201
    yield engine
    engine.kill()


def test_fuzzing_the_openapi_schema_finds_no_server_error_and_no_undocumented_answer(
    idle_engine: Engine, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{idle_engine.url}/openapi.json",
        "--header", f"Authorization: Bearer {KEY}", "--checks", ",".join(CHECKS),
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1", "--no-color",
        "--request-timeout", "30", "--report", "json", "--report-json-path", str(report),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=280, cwd=tmp_path)
    summary = f"{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
    assert run.returncode == 0, f"schemathesis failed:\n{summary}"
    cases = json.loads(report.read_text())["test_cases"]
    print(f"schemathesis: {cases}")  # the figures, for a reader of -s output
    assert (cases["with_failures"], cases["errored"]) == (0, 0), summary
    assert cases["generated"] >= 300, summary  # it reached every operation, not just loaded the schema
