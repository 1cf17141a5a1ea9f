"""Bytes → a Document: detect the kind of source, then hand it to that format's parser (content.formats)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from talkmill.content.formats import KINDS, SUFFIX_KINDS, detect_kind, format_of
from talkmill.content.uris import slug
from talkmill.errors import EmptyContentError, UnsupportedSourceError
from talkmill.models import Document, SourceRef

__all__ = ["KINDS", "SUFFIX_KINDS", "detect_kind", "ingest_bytes"]


def ingest_bytes(data: bytes, uri: str, kind: str | None = None, *,
                 local_roots: Sequence[Path] = ()) -> Document:
    """Parse one source. `kind` is one of KINDS; None detects it from the URI's extension, then from the
    content. A source that names local files (a CSV) may name them inside its own folder and inside
    `local_roots`. Raises a ContentError subclass naming `uri` on bad input."""
    kind = kind or detect_kind(data, uri)
    fmt = format_of(kind)
    if fmt is None:
        raise UnsupportedSourceError(f"{uri}: unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
    source = SourceRef(type=kind, uri=uri, id=slug(uri), checksum=hashlib.sha256(data).hexdigest())
    title, sections = fmt.parse(data, uri, local_roots)
    if not sections:
        raise EmptyContentError(f"{uri}: found no text to read aloud in this {kind} source")
    return Document(id=source.id, title=title or sections[0].title or source.id, source=source,
                    sections=sections)
