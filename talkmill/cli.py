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
    from talkmill.run_cli import quiet_prefect

    quiet_prefect(verbose)
    from talkmill.run_cli import run as run_flow

    options = {"config": str(config) if config else None, "output": output, "dry_run": dry_run, "wait": wait,
               "talks_url": talks_url, "concurrency": concurrency}
    raise typer.Exit(run_flow(sources, **options))


@app.command("serve")
def serve_command(
    port: int = typer.Option(4200, help="The Prefect server's port on 127.0.0.1 (unless $PREFECT_API_URL names a server)."),
    inbox: Optional[str] = typer.Option(None, help="Watch this folder or s3://bucket/prefix/ for new files; without it, no watcher."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Where runs write videos; default: the config's output."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="A YAML pipeline config for every run."),
    watch_interval: float = typer.Option(30.0, help="Seconds between two looks at the inbox."),
    talks_budget: Optional[int] = typer.Option(None, help="Talks in flight across all runs; default: backend.concurrency."),
) -> None:
    """Run talkmill as a service: a Prefect server and UI, the deployments served here, an inbox watcher."""
    from talkmill.run_cli import quiet_prefect

    quiet_prefect(verbose=True)
    from talkmill.serve import ServeOptions, serve

    serve(ServeOptions(port=port, inbox=inbox, output=output, config=config, watch_interval=watch_interval,
                       talks_budget=talks_budget))


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
