"""Databases as the engine made them before talks had owners (up to issue 8): what migrations start from."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg

CREATED_AT = "2024-01-01T00:00:00.000Z"

# The schema before talks had owners (the engine up to issue 8), as it created it.
OLD_SQLITE = """
CREATE TABLE talks (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, status TEXT NOT NULL,
    created_at TEXT NOT NULL, worker_id TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    webhook_state TEXT NOT NULL DEFAULT 'none', webhook_attempts INTEGER NOT NULL DEFAULT 0,
    webhook_next_at REAL NOT NULL DEFAULT 0, webhook_last_error TEXT, doc TEXT NOT NULL, job TEXT NOT NULL);
CREATE INDEX talks_status ON talks (status, seq);
CREATE INDEX talks_webhook ON talks (webhook_state, webhook_next_at);
"""
OLD_PG = """
CREATE TABLE talks (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL, created_at TEXT NOT NULL, worker_id TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    lease_until TIMESTAMPTZ, webhook_state TEXT NOT NULL DEFAULT 'none',
    webhook_attempts INTEGER NOT NULL DEFAULT 0, webhook_next_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    webhook_last_error TEXT, doc TEXT NOT NULL, job TEXT NOT NULL);
CREATE INDEX talks_status ON talks (status, seq);
CREATE INDEX talks_webhook ON talks (webhook_state, webhook_next_at);
"""
OLD_IDS = ("tlk_0000000001", "tlk_0000000002", "tlk_0000000003")
OLD_ROWS = [  # (id, status, doc): two tenants, and a row that names no creator
    (OLD_IDS[0], "done", {"id": OLD_IDS[0], "status": "done", "created_at": CREATED_AT, "created_by": "tester"}),
    (OLD_IDS[1], "created", {"id": OLD_IDS[1], "status": "created", "created_at": CREATED_AT,
                             "created_by": "key|0123456789abcdef"}),
    (OLD_IDS[2], "error", {"id": OLD_IDS[2], "status": "error", "created_at": CREATED_AT}),
]


def old_sqlite_database(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SQLITE)
        conn.executemany("INSERT INTO talks (id, status, created_at, doc, job) VALUES (?, ?, ?, ?, '{}')",
                         [(i, status, CREATED_AT, json.dumps(doc)) for i, status, doc in OLD_ROWS])  # fmt: skip
    return path


def old_pg_database(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(OLD_PG)
        for talk_id, status, doc in OLD_ROWS:
            conn.execute("INSERT INTO talks (id, status, created_at, doc, job) VALUES (%s, %s, %s, %s, '{}')",
                         (talk_id, status, CREATED_AT, json.dumps(doc)))  # fmt: skip
    return url
