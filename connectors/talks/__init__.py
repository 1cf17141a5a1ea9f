"""Talks backends: the TalksBackend protocol (connectors.talks.base), one module per wire format, and
the registry below: `backend.kind` picks the class. The run's wiring is connectors.talks.backend.

    BACKENDS["talkmill"]  our engine: started on 127.0.0.1 when backend.url is unset   connectors.talks.did
    BACKENDS["d-id"]      D-ID's cloud (https://api.d-id.com unless backend.url says)  connectors.talks.did

Adding a backend (HeyGen, Synthesia) is one module with a class implementing TalksBackend (its HTTP can
reuse connectors.talks.http and .polling) and one entry here.
"""

from __future__ import annotations

from connectors.talks.base import TalkRef, TalkResult, TalksBackend
from connectors.talks.did import DidTalks, TalkmillTalks
from talkmill.config import BackendConfig
from talkmill.errors import ConfigError

__all__ = ["BACKENDS", "TalkRef", "TalkResult", "TalksBackend", "backend_class", "needs_local_engine"]

BACKENDS: dict[str, type[TalksBackend]] = {
    TalkmillTalks.kind: TalkmillTalks,
    DidTalks.kind: DidTalks,
}


def backend_class(kind: str) -> type[TalksBackend]:
    try:
        return BACKENDS[kind]
    except KeyError:
        allowed = ", ".join(BACKENDS)
        raise ConfigError(f"backend.kind {kind!r}: no such Talks backend; allowed: {allowed}") from None


def needs_local_engine(config: BackendConfig) -> bool:
    """Whether a run with these settings starts our engine on 127.0.0.1: no url, and a kind that has one."""
    return config.url is None and backend_class(config.kind).local_engine
