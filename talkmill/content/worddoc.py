"""Word (.docx) → sections by heading style, read with python-docx.

The body is read in order: a "Title" paragraph is the document's title, "Heading 1" and "Heading 2" start
sections, deeper headings and list items are read as sentences, other paragraphs as they are. Tables,
captions, headers, footers, footnotes and comments are not read aloud.
"""

from __future__ import annotations

from typing import Any

from talkmill.content.office import open_package, sniff_package, unreadable
from talkmill.content.text import Blocks, as_sentence, sections_from_blocks, tidy
from talkmill.models import Section

WHAT = "Word (.docx)"
SECTION_STYLES = ("heading 1", "heading 2")
UNREAD_STYLES = ("caption", "table of figures", "toc heading")  # labels and tables of contents
SENTENCE_STYLES = ("heading", "list")  # "Heading 3", "List Bullet": read as a sentence of their own


def sniff(head: bytes) -> bool:
    return sniff_package(head, b"word/")


def parse(data: bytes, uri: str) -> tuple[str | None, list[Section]]:
    if not data.strip():
        return None, []  # an empty file: refused like every format's, as nothing to read aloud
    document = open_document(data, uri)
    try:  # styles and properties are parsed as they are first read
        title, blocks = document_blocks(document)
        title = title or tidy(document.core_properties.title or "") or None
    except Exception as error:  # a damaged styles or properties part: refused as a damaged package
        raise unreadable(uri, WHAT, error) from error
    return title, sections_from_blocks(blocks)


def open_document(data: bytes, uri: str) -> Any:
    import docx  # imported here: only Word files need it

    return open_package(data, uri, WHAT, docx.Document)


def document_blocks(document: Any) -> tuple[str | None, Blocks]:
    """The Title paragraph's text and the body's blocks; tables are skipped (only top-level paragraphs)."""
    title: str | None = None
    blocks: Blocks = []
    for paragraph in document.paragraphs:  # the body's own paragraphs: table cells are not among them
        text = tidy(paragraph.text)
        style = _style_name(paragraph)
        if not text or style.startswith(UNREAD_STYLES) or style.startswith("toc "):
            continue
        if style == "title":
            title = title or text
        elif style in SECTION_STYLES:
            blocks.append(("head", text))
        elif style.startswith(SENTENCE_STYLES):
            blocks.append(("text", as_sentence(text)))
        else:
            blocks.append(("text", text))
    return title, blocks


def _style_name(paragraph: Any) -> str:
    style = paragraph.style
    return (style.name or "").lower() if style is not None else ""
