"""HTML → the article's blocks: trafilatura's main text, or a beautifulsoup4 reading when it finds none."""

from __future__ import annotations

import re
from typing import Any

from talkmill.content.text import Blocks, as_sentence, sections_from_blocks, tidy
from talkmill.models import Section

BOILERPLATE = re.compile(
    r"cookie|consent|gdpr|banner|advert|\bads?\b|ad-|promo|sponsor|newsletter|subscribe|share|related")
BLOCK_TAGS = ["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "blockquote"]


def sniff(head: bytes) -> bool:
    start = head[:2048].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html", b"<?xml")) or b"<body" in start


def parse(data: bytes, uri: str) -> tuple[str | None, list[Section]]:
    """The page's title and sections (bytes as they came: the page declares its own encoding)."""
    title, blocks = html_blocks(data)
    return title, sections_from_blocks(blocks)


def html_blocks(data: bytes) -> tuple[str | None, Blocks]:
    """The article's title and blocks: trafilatura's main text (no menus, footers, ads, banners), or a
    beautifulsoup4 reading of <article>/<main> when trafilatura finds nothing (short or odd pages)."""
    import trafilatura  # imported here: slow, and only HTML needs it
    from lxml import etree

    xml = trafilatura.extract(data, output_format="xml", with_metadata=True, include_comments=False,
                              include_tables=False, include_images=False, include_links=False,
                              include_formatting=False, deduplicate=False)
    if xml:
        doc = etree.fromstring(xml.encode("utf-8"))
        title, blocks = _trafilatura_blocks(doc.find("main"))
        if blocks:
            return title or doc.get("title"), blocks
    return _soup_blocks(data)


def _trafilatura_blocks(main: Any) -> tuple[str | None, Blocks]:
    title, blocks = None, []
    for element in main if main is not None else []:
        if element.tag == "head":
            heading = tidy(_xml_text(element))
            title = title or (heading if element.get("rend") == "h1" else None)
            blocks.append(("head", heading))
        elif element.tag in ("p", "quote"):
            blocks.append(("text", tidy(_xml_text(element))))
        elif element.tag == "list":
            blocks += [("text", as_sentence(tidy(_xml_text(item)))) for item in element.findall("item")]
    return title, blocks


def _xml_text(element: Any) -> str:
    parts = [element.text or ""]
    for child in element:
        if child.tag not in ("code", "graphic", "list"):
            parts.append(_xml_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _soup_blocks(data: bytes) -> tuple[str | None, Blocks]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    for element in soup(["script", "style", "noscript", "template", "nav", "aside", "form", "iframe", "svg",
                         "button", "pre", "code", "table", "figure"]):
        element.decompose()
    for element in soup.find_all(["header", "footer", "div", "section"]):
        if element.decomposed:
            continue
        marker = " ".join([element.get("id") or "", *(element.get("class") or [])]).lower()
        page_furniture = element.name in ("header", "footer") and not element.find_parent(["article", "main"])
        if page_furniture or (marker and BOILERPLATE.search(marker)):
            element.decompose()
    root = soup.find("article") or soup.find("main") or soup.body or soup
    title, blocks = None, []
    for element in root.find_all(BLOCK_TAGS):
        if element.find_parent(BLOCK_TAGS):
            continue  # its text is read with the enclosing block
        text = tidy(element.get_text(" "))
        if element.name.startswith("h"):
            title = title or (text if element.name == "h1" else None)
            blocks.append(("head", text))
        else:
            blocks.append(("text", as_sentence(text) if element.name == "li" else text))
    page_title = soup.title.get_text(strip=True) if soup.title else None
    return title or page_title, blocks

