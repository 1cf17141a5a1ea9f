"""`talkmill-engine serve` (also `python -m talkmill_engine serve`, and `talkmill engine serve`, which
hands over to this): the Talks API on uvicorn. Settings also come from TALKMILL_ENGINE_* variables."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="The Talks engine: a self-hosted service with D-ID's /talks API.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """The Talks engine: a self-hosted service with D-ID's /talks API."""


@app.command("serve")
def serve(
    host: Optional[str] = typer.Option(None, help="Address to listen on \\[default: 127.0.0.1]."),
    port: Optional[int] = typer.Option(None, help="Port to listen on \\[default: 8700]."),
    data_dir: Optional[Path] = typer.Option(
        None, help="Talks, results, uploads and keys \\[default: ./.talkmill/engine]."
    ),
    workers: Optional[int] = typer.Option(None, help="Render worker processes \\[default: one per core]."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Serve the Talks API (FastAPI on uvicorn); settings also come from TALKMILL_ENGINE_* variables."""
    import uvicorn

    from talkmill_engine.api.app import create_app
    from talkmill_engine.settings import KEY_FILE, EngineSettings

    overrides = {"host": host, "port": port, "data_dir": data_dir, "workers": workers}
    settings = EngineSettings(**{key: value for key, value in overrides.items() if value is not None})
    if settings.workers:  # workers speak: refuse to start on a missing or altered model or voice
        _check_speech_files()
    api = create_app(settings)
    for path in api.state.generated:
        what = "API key" if path.name == KEY_FILE else "webhook signing secret"
        typer.echo(f"talkmill engine: generated the {what}: {path} (mode 0600)", err=True)
    key_file = settings.data_dir / KEY_FILE
    if not settings.keys and settings.keys_file is None and key_file not in api.state.generated:
        typer.echo(f"talkmill engine: API key in {key_file}", err=True)
    typer.echo(f"talkmill engine: serving on {api.state.settings.base_url} (docs at /docs)", err=True)
    uvicorn.run(api, host=settings.host, port=settings.port, log_level=log_level)


def _check_speech_files() -> None:
    from talkmill_engine.speech.kokoro_files import KokoroFilesError, check

    try:
        check()
    except KokoroFilesError as e:
        typer.echo(f"talkmill engine: {e.description}", err=True)
        raise typer.Exit(2) from e
