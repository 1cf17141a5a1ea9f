"""`talkmill serve`: talkmill as a service on one machine.

    Prefect server (127.0.0.1:4200, unless PREFECT_API_URL names one) → the global talks budget
    → one shared local engine (unless the config names a backend) → serve both deployments here

The deployments are served by this process (Prefect's Runner): each flow run is a subprocess of it, so no
work pool or worker is needed. Every run shares one engine, started here once, and given to the runs by
its URL; a `talkmill run` from the same directory finds it too and leaves it running (the engine's owner
record, talkmill_engine.local). The global concurrency limit "talkmill-talks" caps the talks in flight
across all runs (each run still bounds its own talks inside it).

The server's home (its database: the dashboard) is .talkmill/prefect here, not ~/.prefect, so earlier
unrelated runs do not fill it. The server and the engine die with this process, even when it is
SIGKILLed (a parent-death signal); Ctrl-C or SIGTERM stops the runner, the engine and the server within
STOP_DEADLINE seconds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from talkmill import local_prefect
from talkmill.config import PipelineConfig, load_config

STOP_DEADLINE = 8.0  # seconds from SIGTERM or Ctrl-C to exit, whatever still hangs
CHILD_GRACE = 4.0  # each child's before SIGKILL: the engine, then the server, both inside STOP_DEADLINE


@dataclass
class ServeOptions:
    port: int = 4200
    host: str = "127.0.0.1"
    inbox: str | None = None  # None: no bucket-watch deployment
    output: str | None = None
    config: Path | None = None
    watch_interval: float = 30.0
    talks_budget: int | None = None  # None: backend.concurrency from the config


def serve(options: ServeOptions) -> None:
    """Blocks until Ctrl-C or SIGTERM. Call talkmill.local_prefect.use_home before Prefect is imported."""
    settings = load_config(options.config)
    kill_switch = _KillSwitch()
    with ExitStack() as stack:
        stack.enter_context(kill_switch.armed())
        api_url = stack.enter_context(prefect_server(options.host, options.port, kill_switch))
        budget = options.talks_budget or settings.backend.concurrency
        set_talks_budget(budget)
        defaults = stack.enter_context(shared_engine(settings, kill_switch))
        deployments = build_deployments(options, defaults)
        print(f"talkmill serve: Prefect UI at {api_url.removesuffix('/api')} "
              f"(talks budget {budget}; Ctrl-C stops)", flush=True)
        if options.inbox:
            start_watcher(deployments[-1])
        else:
            _resume_in_background(stack)
        _run_runner(deployments)
        print("talkmill serve: stopping", flush=True)


def _run_runner(deployments: list[Any]) -> None:
    """Prefect's Runner, as prefect.serve runs it, but SIGTERM is ours: its own handler waits for the
    flow runs it cancels (the ~110 s a SIGTERM took)."""
    from prefect.runner import Runner

    runner = Runner(pause_on_shutdown=True)
    runner.handle_sigterm = _raise_interrupt  # Runner.start installs this one for SIGTERM
    for deployment in deployments:
        runner.add_deployment(deployment)
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        pass


def _raise_interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


class _KillSwitch:
    """Ctrl-C or SIGTERM unwinds serve in order; a timer makes sure it ends within STOP_DEADLINE: what
    still runs then is SIGKILLed (the children's process groups) and the process exits."""

    def __init__(self) -> None:
        self.groups: list[Callable[[], int | None]] = []  # each: a child's process group id, or None
        self._timer: threading.Timer | None = None

    @contextmanager
    def armed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self._timer is not None:
                self._timer.cancel()

    def _on_signal(self, *_: Any) -> None:
        if self._timer is None:
            self._timer = threading.Timer(STOP_DEADLINE, self._kill_all)
            self._timer.daemon = True
            self._timer.start()
            raise KeyboardInterrupt
        self._kill_all()  # a second Ctrl-C: no more waiting

    def _kill_all(self) -> None:
        for group in self.groups:
            if (pid := group()) is not None:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        os._exit(143)


@contextmanager
def prefect_server(host: str, port: int, kill_switch: _KillSwitch) -> Iterator[str]:
    """The API URL: the one configured (PREFECT_API_URL) as it is, or the server `talkmill run` keeps
    under .talkmill/prefect if it runs, else a server started here (and recorded there, so runs beside
    serve use it too)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    with ExitStack() as stack:
        running = local_prefect.running_server()
        if running and running.role == "serve":
            raise local_prefect.PortInUseError(
                f"talkmill serve already runs in this directory (its Prefect server: pid {running.pid}, "
                f"{running.api_url}): stop it first, or serve from another directory")
        if running:
            url = running.api_url
            print(f"talkmill serve: using the Prefect server `talkmill run` started, at {url} (not --port)",
                  flush=True)
        else:
            url = stack.enter_context(_own_server(host, port, kill_switch))
        os.environ["PREFECT_API_URL"] = url  # the runs, subprocesses of the runner, inherit it
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url


@contextmanager
def _own_server(host: str, port: int, kill_switch: _KillSwitch) -> Iterator[str]:
    url = f"http://{'127.0.0.1' if host in local_prefect.ANY_ADDRESS else host}:{port}/api"
    home = local_prefect.home()
    home.mkdir(parents=True, exist_ok=True)
    print(f"talkmill serve: starting the Prefect server on {host}:{port} (home {home})", flush=True)
    process = local_prefect.start_server(host, port, home / "server.log", die_with_parent=True)
    kill_switch.groups.append(lambda: process.pid if process.poll() is None else None)
    try:
        local_prefect.wait_healthy(url, process, home / "server.log")
        if url.startswith("http://127.0.0.1:"):  # runs beside serve find it
            local_prefect.write_record(home, process.pid, port, role="serve")
        yield url
    finally:
        local_prefect.forget_record(home, process.pid)
        local_prefect.stop_group(process, grace=CHILD_GRACE)


def set_talks_budget(limit: int) -> None:
    """Create (or resize) the global concurrency limit every run's talks hold a slot of."""
    from prefect.client.orchestration import get_client

    from tasks.talks import TALKS_LIMIT

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(TALKS_LIMIT, limit)


@contextmanager
def shared_engine(settings: PipelineConfig,
                  kill_switch: _KillSwitch | None = None) -> Iterator[dict[str, Any]]:
    """One engine for all runs, unless the config names a backend (a url, or a kind without a local
    engine). Its URL and key go into the environment the runs inherit; they poll (a run has no webhook
    receiver address the shared engine could know in advance). Yields parameter defaults (none now)."""
    from connectors.talks import needs_local_engine
    from connectors.talks.local import start_local_engine

    if not needs_local_engine(settings.backend):
        yield {}
        return
    print("talkmill serve: starting the engine", flush=True)
    engine = start_local_engine(role="serve")
    if kill_switch is not None:
        kill_switch.groups.append(lambda: engine.pid)
    print(f"talkmill serve: the engine is at {engine.url} ({engine.data_dir})", flush=True)
    from talkmill.config import TALKS_URL_ENV, TALKS_WAIT_ENV

    # the runs (subprocesses of the runner) inherit these: the run form shows no internal random-port URL
    os.environ.update({settings.backend.key_env: engine.key, TALKS_URL_ENV: engine.url, TALKS_WAIT_ENV: "poll"})
    try:
        yield {}
    finally:
        engine.stop(grace=CHILD_GRACE)


def build_deployments(options: ServeOptions, engine_defaults: dict[str, Any]) -> list[Any]:
    """content-to-video (parameters from the UI form, schema enforced) and, with an inbox, bucket-watch."""
    from flows.bucket_watch import bucket_watch
    from flows.content_to_video import content_to_video

    shared = {"output": _absolute(options.output), "config": _absolute(options.config)}
    shared = {key: value for key, value in shared.items() if value is not None}
    deployments = [content_to_video.to_deployment(
        name="content-to-video", enforce_parameter_schema=True, parameters={**shared, **engine_defaults},
        description="Content in (files, folders, URLs, s3:// keys), presenter videos and a manifest out.",
        tags=["talkmill"],
    )]  # fmt: skip
    if options.inbox:  # no schedule: ONE long-running run watches (start_watcher), resuming crashed runs too
        deployments.append(bucket_watch.to_deployment(
            name="bucket-watch", enforce_parameter_schema=True, tags=["talkmill"],
            parameters={"inbox": _absolute(options.inbox), "interval": options.watch_interval, **shared},
            description="One long-running watcher: each new file in the inbox starts one content-to-video "
                        "run; crashed runs are resumed.",
        ))  # fmt: skip
    return deployments


def start_watcher(deployment: Any) -> None:
    """One bucket-watch run for the runner to pick up; a watcher an earlier serve left behind (SIGKILLed)
    is marked Crashed first, so that two never watch for one serve."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    deployment_id = deployment.apply()  # the runner applies it again: the same id
    alive = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING,
                                                                  StateType.RUNNING]))
    ours = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(state=alive), deployment_filter=ours):
            client.set_flow_run_state(run.id, Crashed(message="its talkmill serve stopped"), force=True)
        client.create_flow_run_from_deployment(deployment_id, tags=["talkmill"])


def _resume_in_background(stack: ExitStack, every: float = 30) -> None:
    """Without an inbox (whose watcher does it), crashed content-to-video runs are resumed from a thread:
    a scheduled deployment would add a run a minute to the Runs page."""
    stop = threading.Event()

    def loop() -> None:
        from flows.resume import resume_crashed

        while not stop.wait(every):
            try:
                resume_crashed()
            except Exception as error:  # the API restarting, a network blip: try again next time
                print(f"talkmill serve: resuming crashed runs failed: {error}", flush=True)

    threading.Thread(target=loop, name="resume-crashed", daemon=True).start()
    stack.callback(stop.set)


def _absolute(value: str | Path | None) -> str | None:
    """Local paths made absolute: runs may start in another directory. URIs unchanged."""
    if value is None:
        return None
    text = str(value)
    return text if "://" in text else str(Path(text).expanduser().resolve())
