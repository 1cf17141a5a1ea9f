"""Slide decks, PDFs and Word files in: real files written by scripts/make_samples.py (and by the same
libraries here, for the refused and odd cases), parsed as a user's run would parse them."""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
from pptx.enum.shapes import PP_PLACEHOLDER

from flows.bucket_watch import new_files
from talkmill.content import office, pdfdoc
from talkmill.content.parse import ingest_bytes
from talkmill.errors import ContentError, EmptyContentError
from talkmill.models import Document
from tests.pipeline.conftest import TALKMILL, cli_env

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "documents"
MAKE_SAMPLES = REPO / "scripts" / "make_samples.py"
NAMES = ("lumen-launch.pptx", "travel-expenses.pdf", "working-from-home.docx")


@pytest.fixture(scope="module")
def make_samples() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_samples", MAKE_SAMPLES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The samples as the repo's script writes them, into a fresh folder."""
    folder = tmp_path_factory.mktemp("samples")
    subprocess.run([sys.executable, str(MAKE_SAMPLES), str(folder)], check=True, capture_output=True,
                   timeout=60)
    return folder


def read(folder: Path, name: str) -> Document:
    path = folder / name
    return ingest_bytes(path.read_bytes(), str(path))


def spoken(document: Document) -> str:
    return " ".join(section.text for section in document.sections)


def test_the_script_writes_the_committed_samples_byte_for_byte(samples: Path) -> None:
    for name in NAMES:
        made = (samples / name).read_bytes()
        assert made == (EXAMPLES / name).read_bytes(), f"{name}: run scripts/make_samples.py again"
        assert len(made) < 100_000


# --- PowerPoint -------------------------------------------------------------------------------------


def test_a_deck_is_one_section_per_slide_spoken_from_its_notes(samples: Path) -> None:
    deck = read(samples, "lumen-launch.pptx")
    assert deck.source.type == "pptx" and deck.title == "Lumen launch briefing"
    assert [s.title for s in deck.sections] == ["Introducing Lumen", "What Lumen does", "Who it is for",
                                                "Launch timeline"]
    assert [s.metadata["slide"] for s in deck.sections] == ["1", "2", "3", "4"]
    first, features, audience, timeline = deck.sections
    assert first.text.startswith("Welcome to the launch briefing for Lumen")
    assert "Spring launch briefing" not in first.text  # the slide's own text gives way to its notes
    assert "dims itself when you join a video call" in features.text
    assert "Ten years on one LED" not in features.text
    assert timeline.text.endswith("two weeks earlier.")


def test_each_slide_plans_one_script_that_carries_its_slide_number(samples: Path) -> None:
    from talkmill.config import PipelineConfig
    from tasks.scripts import plan_scripts

    scripts = plan_scripts(read(samples, "lumen-launch.pptx"), PipelineConfig())
    assert [(s.section_title, s.metadata["slide"], s.chunk_count) for s in scripts] == [
        ("Introducing Lumen", "1", 1), ("What Lumen does", "2", 1), ("Who it is for", "3", 1),
        ("Launch timeline", "4", 1)]


def test_a_slide_without_notes_reads_its_title_then_its_bullets(samples: Path) -> None:
    audience = read(samples, "lumen-launch.pptx").sections[2]
    assert audience.text.split("\n\n") == ["Who it is for.", "Remote workers with a home office.",
                                           "Design studios that need even light."]


def _deck(slides: list[dict]) -> bytes:
    from pptx import Presentation
    from pptx.util import Inches

    presentation = Presentation()
    for spec in slides:
        slide = presentation.slides.add_slide(presentation.slide_layouts[spec.get("layout", 6)])
        if "title" in spec:
            slide.shapes.title.text = spec["title"]
        for top, text in spec.get("boxes", []):
            slide.shapes.add_textbox(Inches(1), Inches(top), Inches(6), Inches(1)).text_frame.text = text
        if spec.get("table"):
            table = slide.shapes.add_table(2, 2, Inches(1), Inches(5), Inches(4), Inches(1)).table
            table.cell(0, 0).text = "TABLE CELL"
        for kind, text in spec.get("furniture", []):  # the layout's footer/number placeholder, on the slide
            (placeholder,) = [shape for shape in slide.slide_layout.placeholders
                              if shape.placeholder_format.type == kind]
            slide.shapes._spTree.append(copy.deepcopy(placeholder._element))
            slide.placeholders[placeholder.placeholder_format.idx].text_frame.text = text
        if spec.get("hidden"):
            slide._element.set("show", "0")
        if "notes" in spec:
            slide.notes_slide.notes_text_frame.text = spec["notes"]
    raw = io.BytesIO()
    presentation.save(raw)
    return raw.getvalue()


