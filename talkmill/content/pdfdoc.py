"""PDF → sections, read with pypdf.

pypdf, not pdfplumber, by measurement (pypdf 7.1.1, pdfplumber 0.11.10, on this 2-core machine):
- 60 generated A4 pages, each with headings, a running header, a page number, two columns and a ruled
  table: pypdf's extract_text 4 ms a page, pdfplumber's 65 ms (pdfminer.six underneath);
- two real manuals (DocBook, 17 pages; Texinfo/LaTeX, 36 pages): this whole module 100 ms a page,
  pdfplumber's extract_text alone 270 ms.
pypdf reads two columns one after the other (content-stream order) where pdfplumber's extract_text
interleaves their lines across the gutter. pdfplumber finds tables and pypdf does not, so tables are found
here from the same pass: text inside a grid of ruled cells. pypdf is pure Python; pdfplumber would add
pdfminer.six and pypdfium2's binary.

Read: the outline's entries start sections, or without an outline, lines set larger than the body text;
running headers and footers (the same line in the top or bottom margin of most pages) and page numbers are
dropped, table cells are not read, list bullets are not said. Each section records its first page in
metadata["page"]. Refused, with the file named: damaged files, password-protected ones, files with no text
layer (scanned), more than MAX_PAGES pages, or more than MAX_SECONDS of reading (checked between pages;
pypdf itself caps each decompressed stream at 75 MB and bounds loops in page trees, outlines and forms:
tests/pipeline/test_documents.py feeds it hand-written hostile files). Not handled: tables without rules
(their cells read as lines), text in the wrong stream order (rare outside scanned-and-OCRed files).
"""

from __future__ import annotations

import io
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from talkmill.content.text import as_sentence, tidy
from talkmill.errors import ContentError
from talkmill.models import Section

MAX_PAGES = 500
MAX_SECONDS = 120.0  # checked between pages: a hostile file cannot keep a worker reading for ever
MAX_OUTLINE_ENTRIES = 2000
MAX_RECTANGLES = 2000  # a page's drawn rectangles looked at for table cells
MARGIN = 0.1  # of the page's height, at the top and at the bottom: where running headers and footers sit
HEADING_RATIO = 1.15  # a line this much larger than the body text is a heading
# pypdf logs each flaw it works around ("EOF marker not found"); a file it cannot read is refused instead
logging.getLogger("pypdf").setLevel(logging.ERROR)

BULLET = re.compile(r"[•◦▪▫■□●○‣⁃∙·*–](\s+|$)")  # a list item's mark, not read aloud
ITEM = "\x00"  # marks a paragraph that is a list item while lines are joined
SECTION_NUMBER = re.compile(r"^\d+(\.\d+)*\.?\s+")  # "2.1 " before a heading's words
FILE_NAME_TITLE = re.compile(r"(?i)^microsoft \w+ - |\.(docx?|pptx?|pdf|odt|rtf|txt)$")  # not a title
PAGE_NUMBER = re.compile(r"(?i)(page\s*)?[-–—(\[]?\s*\d{1,4}\s*[-–—)\]]?(\s*(of|/)\s*\d{1,4})?")


@dataclass
class Line:
    text: str
    size: float  # the font size as printed (points)
    x: float
    y: float  # the baseline, from the page's bottom
    page: int  # from 0


@dataclass(frozen=True)
class Cell:
    x0: float
    y0: float
    x1: float
    y1: float

    def holds(self, line: Line) -> bool:
        return self.x0 - 1 <= line.x <= self.x1 and self.y0 - 1 <= line.y <= self.y1


@dataclass(frozen=True)
class PageText:
    lines: list[Line]
    cells: list[Cell]  # of tables: their text is not read
    bottom: float  # the page's box, for its margins
    top: float


@dataclass(frozen=True)
class Mark:
    """An outline entry: a section starts at its place."""
    title: str
    page: int
    top: float


def sniff(head: bytes) -> bool:
    return b"%PDF-" in head[:1024]  # the header may follow up to 1 KB of junk


