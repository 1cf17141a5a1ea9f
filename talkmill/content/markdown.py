"""Markdown → blocks: headings start sections; paragraphs and list items are read; code, tables and
images are not."""

from __future__ import annotations

import re
from typing import Any

from markdown_it import MarkdownIt

from talkmill.content.text import Blocks, as_sentence, decode, sections_from_blocks, tidy
from talkmill.models import Section

SPOKEN_CODE = re.compile(r"[A-Za-z][A-Za-z0-9 '+-]{0,39}")  # `git status`, `Ctrl+L`: words, not code
ATX_HEADING = re.compile(rb"(?m)^#{1,6} \S")


def sniff(head: bytes) -> bool:
    return ATX_HEADING.search(head) is not None


def parse(data: bytes, uri: str) -> tuple[str | None, list[Section]]:
    title, blocks = markdown_blocks(decode(data, uri))
    return title, sections_from_blocks(blocks)


def markdown_blocks(text: str) -> tuple[str | None, Blocks]:
    """Headings start sections; paragraphs and list items are read; code, tables, images and HTML not."""
    title, text = _front_matter_title(text)
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    blocks: Blocks = []
    list_depth = 0
    for previous, token in zip([None, *tokens], tokens):
        if token.type in ("bullet_list_open", "ordered_list_open"):
            list_depth += 1
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            list_depth -= 1
        elif token.type == "inline" and previous is not None:
            spoken = _inline_text(token)
            if previous.type == "heading_open":
                title = title or (spoken if previous.tag == "h1" else None)
                blocks.append(("head", spoken))
            elif previous.type == "paragraph_open":  # table cells follow th/td_open: never read
                blocks.append(("text", as_sentence(spoken) if list_depth else spoken))
    return title, blocks


def _inline_text(token: Any) -> str:
    parts = []
    for child in token.children or []:
        if child.type == "text":
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "code_inline" and SPOKEN_CODE.fullmatch(child.content):
            parts.append(child.content)
    return tidy("".join(parts))  # images, inline HTML and URLs are not read; link text is


def _front_matter_title(text: str) -> tuple[str | None, str]:
    match = re.match(r"\A---\n(.*?)\n---\n", text, re.DOTALL)
    if not match:
        return None, text
    title = re.search(r"(?m)^title:\s*[\"']?(.+?)[\"']?\s*$", match.group(1))
    return (title.group(1) if title else None), text[match.end():]

