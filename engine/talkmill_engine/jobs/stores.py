"""Which talk store an engine uses: PostgreSQL when TALKMILL_ENGINE_DATABASE_URL is set (replicas
sharing one queue), else SQLite in the data dir (one engine)."""

from __future__ import annotations

from pathlib import Path

from talkmill_engine.jobs.sqlite_store import SqliteTalkStore
from talkmill_engine.jobs.store import TalkStore
from talkmill_engine.settings import EngineSettings


def open_talk_store(settings: EngineSettings) -> TalkStore:
    url = settings.database_url.get_secret_value() if settings.database_url else None
    return open_store(url, settings.db_path)


def open_store(database_url: str | None, db_path: Path) -> TalkStore:
    """The same choice from plain values, for worker processes (which get no settings object)."""
    if database_url:
        from talkmill_engine.jobs.pg_store import PgTalkStore  # psycopg only when PostgreSQL is used

        return PgTalkStore(database_url)
    return SqliteTalkStore(db_path)