def parse(data: bytes, uri: str) -> tuple[str | None, list[Section]]:
    if not data.strip():
        return None, []  # an empty file: refused like every format's, as nothing to read aloud
    reader = open_pdf(data, uri)
    lines = _body_lines(_read_pages(reader, uri))
    if not lines:
        raise ContentError(f"{uri}: no text layer: its {len(reader.pages)} page(s) hold no text to read "
                           "aloud (a scanned or image-only PDF?); run OCR on it, or export it with its text")
    marks = _outline_marks(reader)
    title = _title(reader, lines)
    return title, _sections(lines, marks, title) if marks else _sections_by_size(lines)


# --- opening ----------------------------------------------------------------------------------------


def open_pdf(data: bytes, uri: str) -> Any:
    """A PdfReader on `data`, decrypted when it opens without a password; ContentError otherwise."""
    from pypdf import PdfReader  # imported here: only PDFs need it

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ContentError(f"{uri}: password-protected PDF; save a copy without the password and try "
                               "again")
        pages = len(reader.pages)
    except ContentError:
        raise
    except Exception as error:  # pypdf raises many kinds on a damaged file (PdfReadError, KeyError, ...)
        raise ContentError(f"{uri}: not a readable PDF (damaged or truncated: {error}); "
                           "export it again from the original") from error
    if pages > MAX_PAGES:
        raise ContentError(f"{uri}: {pages} pages; at most {MAX_PAGES} are read: split the file")
    return reader


def _read_pages(reader: Any, uri: str) -> list[PageText]:
    started = time.monotonic()
    pages = []
    for number, page in enumerate(reader.pages):
        if time.monotonic() - started > MAX_SECONDS:
            raise ContentError(f"{uri}: reading took over {MAX_SECONDS:.0f} s (page {number + 1} of "
                               f"{len(reader.pages)}); split the file or export it again")
        try:
            pages.append(page_content(page, number))
        except Exception as error:  # a damaged content stream: name the page
            raise ContentError(f"{uri}: page {number + 1} is not readable ({type(error).__name__}: {error}); "
                               "export the PDF again from the original") from error
    return pages


# --- one page: text lines and ruled cells ------------------------------------------------------------


def page_content(page: Any, number: int) -> PageText:
    """The page's text lines (in content-stream order) and the table cells drawn on it."""
    lines: list[Line] = []
    rects: list[Cell] = []

    def on_text(text: str, cm: list[float], tm: list[float], font: Any, size: float) -> None:
        matrix = _multiply(tm, cm)
        _add_text(lines, text, math.hypot(matrix[2], matrix[3]) * (size or 0), matrix[4], matrix[5], number)

    def on_operator(operator: bytes, operands: list[Any], cm: list[float], tm: list[float]) -> None:
        if operator == b"re" and len(operands) == 4 and len(rects) < MAX_RECTANGLES:
            rects.append(_rectangle([float(value) for value in operands], cm))

    page.extract_text(visitor_text=on_text, visitor_operand_before=on_operator)
    box = page.mediabox
    return PageText([line for line in lines if line.text.strip()], _table_cells(rects, page),
                    float(box.bottom), float(box.top))


def _add_text(lines: list[Line], text: str, size: float, x: float, y: float, page: int) -> None:
    """A run of text joins the last line when on its baseline; a newline or another baseline starts one."""
    for index, piece in enumerate(text.split("\n")):
        last = lines[-1] if lines else None
        if last is None or index > 0 or abs(last.y - y) > 0.5 * max(size, last.size, 1.0):
            lines.append(last := Line("", size, x, y, page))
        if piece.strip() and not last.text.strip():
            last.size, last.x, last.y = size, x, y  # the line is where its first visible text is
        last.text += piece
        if piece.strip():
            last.size = max(last.size, size)


def _multiply(m: list[float], n: list[float]) -> list[float]:
    return [m[0] * n[0] + m[1] * n[2], m[0] * n[1] + m[1] * n[3], m[2] * n[0] + m[3] * n[2],
            m[2] * n[1] + m[3] * n[3], m[4] * n[0] + m[5] * n[2] + n[4], m[4] * n[1] + m[5] * n[3] + n[5]]


