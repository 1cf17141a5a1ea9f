#!/usr/bin/env python3
"""Writes the sample documents in examples/documents/: a PowerPoint deck with speaker notes, a PDF with
headings and a Word file with headings, each small and short (the demo renders one video per section).

Reproducible: fixed dates and authors inside each file, and the .pptx/.docx zip entries stamped with one
fixed time, so running it again writes the same bytes (with the locked library versions). The PDF is
written with fpdf2, a dev-only dependency: talkmill reads PDFs but never writes one.

    .venv/bin/python scripts/make_samples.py [OUTPUT_FOLDER]     (default: examples/documents)
"""

from __future__ import annotations

import io
import sys
import zipfile
from datetime import datetime, timezone
from pathlib import Path

FIXED_TIME = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
AUTHOR = "talkmill samples"
DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / "examples" / "documents"

# (title, bullets, speaker notes or None): the third slide has no notes, so its own text is read
SLIDES = [
    ("Introducing Lumen", ["Spring launch briefing"],
     "Welcome to the launch briefing for Lumen, our new smart desk lamp. "
     "In the next few minutes you will hear what it does, who it is for and when it ships."),
    ("What Lumen does", ["Follows the daylight", "Dims itself for video calls", "Ten years on one LED"],
     "Lumen follows the daylight outside and warms its light towards the evening. "
     "It dims itself when you join a video call, so your face stays evenly lit."),
    ("Who it is for", ["Remote workers with a home office", "Design studios that need even light"], None),
    ("Launch timeline", ["Pre-orders: 1 March", "First lamps ship: April"],
     "Pre-orders open on the first of March, and the first lamps ship in April. "
     "Retail partners receive their demo units two weeks earlier."),
]

PDF_TITLE = "Travel Expenses Policy"
PDF_SECTIONS = [
    ("Booking travel", "Book flights and trains through the travel portal at least two weeks ahead. "
                       "Economy class is the rule for trips shorter than six hours."),
    ("Meals and hotels", "Hotels are booked near the office you visit. "
                         "The daily limits for meals are in the table below."),
    ("Claiming expenses", "Claim your expenses within thirty days of your return. "
                          "Attach every receipt, and your manager approves the claim within a week."),
]
PDF_TABLE = [("City", "Hotel per night", "Meals per day"), ("London", "180 pounds", "60 pounds"),
             ("Berlin", "150 euros", "50 euros")]

WORD_TITLE = "Working from Home Guide"
WORD_SECTIONS = [
    ("Setting up your desk",
     ["Choose a quiet corner with daylight, and raise your screen to eye level."], []),
    ("Staying in touch", ["Keep your calendar up to date so colleagues know when to reach you."],
     ["Join the team call every morning", "Answer messages within a working day"]),
    ("Looking after yourself",
     ["Take a short break every hour, and end your working day at a fixed time."], []),
]


def deck() -> bytes:
    from pptx import Presentation

    presentation = Presentation()
    title_layout, content_layout = presentation.slide_layouts[0], presentation.slide_layouts[1]
    for number, (title, bullets, notes) in enumerate(SLIDES):
        slide = presentation.slides.add_slide(title_layout if number == 0 else content_layout)
        slide.shapes.title.text = title
        body = slide.placeholders[1].text_frame
        body.text = bullets[0]
        for bullet in bullets[1:]:
            body.add_paragraph().text = bullet
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
    _stamp(presentation.core_properties, "Lumen launch briefing")
    return _saved(presentation)


def pdf_document(*, outline: bool = True) -> bytes:
    """Two pages with a running header and page numbers, three headed sections, and a table (not read)."""
    from fpdf import FPDF

    class Policy(FPDF):
        def header(self) -> None:
            self.set_font("Helvetica", size=9)
            self.cell(0, 8, "Northwind - internal policy", align="C", new_x="LMARGIN", new_y="NEXT")
            self.ln(6)

        def footer(self) -> None:
            self.set_y(-15)
            self.set_font("Helvetica", size=9)
            self.cell(0, 8, f"Page {self.page_no()}", align="C")

    pdf = Policy()
    pdf.set_creation_date(FIXED_TIME)
    pdf.set_title(PDF_TITLE)
    pdf.set_author(AUTHOR)
    pdf.set_creator(AUTHOR)
    pdf.set_producer(AUTHOR)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 20)
    pdf.cell(0, 12, PDF_TITLE, new_x="LMARGIN", new_y="NEXT")
    for number, (heading, text) in enumerate(PDF_SECTIONS):
        if number == 2:
            pdf.add_page()
        if outline:
            pdf.start_section(heading)
        pdf.set_font("Helvetica", "B", 15)
        pdf.cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
        if number == 1:
            _pdf_table(pdf)
    return bytes(pdf.output())


def _pdf_table(pdf: object) -> None:
    with pdf.table() as table:  # type: ignore[attr-defined]
        for cells in PDF_TABLE:
            row = table.row()
            for cell in cells:
                row.cell(cell)
    pdf.ln(4)  # type: ignore[attr-defined]


def word_document() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading(WORD_TITLE, level=0)  # the "Title" style
    document.sections[0].header.paragraphs[0].text = "Northwind people team"  # not read aloud
    for heading, paragraphs, bullets in WORD_SECTIONS:
        document.add_heading(heading, level=1)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
        for bullet in bullets:
            document.add_paragraph(bullet, style="List Bullet")
        if heading == "Staying in touch":
            table = document.add_table(rows=2, cols=2)  # not read aloud, nor its caption
            for cell, text in zip(table._cells, ("Team", "Core hours", "Support", "9 to 17"), strict=True):
                cell.text = text
            document.add_paragraph("Table 1: core hours by team", style="Caption")
    _stamp(document.core_properties, WORD_TITLE)
    return _saved(document)


def _stamp(properties: object, title: str) -> None:
    """Fixed metadata: the libraries would write today's date and their own name."""
    moment = FIXED_TIME.replace(tzinfo=None)  # the libraries write naive datetimes as UTC
    for name, value in (("title", title), ("author", AUTHOR), ("last_modified_by", AUTHOR),
                        ("created", moment), ("modified", moment), ("revision", 1)):
        setattr(properties, name, value)


def _saved(package: object) -> bytes:
    """The package's bytes, its zip entries restamped with FIXED_TIME (zipfile writes the current time)."""
    raw = io.BytesIO()
    package.save(raw)  # type: ignore[attr-defined]
    fixed = io.BytesIO()
    with zipfile.ZipFile(raw) as source, zipfile.ZipFile(fixed, "w", zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            stamped = zipfile.ZipInfo(entry.filename, date_time=FIXED_TIME.timetuple()[:6])
            stamped.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(stamped, source.read(entry))
    return fixed.getvalue()


SAMPLES = {"lumen-launch.pptx": deck, "travel-expenses.pdf": pdf_document,
           "working-from-home.docx": word_document}


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in SAMPLES.items():
        data = make()
        (folder / name).write_bytes(data)
        print(f"{folder / name}  {len(data) // 1024} KB")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_FOLDER)
