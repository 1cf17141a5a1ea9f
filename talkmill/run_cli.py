"""`talkmill run`: the content_to_video flow from a terminal, with a progress bar and a summary table."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flows.server_settings import batch_task_run_recording

console = Console(stderr=True)


QUIET_SERVICES = ("EventsWorker", "APILogWorker")  # prefect._internal.concurrency.services loggers


def quiet_prefect(verbose: bool) -> None:
    """Before Prefect is imported: its settings are read at import time. Unless verbose, Prefect's own
    loggers stay quiet: the CLI reports outcomes itself (a refused input is a message, not the flow
    engine's traceback), and the Prefect UI keeps the full logs."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect's temporary API (a run without PREFECT_API_URL) took 24-80 s to start on a loaded 2-core
    # machine; its default 20 s wait then kills the run with a traceback. Wait as long as that can take.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    batch_task_run_recording()  # for the server this run or serve starts (talkmill's own, or a temporary one)
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
        # Prefect's client services log outside the "prefect" tree, so the level above misses them: their
        # "Still processing items" while they send the last events at exit (after a refusal, too) is noise
        for service in QUIET_SERVICES:
            logging.getLogger(service).setLevel(logging.ERROR)


NO_SERVER = ("talkmill: could not start the local Prefect server ({reason}); start `talkmill serve` in this "
             "directory, or set PREFECT_API_URL to a Prefect server's API")


def use_local_server() -> bool:
    """Before Prefect is imported. Unless the user named a Prefect API, the run uses the server kept under
    .talkmill/prefect (started on first use, detached, restarted if it died): the next run starts in
    seconds, every run shows in one UI, and no task run is lost when a temporary API stops with the run.
    False (after one line on stderr) when it cannot start."""
    from talkmill import local_prefect

    if local_prefect.configured_api_url():
        return True
    try:
        local_prefect.use_home(local_prefect.home())
        os.environ["PREFECT_API_URL"] = local_prefect.ensure_server()
    except (OSError, RuntimeError, TimeoutError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        console.print(NO_SERVER.format(reason=reason), markup=False, highlight=False, soft_wrap=True)
        return False
    return True


def run(sources: list[str], **options: Any) -> int:
    """Runs the flow; the exit code: 0 all done, 1 some scripts failed, 2 the input was refused."""
    from flows.content_to_video import content_to_video
    from talkmill.errors import InputError, RowsFailedError
    from talkmill.progress import subscribe

    try:
        preflight(**options)
    except InputError as e:
        refuse(str(e))
        return 2
    with _progress() as (progress, listener):
        unsubscribe = subscribe(listener)
        signal.signal(signal.SIGINT, _interrupt)
        try:
            summary = asyncio.run(content_to_video(sources, **options))
        except RowsFailedError as e:
            summary = e.summary
        except KeyboardInterrupt:
            progress.stop()
            console.print(INTERRUPTED)
            return 130
        except InputError as e:  # content, config, options, a refused key: the user's to fix
            progress.stop()
            refuse(str(e))
            return 2
        finally:
            unsubscribe()
    _print_summary(summary)
    return 1 if summary.failed else 0


INTERRUPTED = "interrupted; run the same command again to resume (finished videos are kept)"


def _interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C stops the run at once. asyncio's own handler only cancels the flow's task, which Prefect's
    engine may absorb and carry on; a second Ctrl-C while the run shuts down exits without waiting."""
    signal.signal(signal.SIGINT, _exit_now)
    raise KeyboardInterrupt


def _exit_now(signum: int, frame: Any) -> None:
    console.print(INTERRUPTED)
    os._exit(130)


def preflight(config: str | None, output: str | None, wait: str | None, talks_url: str | None,
              concurrency: int | None, **_: Any) -> None:
    """The options checked as the flow will check them, before Prefect starts (seconds, and a server):
    a bad config or --output is refused at once. The flow checks them again, for every other caller."""
    from connectors.storage import open_store
    from flows.content_to_video import run_settings

    settings = run_settings(config, output, wait, talks_url, concurrency)
    open_store(settings.output, settings.s3)


def refuse(message: str) -> None:
    """One "refused: …" line or block on stderr, never a traceback."""
    console.print("[red]refused:[/red] ", end="")
    # markup off: messages quote [brackets] literally; soft wrap: no line breaks inside a path or URI
    console.print(message, markup=False, highlight=False, soft_wrap=True)


PLAIN_EVERY = 10.0  # seconds between progress lines when stderr is not a terminal (CI logs, nohup, pipes)


def _progress():
    from contextlib import contextmanager

    @contextmanager
    def manage():
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("planning", total=None)
            plain = None if console.is_terminal else PlainProgress()

            def listener(event: str, data: dict[str, Any]) -> None:
                if event == "planned":
                    progress.update(task, description="videos", total=data["total"], completed=data["skipped"])
                elif event == "finished":
                    progress.advance(task)
                if plain is not None:
                    plain.update(event, data)

            yield progress, listener

    return manage()


class PlainProgress:
    """A bar cannot draw in a log: one plain line when the plan is known, then at most one every
    PLAIN_EVERY seconds as videos finish, and one when the last finishes."""

    def __init__(self) -> None:
        self.started = self.last = time.monotonic()
        self.total, self.finished, self.failed = 0, 0, 0

    def update(self, event: str, data: dict[str, Any]) -> None:
        if event == "planned":
            self.total, self.finished = data["total"], data["skipped"]
            self._say(f"planned {self.total} videos ({self.finished} already made)")
        elif event == "finished":
            self.finished += 1
            self.failed += getattr(data.get("row"), "status", None) == "failed"
            if time.monotonic() - self.last >= PLAIN_EVERY or self.finished == self.total:
                self._say(f"{self.finished}/{self.total} videos finished ({self.failed} failed)")

    def _say(self, message: str) -> None:
        self.last = time.monotonic()
        console.print(f"talkmill: {message}, {self.last - self.started:.0f} s", markup=False, highlight=False)


def _print_summary(summary: Any) -> None:
    table = Table(title=f"talkmill run {summary.run_id}" + (" (dry run)" if summary.dry_run else ""))
    table.add_column("what")
    table.add_column("value", justify="right")
    for status in ("done", "skipped_existing", "failed", "planned"):
        if summary.counts.get(status):
            table.add_row(status.replace("_", " "), str(summary.counts[status]))
    if summary.dry_run:
        table.add_row("estimated minutes of video", f"{summary.estimated_minutes:.1f}")
    else:
        table.add_row("minutes of video", f"{summary.video_minutes:.1f}")
    console = Console()
    console.print(table)
    for name in ("manifest.jsonl", "manifest.csv", "gallery.html"):  # whole, never truncated by the table
        console.print(f"{name}: {summary.manifest.get(name, '')}", soft_wrap=True)