def test_empty_and_hidden_slides_are_skipped_and_numbers_stay_the_decks() -> None:
    data = _deck([
        {"boxes": [(3, "Lower box comes second."), (1, "Upper box comes first.")]},
        {},  # blank
        {"layout": 5, "title": "Hidden", "notes": "Never said.", "hidden": True},
        {"layout": 5, "title": "Numbers", "table": True,
         "furniture": [(PP_PLACEHOLDER.FOOTER, "Confidential"), (PP_PLACEHOLDER.SLIDE_NUMBER, "4")]},
        {"layout": 5, "title": "  ", "notes": "   "},  # blank title and notes
    ])
    deck = ingest_bytes(data, "s3://inbox/review.pptx")
    assert [(s.title, s.metadata["slide"]) for s in deck.sections] == [(None, "1"), ("Numbers", "4")]
    assert deck.sections[0].text == "Upper box comes first.\n\nLower box comes second."
    assert deck.sections[1].text == "Numbers."  # neither the table's cells nor the footer and number
    assert deck.title == "review"  # no title in its properties, none on its first slide: the file's name


@pytest.mark.parametrize("slides", [[], [{}, {}]], ids=["no slides", "blank slides"])
def test_a_deck_with_nothing_to_say_is_refused_naming_the_file(slides: list[dict]) -> None:
    with pytest.raises(EmptyContentError, match=r"^s3://inbox/empty\.pptx: found no text to read aloud"):
        ingest_bytes(_deck(slides), "s3://inbox/empty.pptx")


# --- PDF --------------------------------------------------------------------------------------------


def test_a_pdf_is_read_by_its_outline_without_headers_page_numbers_or_tables(samples: Path) -> None:
    policy = read(samples, "travel-expenses.pdf")
    assert policy.source.type == "pdf" and policy.title == "Travel Expenses Policy"
    assert [(s.title, s.metadata["page"]) for s in policy.sections] == [
        ("Booking travel", "1"), ("Meals and hotels", "1"), ("Claiming expenses", "2")]
    assert policy.sections[0].text == ("Book flights and trains through the travel portal at least two weeks "
                                       "ahead. Economy class is the rule for trips shorter than six hours.")
    text = spoken(policy)
    for unread in ("Northwind", "Page 1", "Page 2", "London", "180 pounds", "Meals per day",
                   "Travel Expenses"):
        assert unread not in text


def test_a_pdf_without_an_outline_is_read_by_its_heading_sizes(make_samples: ModuleType) -> None:
    by_size = ingest_bytes(make_samples.pdf_document(outline=False), "plain.pdf")
    by_outline = ingest_bytes(make_samples.pdf_document(), "outlined.pdf")
    assert [s.model_dump() for s in by_size.sections] == [s.model_dump() for s in by_outline.sections]
    assert by_size.title == "Travel Expenses Policy"


def _columns_pdf(pages: int) -> bytes:
    """Pages with a running header, a page number, a heading, two columns, a ruled table, a subheading."""
    from fpdf import FPDF

    class Handbook(FPDF):
        def header(self) -> None:
            self.set_font("Helvetica", size=9)
            self.cell(0, 8, "Acme handbook - internal", align="C")
            self.ln(12)

        def footer(self) -> None:
            self.set_y(-15)
            self.set_font("Helvetica", size=9)
            self.cell(0, 8, f"{self.page_no()} of {pages}", align="R")

    pdf = Handbook()
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 18)
        pdf.cell(0, 10, f"Chapter {number}")
        pdf.ln(12)
        pdf.set_font("Helvetica", size=11)
        with pdf.text_columns(ncols=2, gutter=10) as columns:
            columns.write(f"Left column {number} starts. " + "Each week brings a short session. " * 6 +
                          f"Left column {number} ends. ")
            columns.new_column()
            columns.write(f"Right column {number} starts. " + "A mentor answers questions. " * 6 +
                          f"Right column {number} ends.")
        pdf.ln(4)
        with pdf.table() as table:
            for cells in (("Item", "Owner"), ("Laptop", "IT desk")):
                row = table.row()
                for cell in cells:
                    row.cell(f"cell {cell}")
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 14)
        pdf.cell(0, 8, f"Summary {number}")
        pdf.ln(10)
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, f"Closing words of chapter {number}.")
    return bytes(pdf.output())


