"""The `talkmill` command. Heavy modules are imported inside commands: `talkmill --help` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from talkmill.content.formats import SUFFIXES  # the registry alone: no parser is imported

app = typer.Typer(help="Turn content into talking-presenter videos.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """talkmill: content in, talking-presenter videos out."""


@app.command("run")
def run(
    sources: list[str] = typer.Argument(..., help=f"Files, folders, http(s) URLs or s3:// keys ({', '.join(SUFFIXES)})."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="A YAML pipeline config (configs/default.yaml)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="A folder, file://… or s3://bucket/prefix \\[default: ./output]."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Plan and validate, write the plan manifest, create no talk."),
    wait: Optional[str] = typer.Option(None, help="webhook (falls back to polling) or poll \\[default: webhook]."),
    talks_url: Optional[str] = typer.Option(None, help="A Talks-compatible API; its key in $TALKMILL_TALKS_KEY \\[default: the local engine]."),
    concurrency: Optional[int] = typer.Option(None, help="Talks in flight at once \\[default: 2]."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs."),
) -> None:
    """Turn content into presenter videos: videos, a manifest and a gallery in the output."""
    from talkmill.run_cli import quiet_prefect, use_local_server

    quiet_prefect(verbose)
    if not use_local_server():
        raise typer.Exit(2)
    from talkmill.run_cli import run as run_flow

    options = {"config": str(config) if config else None, "output": output, "dry_run": dry_run, "wait": wait,
               "talks_url": talks_url, "concurrency": concurrency}
    raise typer.Exit(run_flow(sources, **options))


@app.command("serve")
def serve_command(
    port: int = typer.Option(4200, help="The Prefect server's port (unless $PREFECT_API_URL names a server)."),
    host: str = typer.Option("127.0.0.1", help="The address the Prefect server and UI listen on."),
    inbox: Optional[str] = typer.Option(None, help="Watch this folder or s3://bucket/prefix/ for new files; without it, no watcher."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Where runs write videos; default: the config's output."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="A YAML pipeline config for every run."),
    watch_interval: float = typer.Option(30.0, help="Seconds between two looks at the inbox."),
    talks_budget: Optional[int] = typer.Option(None, help="Talks in flight across all runs; default: backend.concurrency."),
) -> None:
    """Run talkmill as a service: a Prefect server and UI, the deployments served here, an inbox watcher."""
    from talkmill import local_prefect
    from talkmill.run_cli import quiet_prefect

    if not local_prefect.configured_api_url():  # our server's home: before Prefect reads its settings
        local_prefect.use_home(local_prefect.home())
    quiet_prefect(verbose=True)
    from talkmill.serve import ServeOptions, serve

    options = ServeOptions(port=port, host=host, inbox=inbox, output=output, config=config,
                           watch_interval=watch_interval, talks_budget=talks_budget)
    try:
        serve(options)
    except (local_prefect.PortInUseError, RuntimeError, TimeoutError) as e:
        typer.echo(f"talkmill serve: {e}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:  # during start-up; once serving, a stop is a normal end
        raise typer.Exit(130) from None


@app.command("server")
def server_command(
    action: str = typer.Argument("status", help="status: where it listens; stop: stop it."),
) -> None:
    """The Prefect server `talkmill run` keeps under ./.talkmill/prefect (started by the first run here)."""
    from talkmill import local_prefect

    if action not in ("status", "stop"):
        typer.echo(f"talkmill server: unknown action {action!r}; allowed: status, stop", err=True)
        raise typer.Exit(2)
    running = local_prefect.running_server()
    if action == "status":
        typer.echo(f"running at {running.api_url.removesuffix('/api')} (pid {running.pid}, started by "
                   f"talkmill {running.role})" if running else "not running")
    elif running and running.role == "serve":
        typer.echo(f"talkmill server: it is `talkmill serve`'s (pid {running.pid}): stop serve instead",
                   err=True)
        raise typer.Exit(2)
    else:
        typer.echo("stopped" if local_prefect.stop_server() else "not running")


@app.command("engine", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False)
def engine(ctx: typer.Context) -> None:
    """The Talks engine (`talkmill engine serve --help`): hands over to `talkmill-engine`, installed with
    the `engine` extra. A process boundary, not an import: the pipeline imports no engine code here."""
    import os
    import sys

    from connectors.talks.local import missing_engine_requirements

    if missing := missing_engine_requirements():
        typer.echo(f"talkmill: the engine is not installed ({missing[0]} is missing); install talkmill[engine]",
                   err=True)
        raise typer.Exit(2)
    os.execv(sys.executable, [sys.executable, "-m", "talkmill_engine", *ctx.args])
