"""Bytes → a Document: detect the kind of source, then hand it to the parser for that kind."""

from __future__ import annotations

import hashlib
import posixpath
import re
from urllib.parse import urlparse

from talkmill.content.csvrows import csv_sections
from talkmill.content.html import html_blocks
from talkmill.content.markdown import markdown_blocks
from talkmill.content.text import decode, sections_from_blocks, text_blocks
from talkmill.content.uris import slug
from talkmill.errors import EmptyContentError, UnsupportedSourceError
from talkmill.models import Document, SourceRef

SUFFIX_KINDS = {".html": "html", ".htm": "html", ".xhtml": "html", ".md": "markdown",
                ".markdown": "markdown", ".csv": "csv", ".txt": "text", ".text": "text"}
KINDS = ("html", "markdown", "csv", "text")


def ingest_bytes(data: bytes, uri: str, kind: str | None = None) -> Document:
    """Parse one source. `kind` is html, markdown, csv or text; None detects it from the URI's
    extension, then from the content. Raises a ContentError subclass naming `uri` on bad input."""
    kind = kind or detect_kind(data, uri)
    if kind not in KINDS:
        raise UnsupportedSourceError(f"{uri}: unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
    source = SourceRef(type=kind, uri=uri, id=slug(uri), checksum=hashlib.sha256(data).hexdigest())
    if kind == "csv":
        sections = csv_sections(decode(data, uri), uri)
        return Document(id=source.id, title=source.id, source=source, sections=sections)
    if kind == "html":
        title, blocks = html_blocks(data)
    else:
        title, blocks = (markdown_blocks if kind == "markdown" else text_blocks)(decode(data, uri))
    sections = sections_from_blocks(blocks)
    if not sections:
        raise EmptyContentError(f"{uri}: found no text to read aloud in this {kind} source")
    return Document(id=source.id, title=title or sections[0].title or source.id, source=source,
                    sections=sections)


def detect_kind(data: bytes, uri: str) -> str:
    suffix = posixpath.splitext(urlparse(uri).path if "://" in uri else uri)[1].lower()
    if suffix in SUFFIX_KINDS:
        return SUFFIX_KINDS[suffix]
    head = data[:2048].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml")) or b"<body" in head:
        return "html"
    if re.search(rb"(?m)^#{1,6} \S", data[:8192]):
        return "markdown"
    first_line = head.split(b"\n", 1)[0]
    if b"," in first_line and re.search(rb"(^|,)\s*\"?(text|source)\"?\s*(,|$)", first_line):
        return "csv"
    return "text"
