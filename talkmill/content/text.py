"""Plain text, and the pieces every format shares: decoding, tidying a line of speech, blocks → sections."""

from __future__ import annotations

import re

from talkmill.errors import ContentError
from talkmill.models import Section

Blocks = list[tuple[str, str]]  # ("head", title) or ("text", paragraph)


def sniff(head: bytes) -> bool:
    """Anything can be read as text: the fallback when no other format claims a source."""
    return True


def parse(data: bytes, uri: str) -> tuple[str | None, list[Section]]:
    title, blocks = text_blocks(decode(data, uri))
    return title, sections_from_blocks(blocks)


def decode(data: bytes, uri: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ContentError(
            f"{uri}: not UTF-8 text (byte {error.start}); save the file as UTF-8 and try again"
        ) from error


def tidy(text: str) -> str:
    """One line of speech: whitespace collapsed, no space before punctuation left by dropped code."""
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+([,.;:!?])", r"\1", text.replace("()", ""))


def as_sentence(text: str) -> str:
    """List items are read as sentences: a capital to start and an end if they have none."""
    text = text[:1].upper() + text[1:]
    return text + "." if text and text[-1] not in ".!?:;…" else text


def text_blocks(text: str) -> tuple[str | None, Blocks]:
    """Paragraphs split on blank lines; a short first line without an ending is the title."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    title = None
    if paragraphs:
        first, _, rest = paragraphs[0].partition("\n")
        if len(first) <= 80 and first.rstrip()[-1:] not in ".!?:;," and (rest or len(paragraphs) > 1):
            title = tidy(first)
            paragraphs[0] = rest
    return title, [("text", tidy(p)) for p in paragraphs if p.strip()]


def sections_from_blocks(blocks: Blocks) -> list[Section]:
    """("head", title) starts a section; ("text", paragraph) adds to it. Sections with no text go."""
    sections: list[Section] = []
    title: str | None = None
    paragraphs: list[str] = []

    def close() -> None:
        if paragraphs:
            sections.append(Section(title=title, text="\n\n".join(paragraphs)))

    for role, value in blocks:
        if role == "head":
            close()
            title, paragraphs = value, []
        elif value:
            paragraphs.append(value)
    close()
    return sections
