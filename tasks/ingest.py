"""Ingest: bytes from a path, URL or object-store key → a Document of titled sections to read aloud.

The parsers live in talkmill.content (pure parsing, `ingest_bytes`; its formats registry), the reader in
connectors.sources (I/O, `read_source`); here `ingest` joins them and fetches the sources that CSV rows
name, and `ingest_source` is the Prefect task. CSV rows that name a `source` are fetched here, in `ingest`, not by the flow:
each fetched section inherits the row's overrides, line and metadata (plus metadata["source"]), so the
planner sees one Document per CSV and every problem still points at a CSV line.

Relative paths inside a CSV (`source`, `presenter_image`) are relative to the CSV's own location: its
folder for a local file, the URL's folder for http(s) and s3 — like links in HTML, so a folder of rows and
images moves as a unit. A local CSV names files inside its own folder only; every http(s) URL, the
sources' own and the ones rows name, is fetched through the URL policy (`fetch.allowed_networks`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import task

from connectors.sources import MAX_SOURCE_BYTES, read_source
from connectors.storage.base import S3Settings
from talkmill.config import FetchConfig
from talkmill.content.formats import KINDS, SUFFIX_KINDS, detect_kind
from talkmill.content.parse import ingest_bytes
from talkmill.content.uris import local_path, resolve_relative, slug
from talkmill.errors import ContentError, CsvRowsError, RowProblem, UnsupportedSourceError
from talkmill.models import Document, Section

Fetch = Callable[[str], bytes]

__all__ = [  # the parsers and readers are re-exported: importers use tasks.ingest for them too
    "KINDS", "MAX_SOURCE_BYTES", "SUFFIX_KINDS", "Fetch", "detect_kind", "ingest", "ingest_bytes",
    "ingest_source", "local_path", "read_source", "resolve_relative", "slug",
]  # fmt: skip


def ingest(uri: str, *, kind: str | None = None, fetch: Fetch | None = None,
           local_roots: tuple[Path, ...] = ()) -> Document:
    """Read and parse one source; for a CSV, also fetch and parse the sources its rows name (files
    inside its own folder or `local_roots`)."""
    fetch = fetch or read_source
    document = ingest_bytes(fetch(uri), uri, kind, local_roots=local_roots)
    if document.source.type != "csv" or not any(s.metadata.get("source") for s in document.sections):
        return document
    return document.model_copy(update={"sections": _expand_source_rows(document, fetch)})


def _expand_source_rows(document: Document, fetch: Fetch) -> list[Section]:
    sections: list[Section] = []
    problems: list[RowProblem] = []
    transient = False
    for row in document.sections:
        source = row.metadata.get("source")
        if not source:
            sections.append(row)
            continue
        try:
            fetched = ingest_bytes(fetch(source), source)
            if fetched.source.type == "csv":
                raise UnsupportedSourceError(
                    f"{source}: a row's source cannot be a CSV; use html, markdown or text")
        except ContentError as error:
            transient = transient or error.transient
            problems.append(RowProblem(line=row.line or 0, column="source", problem=str(error)))
            continue
        metadata = {**row.metadata, "source_title": fetched.title, "source_checksum": fetched.source.checksum}
        inherited = {"line": row.line, "overrides": row.overrides, "metadata": metadata}
        sections += [part.model_copy(update=inherited) for part in fetched.sections]
    if problems:
        raise CsvRowsError(document.source.uri, problems, transient=transient)
    return sections


# --- Prefect ----------------------------------------------------------------------------------------


def _worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Retry network trouble, not bad content: a malformed CSV fails the same way three times."""
    error = getattr(state, "data", None)
    return not isinstance(error, ContentError) or error.transient


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_worth_retrying)
def ingest_source(uri: str, kind: str | None = None, s3: S3Settings | None = None,
                  timeout: float = 30.0, fetch_config: FetchConfig | None = None) -> Document:
    """I/O task: fetch and parse one source (and, for a CSV, the sources its rows name); `s3`
    (the config's S3Config) says where s3:// sources are, `fetch_config` (the config's `fetch`; None: from
    the environment) which addresses http(s) URLs may reach."""
    fetch_config = fetch_config or FetchConfig()
    policy = fetch_config.url_policy

    def fetch(target: str) -> bytes:
        return read_source(target, timeout=timeout, s3=s3, policy=policy)

    return ingest(uri, kind=kind, fetch=fetch, local_roots=fetch_config.roots)
