"""The embedded engine's start: the one place the pipeline imports the engine (talkmill_engine), used by
a run without a backend URL (connectors.talks.backend) and by `talkmill serve`'s shared engine."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path
from typing import Protocol

from talkmill.errors import ConfigError


class LocalEngineHandle(Protocol):
    """A started (or joined) engine: where it listens, its key, the secret it signs webhooks with, its pid
    if it was started here; stop() leaves it, and ends it unless someone else still uses it."""

    url: str
    key: str
    webhook_secret: str
    data_dir: Path

    @property
    def pid(self) -> int | None: ...

    def stop(self, grace: float = ...) -> None: ...


def start_local_engine(data_dir: Path | None = None, role: str = "run") -> LocalEngineHandle:
    """Start the engine of `data_dir` (by default ./.talkmill/engine of the current directory, made
    absolute), or join the one already serving it (`talkmill serve`'s, another run's, a killed run's).
    Blocks until it is healthy. stop() stops it only when no live process still uses it and it is not
    a live serve's (role "serve": the caller is serve, and its engine dies with it)."""
    if missing := missing_engine_requirements():  # a pipeline-only install (a Prefect worker image)
        raise ConfigError(f"no backend.url is set and the local engine is not installed here ({missing[0]} "
                          "is missing): install talkmill[engine], or name a Talks API with --talks-url")
    from talkmill_engine.local import DEFAULT_DATA_DIR, LocalEngine  # the engine extra, only when used
    from talkmill_engine.speech.kokoro_files import problems

    if found := problems():  # its voices: installed by scripts/bootstrap, checked by sha256
        raise ConfigError(f"the local engine cannot speak: {found[0]}: run scripts/bootstrap")
    return LocalEngine((data_dir or DEFAULT_DATA_DIR).resolve(), role=role).start()


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
