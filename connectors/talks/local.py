"""The embedded engine's start: the one place the pipeline imports the engine (talkmill_engine), used by
a run without a backend URL (connectors.talks.backend) and by `talkmill serve`'s shared engine."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path
from typing import Protocol

from talkmill.errors import ConfigError


class LocalEngineHandle(Protocol):
    """A started engine: where it listens, its key, the secret it signs webhooks with; stop() ends it."""

    url: str
    key: str
    webhook_secret: str
    data_dir: Path

    def stop(self) -> None: ...


def start_local_engine(data_dir: Path | None = None) -> LocalEngineHandle:
    """Start (or adopt, if a killed run left it serving) the engine of `data_dir`, by default
    ./.talkmill/engine of the current directory, made absolute. Blocks until it is healthy."""
    if missing := missing_engine_requirements():  # a pipeline-only install (a Prefect worker image)
        raise ConfigError(f"no backend.url is set and the local engine is not installed here ({missing[0]} "
                          "is missing): install talkmill[engine], or name a Talks API with --talks-url")
    from talkmill_engine.local import DEFAULT_DATA_DIR, LocalEngine  # the engine extra, only when used
    from talkmill_engine.speech.kokoro_files import problems

    if found := problems():  # its voices: installed by scripts/bootstrap, checked by sha256
        raise ConfigError(f"the local engine cannot speak: {found[0]}: run scripts/bootstrap")
    return LocalEngine((data_dir or DEFAULT_DATA_DIR).resolve()).start()


def missing_engine_requirements() -> list[str]:
    """The `engine` extra's distributions that are not installed. The engine's code ships in every wheel;
    its dependencies come with the extra only, so they are what tells an engine install apart."""
    missing = []
    for requirement in requires("talkmill") or []:
        name, _, marker = requirement.partition(";")
        if re.search(r"""extra\s*==\s*["']engine["']""", marker):
            distribution = re.split(r"[\s\[<>=!~(]", name.strip(), maxsplit=1)[0]
            try:
                version(distribution)
            except PackageNotFoundError:
                missing.append(distribution)
    return missing
