"""The distribution as a user installs it: a wheel built from the checkout, installed WITHOUT the engine extra
into a fresh virtualenv outside the checkout (the Prefect worker's install), plans a Markdown file in a dry run
with the built-in portrait. Versions come from uv.lock, so the install is the locked set (from uv's cache).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".cache" / "uv" / "bin" / "uv"  # scripts/bootstrap installs it
PACKAGES = ("flows", "tasks", "connectors", "talkmill", "talks_contract", "talkmill_engine")

pytestmark = pytest.mark.skipif(not UV.exists(), reason="uv comes with scripts/bootstrap")


def uv(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(UV), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    uv("build", "--wheel", "--out-dir", out, ROOT, cwd=ROOT)
    (built,) = out.glob("talkmill-*.whl")
    return built


def test_the_wheel_holds_every_package_and_the_default_portrait(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} >= set(PACKAGES)
    assert "talkmill/assets/grace_hopper.jpg" in names
    assert not [name for name in names if name.startswith(("tests/", "engine/", "examples/"))]


def test_a_worker_install_without_the_engine_runs_a_dry_run(wheel: Path, tmp_path: Path):
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(uv("export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes",
                              "--format", "requirements-txt", cwd=ROOT))
    venv = tmp_path / "venv"
    uv("venv", "--python", sys.executable, venv, cwd=tmp_path)
    uv("pip", "install", "--python", venv / "bin" / "python", "-c", constraints, wheel, cwd=tmp_path)
    python = venv / "bin" / "python"
    missing = subprocess.run([python, "-c", "import talkmill_engine.api.app"], capture_output=True, cwd=tmp_path)
    assert missing.returncode != 0, "the engine's dependencies must come with the extra only"

    work = tmp_path / "work"
    work.mkdir()
    (work / "note.md").write_text("# A note\n\nThe wheel plans this paragraph without the checkout.\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "VIRTUAL_ENV"))}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    talkmill = venv / "bin" / "talkmill"
    command = [talkmill, "run", "note.md", "--dry-run", "--output", "out"]
    try:
        run = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
        manifest = next((work / "out" / "runs").glob("*/manifest.jsonl")).read_text()
        assert '"status": "planned"' in manifest and "grace_hopper.jpg" in manifest
        assert str(ROOT) not in manifest, "the default portrait must come from the installed package"

        real = subprocess.run(command[:3] + ["--output", "out"], cwd=work, env=env, capture_output=True, text=True,
                              timeout=300)
        assert real.returncode == 2 and "talkmill[engine]" in real.stderr, real.stderr[-3000:]
        assert "Traceback" not in real.stderr
    finally:  # the run started a local Prefect server for the work folder: no test leaves one running
        subprocess.run([talkmill, "server", "stop"], cwd=work, env=env, capture_output=True, timeout=60, check=False)