def _rectangle(operands: list[float], cm: list[float]) -> Cell:
    x, y, width, height = operands
    corners = [_multiply([1, 0, 0, 1, px, py], cm)[4:] for px, py in ((x, y), (x + width, y + height))]
    (ax, ay), (bx, by) = corners
    return Cell(min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))


def _table_cells(rects: list[Cell], page: Any) -> list[Cell]:
    """Rectangles that are cells of a grid: at least 2 pt each way, not a page background, and sharing a row
    or a column with another one (a lone box around a note is not a table). Linear in the rectangles, of
    which a page's first MAX_RECTANGLES are kept: a hostile page may draw millions."""
    area = float(page.mediabox.width) * float(page.mediabox.height)
    boxes = [r for r in rects
             if r.x1 - r.x0 >= 2 and r.y1 - r.y0 >= 2 and (r.x1 - r.x0) * (r.y1 - r.y0) < area / 2]
    rows = Counter((round(box.y0), round(box.y1)) for box in boxes)
    columns = Counter((round(box.x0), round(box.x1)) for box in boxes)
    return [box for box in boxes
            if rows[round(box.y0), round(box.y1)] > 1 or columns[round(box.x0), round(box.x1)] > 1]


# --- the document: furniture and tables out ---------------------------------------------------------


def _body_lines(pages: list[PageText]) -> list[Line]:
    """Every page's lines but running headers and footers, page numbers and table cells."""

    def in_margin(line: Line) -> bool:
        bottom, top = pages[line.page].bottom, pages[line.page].top
        return line.y < bottom + MARGIN * (top - bottom) or line.y > top - MARGIN * (top - bottom)

    every_line = [line for page in pages for line in page.lines]
    body = _body_size(every_line) if every_line else 0.0

    def marginal(line: Line) -> bool:  # headers and footers are small print: a chapter's heading is not
        return in_margin(line) and not _is_heading(line, body)

    repeated = _running_lines(filter(marginal, every_line), len(pages))
    return [line for page in pages for line in page.lines
            if not (marginal(line) and (_furniture_key(line) in repeated or _is_page_number(line)))
            and not any(cell.holds(line) for cell in page.cells)]


def _is_page_number(line: Line) -> bool:
    return PAGE_NUMBER.fullmatch(line.text.strip()) is not None


def _furniture_key(line: Line) -> str:
    return re.sub(r"\d+", "#", tidy(line.text).lower())  # "Page 3 of 9" and "Page 4 of 9" are one line


def _running_lines(margin_lines: Iterable[Line], page_count: int) -> set[str]:
    """Margin lines found on at least half the pages (and on two at least): running headers and footers."""
    pages_with = Counter(key for key, _page in {(_furniture_key(line), line.page) for line in margin_lines})
    return {key for key, count in pages_with.items() if count >= max(2, page_count / 2)}


# --- sections ---------------------------------------------------------------------------------------


def _outline_marks(reader: Any) -> list[Mark]:
    """The outline's entries at every level, in page order; none when the outline is absent or broken."""
    marks: list[Mark] = []

    def walk(entries: list[Any], depth: int) -> None:
        for entry in entries:
            if len(marks) >= MAX_OUTLINE_ENTRIES or depth > 16:
                return
            if isinstance(entry, list):
                walk(entry, depth + 1)
                continue
            page = reader.get_destination_page_number(entry)
            title = tidy(str(entry.title or ""))
            if page is not None and page >= 0 and title:
                top = entry.top if isinstance(entry.top, int | float) else math.inf
                marks.append(Mark(title, page, float(top)))

    try:
        walk(reader.outline, 0)
    except Exception:  # a damaged outline is no reason to refuse the text: headings come from font sizes
        return []
    return sorted(marks, key=lambda mark: (mark.page, -mark.top))


def _sections(lines: list[Line], marks: list[Mark], title: str | None) -> list[Section]:
    """Sections starting at the outline's marks; a printed heading equal to a mark's title or the document's
    is not read again, other large lines are read as sentences."""
    titles = {_same(mark.title) for mark in marks} | {_same(title or "")}
    body = _body_size(lines)
    groups: list[tuple[str | None, list[Line]]] = [(None, [])]
    pending = list(marks)
    for line in lines:
        while pending and (pending[0].page < line.page or (
                pending[0].page == line.page and pending[0].top >= line.y - 2)):
            groups.append((pending.pop(0).title, []))
        if _same(line.text) in titles and _is_heading(line, body):
            continue
        groups[-1][1].append(line)
    return _to_sections(groups, body)


