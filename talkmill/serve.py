"""`talkmill serve`: talkmill as a service on one machine.

    Prefect server (127.0.0.1:4200, unless PREFECT_API_URL names one) → the global talks budget
    → one shared local engine (unless the config names a backend) → serve both deployments here

The deployments are served by this process (Prefect's `serve`): each flow run is a subprocess of it, so no
work pool or worker is needed. Every run shares one engine, started here once: an engine per run would
pay its start-up each time, and two runs on the same engine data dir would stop each other's engine. The
global concurrency limit "talkmill-talks" caps the talks in flight across all runs (each run still bounds
its own talks inside it). Ctrl-C stops the runner, the engine and the server we started, in that order.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx

from talkmill.config import PipelineConfig, load_config

SERVER_START_TIMEOUT = 120.0  # a first start migrates a fresh database


@dataclass
class ServeOptions:
    port: int = 4200
    inbox: str | None = None  # None: no bucket-watch deployment
    output: str | None = None
    config: Path | None = None
    watch_interval: float = 30.0
    talks_budget: int | None = None  # None: backend.concurrency from the config


def serve(options: ServeOptions) -> None:
    """Blocks until Ctrl-C (or SIGTERM)."""
    settings = load_config(options.config)
    with ExitStack() as stack:
        api_url = stack.enter_context(prefect_server(options.port))
        budget = options.talks_budget or settings.backend.concurrency
        set_talks_budget(budget)
        defaults = stack.enter_context(shared_engine(settings))
        deployments = build_deployments(options, defaults)
        print(f"talkmill serve: Prefect UI at {api_url.removesuffix('/api')} "
              f"(talks budget {budget}; Ctrl-C stops)", flush=True)
        import prefect

        prefect.serve(*deployments, print_starting_message=False)


@contextmanager
def prefect_server(port: int) -> Iterator[str]:
    """The API URL: the one configured (PREFECT_API_URL) as it is, else a server started here."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    url = f"http://127.0.0.1:{port}/api"
    process = _start_server(port)
    try:
        _wait_healthy(url, process)
        os.environ["PREFECT_API_URL"] = url  # the runs, subprocesses of the runner, inherit it
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        _stop(process)


def _start_server(port: int) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED", "false")}
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    print(f"talkmill serve: starting the Prefect server on 127.0.0.1:{port}", flush=True)
    # its own session: Ctrl-C in the terminal reaches us, and we stop it after the runner
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, start_new_session=True)


def _wait_healthy(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with {process.returncode} (is the port free?)")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    _stop(process)
    raise TimeoutError(f"the Prefect server did not answer at {url} within {SERVER_START_TIMEOUT:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def set_talks_budget(limit: int) -> None:
    """Create (or resize) the global concurrency limit every run's talks hold a slot of."""
    from prefect.client.orchestration import get_client

    from tasks.talks import TALKS_LIMIT

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(TALKS_LIMIT, limit)


@contextmanager
def shared_engine(settings: PipelineConfig) -> Iterator[dict[str, Any]]:
    """Parameter defaults pointing content_to_video at one engine for all runs; none when the config
    names a backend (a url, or a kind without a local engine). Its key goes into the environment the runs
    inherit; they poll (a run has no webhook receiver address the shared engine could know in advance)."""
    from connectors.talks import needs_local_engine
    from connectors.talks.local import start_local_engine

    if not needs_local_engine(settings.backend):
        yield {}
        return
    print("talkmill serve: starting the engine", flush=True)
    engine = start_local_engine()
    print(f"talkmill serve: the engine is at {engine.url} ({engine.data_dir})", flush=True)
    os.environ[settings.backend.key_env] = engine.key
    try:
        yield {"talks_url": engine.url, "wait": "poll"}
    finally:
        engine.stop()


def build_deployments(options: ServeOptions, engine_defaults: dict[str, Any]) -> list[Any]:
    """content-to-video (parameters from the UI form, schema enforced) and, with an inbox, bucket-watch."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    from flows.bucket_watch import bucket_watch
    from flows.content_to_video import content_to_video

    shared = {"output": _absolute(options.output), "config": _absolute(options.config)}
    shared = {key: value for key, value in shared.items() if value is not None}
    deployments = [content_to_video.to_deployment(
        name="content-to-video", enforce_parameter_schema=True, parameters={**shared, **engine_defaults},
        description="Content in (files, folders, URLs, s3:// keys), presenter videos and a manifest out.",
        tags=["talkmill"],
    )]  # fmt: skip
    if options.inbox:
        deployments.append(bucket_watch.to_deployment(
            name="bucket-watch", interval=options.watch_interval, enforce_parameter_schema=True,
            # one tick at a time: a tick due while one still runs is cancelled, not queued (claims make a
            # second watcher safe, but a backlog of ticks only burns CPU)
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
            parameters={"inbox": _absolute(options.inbox), **shared}, tags=["talkmill"],
            description="Each new file in the inbox starts one content-to-video run.",
        ))  # fmt: skip
    return deployments


def _absolute(value: str | Path | None) -> str | None:
    """Local paths made absolute: runs may start in another directory. URIs unchanged."""
    if value is None:
        return None
    text = str(value)
    return text if "://" in text else str(Path(text).expanduser().resolve())
