"""`talkmill serve`: deployments a user triggers through the Prefect API, the talks budget, the form's schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    assert parameters["wait"] == "poll" and parameters["talks_url"].startswith("http://127.0.0.1:")


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
        for schedule in deployment["schedules"]:
            jsonschema.validate({**deployment["parameters"], **schedule.get("parameters", {})}, schema)
            if "cron" in schedule:
                CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
            else:
                IntervalSchedule(interval=timedelta(seconds=schedule["interval"]))
    assert set(names) == {DEPLOYMENT, "bucket_watch/bucket-watch"}
    watcher = next(d for d in spec["deployments"] if d["name"] == "bucket-watch")
    assert watcher["parameters"]["deployment"] in names  # the watcher starts a deployment that exists