def _sections_by_size(lines: list[Line]) -> list[Section]:
    """Sections starting at each heading: a line set larger than the body text (a wrapped heading's lines
    are joined)."""
    body = _body_size(lines)
    groups: list[tuple[str | None, list[Line]]] = [(None, [])]
    previous: Line | None = None
    for line in lines:
        if _is_heading(line, body):
            if previous is not None and _continues_heading(previous, line, body) and not groups[-1][1]:
                groups[-1] = (f"{groups[-1][0]} {tidy(line.text)}", [])
            else:
                groups.append((tidy(line.text), []))
        else:
            groups[-1][1].append(line)
        previous = line
    return _to_sections(groups, body)


def _continues_heading(previous: Line, line: Line, body: float) -> bool:
    """The next line of a heading that wraps: a heading of the same size right below it."""
    same_size = abs(previous.size - line.size) < 0.5
    right_below = previous.page == line.page and 0 < previous.y - line.y < 2 * line.size
    return _is_heading(previous, body) and same_size and right_below


def _to_sections(groups: list[tuple[str | None, list[Line]]], body: float) -> list[Section]:
    sections = []
    for title, lines in groups:
        text = "\n\n".join(_paragraphs(lines, body))
        if text:
            sections.append(Section(title=title, text=text, metadata={"page": str(lines[0].page + 1)}))
    return sections


def _paragraphs(lines: list[Line], body: float) -> list[str]:
    """Lines joined into paragraphs: a wide gap between lines ends one, a bullet starts a list item (read as
    a sentence, without its bullet), a word hyphenated at a line's end is joined; a heading inside a section
    is read as a sentence of its own."""
    paragraphs: list[str] = []
    current = ""
    previous: Line | None = None

    def close() -> None:
        nonlocal current
        if current:
            paragraphs.append(as_sentence(current[1:].strip()) if current.startswith(ITEM) else current)
        current = ""

    for line in lines:
        text = tidy(line.text)
        if _is_heading(line, body):
            close()
            paragraphs.append(as_sentence(text))
            previous = None
            continue
        gap = previous is not None and previous.page == line.page and previous.y - line.y > 1.8 * line.size
        bullet = BULLET.match(text)
        if gap or bullet:
            close()
        current = _join(current, ITEM + text[bullet.end():] if bullet else text)
        previous = line
    close()
    return [tidy(p) for p in paragraphs if tidy(p)]


def _join(text: str, line: str) -> str:
    if re.search(r"[A-Za-z]-$", text) and line[:1].islower():
        return text[:-1] + line  # "infor-" + "mation"
    return f"{text} {line}" if text else line


def _body_size(lines: list[Line]) -> float:
    """The font size most of the text is set in."""
    weights: Counter[float] = Counter()
    for line in lines:
        weights[round(line.size * 2) / 2] += len(line.text)
    return weights.most_common(1)[0][0]


def _is_heading(line: Line, body: float) -> bool:
    return line.size >= body * HEADING_RATIO and len(line.text.strip()) <= 150


def _same(text: str) -> str:
    """A heading as compared with an outline entry: "2.1 ASN.1 syntax" is the entry "ASN.1 syntax"."""
    return SECTION_NUMBER.sub("", tidy(text)).casefold()


def _title(reader: Any, lines: list[Line]) -> str | None:
    """The document's own title, else the largest heading of its first page."""
    try:
        title = tidy(str((reader.metadata or {}).get("/Title") or ""))
    except Exception:  # a damaged info dictionary: fall back to the headings
        title = ""
    if title and not FILE_NAME_TITLE.search(title):
        return title
    body = _body_size(lines)
    first = [line for line in lines if line.page == lines[0].page and _is_heading(line, body)]
    return tidy(max(first, key=lambda line: line.size).text) if first else None