def test_two_columns_are_read_one_after_the_other_and_tables_are_not_read() -> None:
    document = ingest_bytes(_columns_pdf(3), "handbook.pdf")
    assert [(s.title, s.metadata["page"]) for s in document.sections] == [
        ("Chapter 1", "1"), ("Summary 1", "1"), ("Chapter 2", "2"), ("Summary 2", "2"), ("Chapter 3", "3"),
        ("Summary 3", "3")]
    chapter = document.sections[2].text
    order = [chapter.index(f"{side} column 2 {edge}")
             for side in ("Left", "Right") for edge in ("starts", "ends")]
    assert order == sorted(order), chapter
    assert document.sections[3].text == "Closing words of chapter 2."
    text = spoken(document)
    assert "cell" not in text and "Acme" not in text and " of 3" not in text


def test_wrapped_headings_hyphenated_words_and_bullets_read_as_a_reader_would() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.multi_cell(60, 9, "A heading long enough to wrap twice", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, "Some body text about infor-", new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 6, "mation security, read aloud.", new_x="LMARGIN", new_y="NEXT")
    for item in ("\u00b7 lock your screen", "\u00b7 report lost badges at once"):  # "·" bullets
        pdf.multi_cell(0, 6, item, new_x="LMARGIN", new_y="NEXT")
    (section,) = ingest_bytes(bytes(pdf.output()), "wrap.pdf").sections
    assert section.title == "A heading long enough to wrap twice"
    assert section.text.split("\n\n") == ["Some body text about information security, read aloud.",
                                          "Lock your screen.", "Report lost badges at once."]


def _image_only_pdf() -> bytes:
    from fpdf import FPDF
    from PIL import Image, ImageDraw

    scan = Image.new("L", (400, 200), 255)
    ImageDraw.Draw(scan).text((20, 80), "This text is only pixels.", fill=0)
    pdf = FPDF()
    pdf.add_page()
    pdf.image(scan, x=10, y=10, w=190)
    return bytes(pdf.output())


def test_a_scanned_pdf_is_refused_as_having_no_text_layer() -> None:
    with pytest.raises(ContentError, match=r"^s3://inbox/scan\.pdf: no text layer.*run OCR"):
        ingest_bytes(_image_only_pdf(), "s3://inbox/scan.pdf")


def _encrypted(data: bytes, user_password: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_password_protected_pdf_is_refused(samples: Path) -> None:
    locked = _encrypted((samples / "travel-expenses.pdf").read_bytes(), user_password="letmein")
    with pytest.raises(ContentError, match=r"^locked\.pdf: password-protected PDF"):
        ingest_bytes(locked, "locked.pdf")


def test_a_pdf_that_opens_without_a_password_is_read(samples: Path) -> None:
    restricted = _encrypted((samples / "travel-expenses.pdf").read_bytes(), user_password="")
    document = ingest_bytes(restricted, "restricted.pdf")
    assert [s.title for s in document.sections] == ["Booking travel", "Meals and hotels", "Claiming expenses"]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "zeroed"])
def test_a_damaged_pdf_is_refused_naming_the_file(samples: Path, damage: str) -> None:
    data = (samples / "travel-expenses.pdf").read_bytes()
    broken = {"truncated": data[: len(data) // 3], "garbage": b"%PDF-1.7\n" + bytes(range(256)) * 20,
              "zeroed": data[:200] + b"\0" * (len(data) - 200)}[damage]
    with pytest.raises(ContentError, match=r"^upload/broken\.pdf: ") as refused:
        ingest_bytes(broken, "upload/broken.pdf")
    assert any(word in str(refused.value) for word in ("not a readable PDF", "not readable", "no text layer"))


def test_an_over_long_pdf_is_refused_before_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdfdoc, "MAX_PAGES", 2)
    with pytest.raises(ContentError, match=r"^long\.pdf: 3 pages; at most 2 are read"):
        ingest_bytes(_columns_pdf(3), "long.pdf")


