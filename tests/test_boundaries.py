"""The seams between the parts, checked on the source: every import, also the ones inside functions.

    pipeline (flows, tasks, connectors, talkmill) ──▶ talks_contract ◀── engine (talkmill_engine)
            └── imports the engine at ONE place only: the start of the local engine (connectors/talks)

talks_contract is the standard library only (boto3 inside its S3 factory, imported when called), and the
pipeline's core (talkmill/ but its CLI and `serve`) has no Prefect in it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ("flows", "tasks", "connectors", "talkmill")
ENGINE = ROOT / "engine" / "talkmill_engine"
CONTRACT = ROOT / "talks_contract"
CORE_WITH_PREFECT = {"cli.py", "run_cli.py", "serve.py"}  # the command line and `talkmill serve` drive Prefect


def imported(path: Path) -> set[str]:
    """The top-level package of every absolute import in a file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def sources(*folders: Path) -> list[Path]:
    files = [path for folder in folders for path in sorted(folder.rglob("*.py"))]
    assert files, folders
    return files


def importers(files: list[Path], package: str) -> list[str]:
    return [str(path.relative_to(ROOT)) for path in files if package in imported(path)]


def test_the_engine_imports_nothing_of_the_pipeline():
    for package in PIPELINE:
        assert importers(sources(ENGINE), package) == [], f"the engine imports {package}"


def test_the_pipeline_imports_the_engine_only_where_it_starts_the_local_engine():
    found = importers(sources(*(ROOT / package for package in PIPELINE)), "talkmill_engine")
    assert len(found) == 1 and found[0].startswith("connectors/talks/"), found


def test_the_contract_is_the_standard_library_and_itself():
    allowed = set(sys.stdlib_module_names) | {"talks_contract", "__future__"}
    for path in sources(CONTRACT):
        extra = imported(path) - allowed - ({"boto3", "botocore"} if path.name == "s3.py" else set())
        assert not extra, f"{path.relative_to(ROOT)} imports {sorted(extra)}"


@pytest.mark.parametrize("package", ["talkmill", "talks_contract"])
def test_the_core_has_no_prefect(package: str):
    files = [path for path in sources(ROOT / package) if path.name not in CORE_WITH_PREFECT]
    assert importers(files, "prefect") == []


def test_both_halves_import_the_contract():
    """The contract is where the shared facts live: both halves really use it."""
    assert importers(sources(ENGINE), "talks_contract")
    assert importers(sources(*(ROOT / package for package in PIPELINE)), "talks_contract")
