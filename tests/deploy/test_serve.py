"""`talkmill serve`: deployments a user triggers through the Prefect API, the talks budget, the form's schema."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.conftest import Service
from tests.deploy.prefect_server import api, wait_final

DEPLOYMENT = "content_to_video/content-to-video"
CONTENT = "# Hello\n\nHello from the service. This is a test.\n"


@pytest.fixture
def prefect_client_settings(service: Service) -> Iterator[None]:
    """This process's Prefect client pointed at the session's server (as a user's PREFECT_API_URL is)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: service.prefect.api_url}):
        yield


def trigger(parameters: dict[str, Any]) -> Any:
    from prefect.deployments import run_deployment

    return run_deployment(DEPLOYMENT, parameters=parameters, timeout=0, as_subflow=False)


@pytest.fixture(scope="module")
def api_run(service: Service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One content_to_video run started through the API with its parameters, awaited to its end."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    work = tmp_path_factory.mktemp("api-run")
    (work / "hello.md").write_text(CONTENT)
    with temporary_settings(updates={PREFECT_API_URL: service.prefect.api_url}):
        run = trigger({"sources": [str(work / "hello.md")], "output": str(work / "out")})
    final = wait_final(service.prefect, str(run.id), 180)
    return {"run": final, "out": work / "out"}


def test_a_run_triggered_through_the_api_writes_videos_and_manifest(api_run: dict[str, Any]) -> None:
    assert api_run["run"]["state_type"] == "COMPLETED", api_run["run"]["state"]
    manifests = list((api_run["out"] / "runs").glob("*/manifest.jsonl"))
    assert len(manifests) == 1
    rows = [json.loads(line) for line in manifests[0].read_text().splitlines()]
    assert [row["status"] for row in rows] == ["done"]
    video = api_run["out"] / rows[0]["video_key"]
    assert video.suffix == ".mp4" and video.stat().st_size == rows[0]["size_bytes"] > 10_000
    assert (manifests[0].parent / "gallery.html").exists()


def test_runs_use_the_deployment_defaults_for_what_the_form_leaves_out(api_run: dict[str, Any],
                                                                       service: Service) -> None:
    parameters = api_run["run"]["parameters"]
    assert parameters["config"] == str(service.config)  # from `talkmill serve --config`
    # serve's engine reaches the runs through their environment: the form shows no internal random-port URL
    assert "talks_url" not in parameters and "wait" not in parameters
    deployment = api(service.prefect, "GET", f"/deployments/name/{DEPLOYMENT}")
    assert "talks_url" not in deployment["parameters"]


def test_serve_creates_the_global_talks_budget(service: Service) -> None:
    limit = api(service.prefect, "GET", "/v2/concurrency_limits/talkmill-talks")
    assert limit["limit"] == 3 and limit["active"]


def test_the_deployment_enforces_its_parameter_schema(service: Service, prefect_client_settings: None) -> None:
    from prefect.exceptions import PrefectHTTPStatusError

    deployment = api(service.prefect, "GET", f"/deployments/name/{DEPLOYMENT}")
    assert deployment["enforce_parameter_schema"] is True
    properties = deployment["parameter_openapi_schema"]["properties"]
    assert "Files, folders" in properties["sources"]["description"]  # the form shows the docstring
    with pytest.raises(PrefectHTTPStatusError) as refused:
        trigger({"sources": ["x.md"], "concurrency": "many"})
    assert refused.value.response.status_code in (409, 422)


def test_a_bad_source_fails_the_run_not_the_service(service: Service, prefect_client_settings: None,
                                                    tmp_path: Path) -> None:
    run = trigger({"sources": [str(tmp_path / "missing.md")], "output": str(tmp_path / "out")})
    assert wait_final(service.prefect, str(run.id), 120)["state_type"] == "FAILED"
    assert api(service.prefect, "GET", f"/deployments/name/{DEPLOYMENT}")["status"] == "READY"


# -- deploy/prefect.yaml, for `prefect deploy --all` with a process work pool ------------------------------


def test_prefect_yaml_names_real_flows_with_valid_parameters_and_schedules() -> None:
    import importlib.util
    from datetime import timedelta

    import jsonschema
    import yaml
    from prefect import Flow
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
    from prefect.utilities.callables import parameter_schema

    root = Path(__file__).resolve().parents[2]
    spec = yaml.safe_load((root / "deploy" / "prefect.yaml").read_text())
    names = {}
    for deployment in spec["deployments"]:
        path, _, attribute = deployment["entrypoint"].partition(":")
        module_spec = importlib.util.spec_from_file_location(f"entry_{attribute}", root / path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        flow = getattr(module, attribute)
        assert isinstance(flow, Flow)
        names[f"{flow.name}/{deployment['name']}"] = flow
        schema = parameter_schema(flow).model_dump_for_openapi()
        assert deployment["enforce_parameter_schema"] is True
        assert deployment["work_pool"]["name"] == "talkmill"
        for schedule in deployment.get("schedules", []):  # a long-running watcher has none
            jsonschema.validate({**deployment["parameters"], **schedule.get("parameters", {})}, schema)
            if "cron" in schedule:
                CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
            else:
                IntervalSchedule(interval=timedelta(seconds=schedule["interval"]))
    assert {DEPLOYMENT, "bucket_watch/bucket-watch"} <= set(names)
    watcher = next(d for d in spec["deployments"] if d["name"] == "bucket-watch")
    assert watcher["parameters"]["deployment"] in names  # the watcher starts a deployment that exists


# -- serve on its own: its Prefect server and engine are its children ------------------------------------------


def start_serve(work: Path, port: int) -> tuple[subprocess.Popen, Path]:
    """`talkmill serve --port PORT` with no PREFECT_API_URL, in `work` (its .talkmill/ there), an engine
    without workers (nothing renders here); ready once it prints the UI's address."""
    from tests.deploy.conftest import TALKMILL
    from tests.deploy.prefect_server import wait_for

    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(TALKMILL_ENGINE_WORKERS="0", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    log = work / f"serve-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(TALKMILL), "serve", "--port", str(port)], cwd=work, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def ready() -> bool:
        assert process.poll() is None, f"talkmill serve exited with {process.returncode}:\n{log.read_text()}"
        return "Prefect UI at" in log.read_text()

    wait_for(ready, 240, f"talkmill serve ready (log {log})", interval=0.5)
    return process, log


def children_of_serve(work: Path, port: int) -> dict[str, int]:
    """What serve started and where it listens: {'server': port, 'engine': port}."""
    return {"server": port, "engine": int((work / ".talkmill" / "engine" / "local_port").read_text())}


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def own_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    from tests.deploy.prefect_server import free_port

    work = tmp_path_factory.mktemp("own-serve")
    yield work, free_port()
    for pid_file in work.rglob("server.json"):  # a failed test must not leave a server behind
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(json.loads(pid_file.read_text())["pid"], signal.SIGKILL)


def test_serve_wires_the_ui_to_its_port_refuses_a_taken_port_and_stops_on_sigterm(
        own_serve: tuple[Path, int], tmp_path: Path) -> None:
    from tests.deploy.conftest import TALKMILL

    work, port = own_serve
    assert port != 4200
    process, _ = start_serve(work, port)
    try:
        ui = httpx.get(f"http://127.0.0.1:{port}/ui-settings", timeout=10).json()  # what the UI's page reads
        assert ui["api_url"] == f"http://127.0.0.1:{port}/api"
        assert (work / ".talkmill" / "prefect" / "prefect.db").exists()  # its own home, not ~/.prefect
        taken = subprocess.run([str(TALKMILL), "serve", "--port", str(port)], cwd=tmp_path,
                               capture_output=True, text=True, timeout=120,
                               env={**os.environ, "PREFECT_API_URL": ""})
        assert taken.returncode == 2, taken.stderr
        assert f"port {port} on 127.0.0.1 is in use by pid " in taken.stderr and "prefect" in taken.stderr
        assert "Traceback" not in taken.stderr
        ports = children_of_serve(work, port)
    finally:
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        stopped_in = time.monotonic() - started
    print(f"SIGTERM to exit: {stopped_in:.1f} s")
    assert stopped_in < 10 and code == 0
    assert not any(listening(p) for p in ports.values()), ports


def test_a_sigkilled_serve_leaves_nothing_listening(own_serve: tuple[Path, int]) -> None:
    from tests.deploy.prefect_server import wait_for

    work, port = own_serve
    process, _ = start_serve(work, port)
    ports = children_of_serve(work, port)
    assert all(listening(p) for p in ports.values())
    process.kill()
    process.wait()
    wait_for(lambda: not any(listening(p) for p in ports.values()), 5, f"nothing listening on {ports}")