def test_a_pdf_that_reads_too_long_is_refused_naming_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdfdoc, "MAX_SECONDS", -1.0)  # a budget already spent: the first check refuses
    with pytest.raises(ContentError, match=r"^slow\.pdf: reading took over -1 s \(page 1 of 2\)"):
        ingest_bytes(_columns_pdf(2), "slow.pdf")


def _hand_written_pdf(objects: list[bytes]) -> bytes:
    """A PDF of these objects (1 0 obj is the catalog), with a correct cross-reference table."""
    body, offsets = b"%PDF-1.4\n", []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(body))
        body += b"%d 0 obj\n%s\nendobj\n" % (number, obj)
    count = len(objects) + 1
    xref = b"xref\n0 %d\n0000000000 65535 f \n" % count + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return body + xref + b"trailer << /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (count, len(body))


def _stream(content: bytes, entries: bytes = b"") -> bytes:
    return b"<< /Length %d %s >>\nstream\n%s\nendstream" % (len(content), entries, content)


CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
HELLO = _stream(b"BT /F 12 Tf 50 700 Td (Hello there.) Tj ET")
HOSTILE = {  # each: objects 1.. of a hand-written file that once made PDF readers loop or recurse
    "page tree whose kid is its parent": [CATALOG, b"<< /Type /Pages /Kids [2 0 R] /Count 1 >>"],
    "form that draws itself": [
        CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 600 800] /Contents 4 0 R "
        b"/Resources << /XObject << /X 5 0 R >> /Font << /F 6 0 R >> >> >>",
        _stream(b"BT /F 12 Tf 50 700 Td (Hello there.) Tj ET /X Do"),
        _stream(b"/X Do", b"/Type /XObject /Subtype /Form /BBox [0 0 600 800] "
                          b"/Resources << /XObject << /X 5 0 R >> >>"),
        FONT],
    "outline entry that is its own next": [
        b"<< /Type /Catalog /Pages 2 0 R /Outlines 5 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 600 800] /Contents 4 0 R "
        b"/Resources << /Font << /F 6 0 R >> >> >>",
        HELLO, b"<< /Type /Outlines /First 7 0 R /Last 7 0 R /Count 1 >>", FONT,
        b"<< /Title (Loop) /Parent 5 0 R /Next 7 0 R /First 7 0 R /Dest [3 0 R /XYZ 0 800 0] >>"],
    "page count of a hundred million": [
        CATALOG, b"<< /Type /Pages /Kids [3 0 R 3 0 R] /Count 99999999 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 600 800] /Contents 4 0 R "
        b"/Resources << /Font << /F 5 0 R >> >> >>",
        HELLO, FONT],
}


