"""The ingest formats talkmill reads: one registry, and every list of kinds or suffixes is computed from it.

Each format is one parser module with two functions:

    parse(data: bytes, uri: str) -> (title | None, [Section, ...])   ContentError naming `uri` on bad input
    sniff(head: bytes) -> bool                                      does this content look like the format?

A format whose content names local files (`names_files`: CSV's presenter_image and source) takes a third
argument, the folders it may name files in besides its own (talkmill.content.uris).

Adding a format is one new parser module and one entry in FORMATS. Detection: a known suffix decides; else
the first format (in FORMATS order) whose `sniff` accepts the content: the binary formats (PDF, and
the zip packages .pptx and .docx) first, and text, which accepts anything, last. Parsers are imported
when first used: reading the registry (`talkmill --help`, folder expansion, the inbox filter) costs no
parser's imports.
"""

from __future__ import annotations

import importlib
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

SNIFF_BYTES = 8192  # how much of a source the sniffers see


@dataclass(frozen=True)
class Format:
    kind: str  # the Document's source.type, and the `kind` a caller may force
    suffixes: tuple[str, ...]  # lowercase, with the dot; the first is the usual one
    module: str  # the parser module: parse(data, uri) and sniff(head)
    names_files: bool = False  # parse(data, uri, local_roots)

    @property
    def parser(self) -> ModuleType:
        return importlib.import_module(self.module)

    def parse(self, data: bytes, uri: str, local_roots: Sequence[Path] = ()) -> tuple[str | None, list[Any]]:
        if self.names_files:
            return self.parser.parse(data, uri, local_roots)
        return self.parser.parse(data, uri)


FORMATS: tuple[Format, ...] = (
    # binary formats first: their sniffers check magic bytes, which the text sniffers could misread
    Format("pdf", (".pdf",), "talkmill.content.pdfdoc"),
    Format("pptx", (".pptx",), "talkmill.content.slides"),
    Format("docx", (".docx",), "talkmill.content.worddoc"),
    Format("html", (".html", ".htm", ".xhtml"), "talkmill.content.html"),
    Format("markdown", (".md", ".markdown"), "talkmill.content.markdown"),
    Format("csv", (".csv",), "talkmill.content.csvrows", names_files=True),
    Format("text", (".txt", ".text"), "talkmill.content.text"),  # last: it sniffs anything
)

KINDS = tuple(fmt.kind for fmt in FORMATS)
SUFFIX_KINDS = {suffix: fmt.kind for fmt in FORMATS for suffix in fmt.suffixes}
SUFFIXES = tuple(SUFFIX_KINDS)


def format_of(kind: str) -> Format | None:
    return next((fmt for fmt in FORMATS if fmt.kind == kind), None)


def suffix_of(name: str) -> str:
    """The lowercase extension of a path, key or URL (its path part), "" when it has none."""
    path = urlparse(name).path if "://" in name else name
    return posixpath.splitext(path)[1].lower()


def is_readable(name: str) -> bool:
    """Whether a file name (path, key or URL) has the suffix of a format talkmill reads."""
    return suffix_of(name) in SUFFIX_KINDS


def detect_kind(data: bytes, uri: str) -> str:
    """The kind of a source: by its suffix when known, else by sniffing its first bytes."""
    kind = SUFFIX_KINDS.get(suffix_of(uri))
    if kind:
        return kind
    head = data[:SNIFF_BYTES]
    return next((fmt.kind for fmt in FORMATS if fmt.parser.sniff(head)), FORMATS[-1].kind)