@pytest.mark.parametrize("objects", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_pdf_is_read_or_refused_within_seconds(objects: list[bytes]) -> None:
    started = time.monotonic()
    try:
        document = ingest_bytes(_hand_written_pdf(objects), "hostile.pdf")
    except ContentError as refused:
        assert str(refused).startswith("hostile.pdf: ")
    else:
        assert document.sections[0].text.startswith("Hello there.")
    assert time.monotonic() - started < 10


# --- Word -------------------------------------------------------------------------------------------


def test_a_word_file_is_read_by_heading_without_tables_captions_or_headers(samples: Path) -> None:
    guide = read(samples, "working-from-home.docx")
    assert guide.source.type == "docx" and guide.title == "Working from Home Guide"
    assert [s.title for s in guide.sections] == ["Setting up your desk", "Staying in touch",
                                                 "Looking after yourself"]
    assert guide.sections[1].text.split("\n\n") == [
        "Keep your calendar up to date so colleagues know when to reach you.",
        "Join the team call every morning.", "Answer messages within a working day."]
    text = spoken(guide)
    for unread in ("Core hours", "Support", "Table 1", "Northwind"):
        assert unread not in text


def test_a_word_file_without_headings_is_one_section_titled_by_its_properties() -> None:
    import docx

    document = docx.Document()
    document.core_properties.title = "Quarterly note"
    document.add_paragraph("Sales grew in every region this quarter.")
    document.add_heading("A third-level heading is read as a sentence", level=3)
    raw = io.BytesIO()
    document.save(raw)
    note = ingest_bytes(raw.getvalue(), "note.docx")
    assert note.title == "Quarterly note" and [s.title for s in note.sections] == [None]
    assert note.sections[0].text == ("Sales grew in every region this quarter.\n\n"
                                     "A third-level heading is read as a sentence.")


def test_office_files_that_are_not_packages_are_refused_naming_the_file(samples: Path) -> None:
    with pytest.raises(ContentError, match=r"^notes\.docx: not a readable Word \(\.docx\) file"):
        ingest_bytes(b"PK\x03\x04 but no zip after all", "notes.docx")
    with pytest.raises(ContentError, match=r"^deck\.pptx: a password-protected or pre-2007 PowerPoint"):
        ingest_bytes(office.OLE_MAGIC + b"\0" * 512, "deck.pptx")
    parts = io.BytesIO()
    with zipfile.ZipFile(parts, "w") as package:
        package.writestr("[Content_Types].xml", "<Types/>")
    with pytest.raises(ContentError, match=r"^deck\.pptx: not a readable PowerPoint \(\.pptx\) file"):
        ingest_bytes(parts.getvalue(), "deck.pptx")


@pytest.mark.parametrize(("name", "part"), [("lumen-launch.pptx", "ppt/slides/slide2.xml"),
                                            ("lumen-launch.pptx", "ppt/notesSlides/notesSlide1.xml"),
                                            ("working-from-home.docx", "word/document.xml"),
                                            ("working-from-home.docx", "word/styles.xml")])
def test_a_package_with_a_broken_part_is_refused_naming_the_file(samples: Path, name: str, part: str) -> None:
    broken = io.BytesIO()
    with zipfile.ZipFile(samples / name) as source, zipfile.ZipFile(broken, "w") as target:
        for entry in source.infolist():
            target.writestr(entry, b"<not xml" if entry.filename == part else source.read(entry))
    with pytest.raises(ContentError, match=rf"^upload/{name}: not a readable (PowerPoint|Word)"):
        ingest_bytes(broken.getvalue(), f"upload/{name}")


def test_a_package_that_unpacks_too_large_is_refused(samples: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(office, "MAX_UNPACKED_BYTES", 50_000)
    unpacks = r"home\.docx: this Word \(\.docx\) package unpacks to 0\.\d MB; at most 0\.0 MB"
    with pytest.raises(ContentError, match=unpacks):
        read(samples, "working-from-home.docx")


# --- detection, folders, the inbox, the CLI ---------------------------------------------------------


@pytest.mark.parametrize("name", ["empty.pdf", "empty.pptx", "empty.docx"])
def test_an_empty_file_is_refused_as_every_format_refuses_one(name: str) -> None:
    with pytest.raises(EmptyContentError, match=rf"^upload/{name}: found no text to read aloud"):
        ingest_bytes(b"", f"upload/{name}")


def test_documents_without_a_suffix_are_known_by_their_bytes(samples: Path) -> None:
    for name, kind in zip(NAMES, ("pptx", "pdf", "docx"), strict=True):
        assert ingest_bytes((samples / name).read_bytes(), "s3://inbox/upload").source.type == kind


def test_the_inbox_takes_decks_pdfs_and_word_files() -> None:
    keys = ["drop/deck.pptx", "drop/policy.PDF", "drop/guide.docx", "drop/old.ppt", "drop/old.doc"]
    assert new_files(keys) == keys[:3]


@pytest.mark.usefixtures("prefect_harness")
def test_a_dry_run_on_the_documents_plans_one_script_per_slide_and_section(
        tmp_path: Path, prefect_harness: str) -> None:
    command = [str(TALKMILL), "run", str(EXAMPLES), "--output", str(tmp_path / "out"), "--dry-run"]
    planned = subprocess.run(command, env=cli_env(prefect_harness), cwd=tmp_path, capture_output=True,
                             text=True, timeout=180)
    assert planned.returncode == 0, planned.stderr
    (manifest,) = (tmp_path / "out").glob("runs/*/manifest.jsonl")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert {row["status"] for row in rows} == {"planned"}
    by_type: dict[str, list[str]] = {}
    for row in rows:
        by_type.setdefault(row["source_type"], []).append(row["section"])
    assert by_type == {
        "pptx": ["Introducing Lumen", "What Lumen does", "Who it is for", "Launch timeline"],
        "pdf": ["Booking travel", "Meals and hotels", "Claiming expenses"],
        "docx": ["Setting up your desk", "Staying in touch", "Looking after yourself"],
    }
