"""Ingest: realistic pages, Markdown with code and tables, CSV rows, plain text, and http(s) on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from talkmill.config import S3Config
from talkmill.errors import (
    ContentError,
    CsvRowsError,
    EmptyContentError,
    SourceReadError,
    UnsupportedSourceError,
)
from talks_contract.drivers import all_drivers
from talks_contract.formats import EXPRESSIONS, RESULT_FORMATS
from talks_contract.limits import TEXT_MAX_CHARS, TEXT_MIN_CHARS
from tasks import ingest as ingest_module
from talks_contract.urlpolicy import UrlPolicy
from tasks.ingest import ingest, ingest_bytes, ingest_source, read_source, slug
from tests.s3server import S3Server

DATA = Path(__file__).parent / "data"
LOOPBACK = UrlPolicy.from_entries("127.0.0.1/32")  # the test servers' address: allowlisted explicitly


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def http_data() -> Iterator[str]:
    """tests/pipeline/data over http://127.0.0.1:<port>/."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(DATA)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def all_text(document) -> str:
    return " ".join(section.text for section in document.sections)


# --- HTML -------------------------------------------------------------------------------------------

ARTICLE = [
    "lifted their first containers on Tuesday",
    "the diesel generators that hummed through the night have been switched off for good.",
    "Dr. Imani Osei, who leads the project, expects the work to cost about $4.2 million in total.",
]
BOILERPLATE = ["cookie", "Shipping desk", "Tide tables", "Bluewater", "Most read", "Ferry timetable",
               "Quayside Media Trust", "Privacy notice", "tracking", "trackPageView", "NewsArticle"]


def check_news_page(document) -> None:
    text = all_text(document)
    for sentence in ARTICLE:
        assert sentence in text
    for junk in BOILERPLATE:
        assert junk.lower() not in text.lower(), junk
    assert document.title == "Harbour crane upgrade finishes early"
    titles = [section.title for section in document.sections]
    assert titles == ["Harbour crane upgrade finishes early", "Quieter nights for residents",
                      "What comes next"]


def test_article_page_keeps_the_article_and_drops_menus_footer_cookies_ads_scripts() -> None:
    path = DATA / "harbour-news.html"
    document = ingest_bytes(path.read_bytes(), str(path))
    check_news_page(document)
    assert document.source.type == "html" and document.id == "harbour-news"
    assert len(document.source.checksum) == 64


def test_html_falls_back_to_beautifulsoup_when_trafilatura_finds_nothing(monkeypatch) -> None:
    import trafilatura

    monkeypatch.setattr(trafilatura, "extract", lambda *args, **kwargs: None)
    path = DATA / "harbour-news.html"
    check_news_page(ingest_bytes(path.read_bytes(), str(path)))


def test_html_fallback_without_an_article_element_still_drops_page_furniture(monkeypatch) -> None:
    import trafilatura

    monkeypatch.setattr(trafilatura, "extract", lambda *args, **kwargs: None)
    page = (b"<html><head><title>Canteen menu</title></head><body>"
            b"<header><p>Intranet home</p></header><nav><a href='/hr'>HR pages</a></nav>"
            b"<div class='cookie-notice'><p>We use cookies for statistics.</p></div>"
            b"<div class='content'><h2>This week</h2><p>Soup of the day is lentil.</p>"
            b"<ul><li>vegan curry on tuesday</li></ul></div>"
            b"<div class='promo-box'><p>Win a free lunch!</p></div>"
            b"<footer><p>Facilities team, building C</p></footer></body></html>")
    document = ingest_bytes(page, "menu.html")
    assert document.title == "Canteen menu"
    assert [(s.title, s.text) for s in document.sections] == [
        ("This week", "Soup of the day is lentil.\n\nVegan curry on tuesday.")]


# --- Markdown ---------------------------------------------------------------------------------------


def test_markdown_reads_prose_and_skips_code_tables_images_and_html() -> None:
    document = ingest(str(DATA / "onboarding-guide.md"))
    assert document.title == "Laptop setup guide"
    titles = [s.title for s in document.sections]
    assert titles == ["Laptop setup guide", "Install the tools", "Check your access"]
    install = document.sections[1].text
    assert "Open the software centre and install the browser and the chat app." in install  # link text kept
    assert "run git status to check" in install  # a code span made of words is read
    text = all_text(document)
    for unread in ("https://", "curl", "TOOLS_HOME", "indented_code_block", "README.txt", "Browser | 131",
                   "Version", "4.2", "Screenshot", "secret internal note", "details"):
        assert unread not in text, unread
    # list items become sentences
    assert "Sign in to the chat app. Join the #new-starters channel. Say hello!" in " ".join(
        document.sections[2].text.split())


def test_markdown_heading_without_prose_is_dropped() -> None:
    document = ingest_bytes(b"# Only a title\n\n```\ncode\n```\n\n## Real\n\nSpoken words here.\n", "x.md")
    assert [(s.title, s.text) for s in document.sections] == [("Real", "Spoken words here.")]
    assert document.title == "Only a title"


# --- plain text and detection -----------------------------------------------------------------------


def test_plain_text_title_and_paragraphs() -> None:
    document = ingest(str(DATA / "notes.txt"))
    assert document.title == "Weekly operations note"
    assert document.sections[0].text.split("\n\n") == [
        "The loading bay closes at six on Friday for resurfacing.",
        "Deliveries after that time go to the east gate.",
    ]


@pytest.mark.parametrize("data, kind", [
    (b"<!DOCTYPE html><html><body><p>Hi there, reader.</p></body></html>", "html"),
    (b"# Heading\n\nSome words here.\n", "markdown"),
    (b"id,text\n1,Hello there.\n", "csv"),
    (b"Just some words to say.\n", "text"),
])
def test_kind_is_detected_from_content_without_an_extension(data: bytes, kind: str) -> None:
    assert ingest_bytes(data, "s3://inbox/upload-1234").source.type == kind


def test_unreadable_inputs_raise_content_errors_naming_the_source() -> None:
    with pytest.raises(EmptyContentError, match="empty.md"):
        ingest_bytes(b"```\nonly code\n```\n", "empty.md")
    with pytest.raises(ContentError, match=r"latin\.txt: not UTF-8"):
        ingest_bytes("Café crème".encode("latin-1"), "latin.txt")
    with pytest.raises(UnsupportedSourceError, match="epub"):
        ingest_bytes(b"hello", "a.bin", kind="epub")
    with pytest.raises(ContentError, match=r"a\.bin: not a readable PDF"):
        ingest_bytes(b"hello", "a.bin", kind="pdf")


def test_slug_of_file_names_and_urls() -> None:
    assert slug("/tmp/Remote Onboarding.HTML") == "remote-onboarding"
    assert slug("https://example.com/blog/why-we-ship/") == "why-we-ship"
    assert slug("s3://inbox/rows/Q3%20updates.csv") == "q3-updates"


# --- CSV --------------------------------------------------------------------------------------------


def test_csv_quoting_blank_cells_leading_zeros_and_metadata() -> None:
    document = ingest(str(DATA / "rows-good.csv"))
    first, second, third = document.sections
    assert first.text == 'Hello, team: this is row "seven", with a comma.'
    assert [s.overrides["id"] for s in document.sections] == ["007", "0010", "042"]
    assert first.overrides == {
        "id": "007", "presenter_image": str(DATA / "portraits" / "face.png"),  # relative to the CSV
        "expression": "happy", "stitch": "true", "result_format": "mov", "output_name": "intro-007",
    }
    assert second.overrides == {"id": "0010", "voice_provider": "microsoft", "voice_id": "en-GB-RyanNeural",
                                "driver_url": "bank://lively/driver-02"}  # blank cells: not overrides
    assert third.overrides == {"id": "042"}
    assert [s.metadata for s in document.sections] == [{"region": "EMEA"}, {}, {"region": "APAC, north"}]
    assert [s.line for s in document.sections] == [2, 3, 5]  # row 0010's quoted cell spans lines 3-4


def test_csv_bad_rows_are_all_reported_with_line_numbers() -> None:
    with pytest.raises(CsvRowsError) as caught:
        ingest(str(DATA / "rows-bad.csv"))
    found = [(p.line, p.column) for p in caught.value.problems]
    assert found == [(3, "text"), (4, "text"), (5, "stitch"), (6, "result_format"), (7, "expression"),
                     (8, "id")]
    message = str(caught.value)
    assert "rows-bad.csv" in message and "nothing was planned" in message
    assert "line 5, column 'stitch': 'maybe' is not allowed; use one of: true, false" in message
    assert "line 8, column 'id': id '1' is already used on line 2" in message


def test_csv_row_checks_voice_driver_and_names() -> None:
    rows = ("text,voice_provider,voice_id,driver_url,output_name,presenter_image\n"
            "Good text.,amazon,,,,\n"
            "Good text.,,,bank://wobbly,,\n"
            "Good text.,,,,../escape,\n"
            "Good text.,,,,,face.gif\n")
    with pytest.raises(CsvRowsError) as caught:
        ingest_bytes(rows.encode(), "rows.csv")
    assert [(p.line, p.column) for p in caught.value.problems] == [
        (2, "voice_id"), (3, "driver_url"), (4, "output_name"), (5, "presenter_image")]


def row_problems(column: str, *values: str) -> list[tuple[int, str]]:
    """(line, column) of every problem in a CSV of one good text per row and `values` in `column`."""
    rows = f"text,{column}\n" + "".join(f"Good text.,{value}\n" for value in values)
    try:
        ingest_bytes(rows.encode(), "rows.csv")
    except CsvRowsError as error:
        return [(p.line, p.column) for p in error.problems]
    return []


def test_csv_driver_urls_are_exactly_the_contracts() -> None:
    accepted = ["bank://natural/", "bank://natural", "bank://lively/driver-02/flipped", *all_drivers()]
    assert row_problems("driver_url", *accepted) == []
    refused = ["s3://b/k.mp4", "https://example.com/driver.mp4", "bank://natural/driver-99", "bank://wobbly"]
    assert row_problems("driver_url", *refused) == [(line, "driver_url") for line in range(2, 6)]


def test_csv_choices_and_text_limits_are_the_contracts() -> None:
    assert row_problems("result_format", *RESULT_FORMATS) == []
    assert row_problems("expression", *EXPRESSIONS) == []
    assert row_problems("result_format", "webm") == [(2, "result_format")]
    for length in (TEXT_MIN_CHARS, TEXT_MAX_CHARS):
        ingest_bytes(f"text\n{'a' * length}\n".encode(), "rows.csv")
    for length in (TEXT_MIN_CHARS - 1, TEXT_MAX_CHARS + 1):
        with pytest.raises(CsvRowsError, match=f"{length:,} characters; allowed: {TEXT_MIN_CHARS} to"):
            ingest_bytes(f"text\n{'a' * length}\n".encode(), "rows.csv")


def test_csv_text_a_voice_cannot_speak_is_refused_with_its_line() -> None:
    """The engine refuses these at POST; the CSV says so before any talk is made."""
    rows = 'text\n"...?!"\n"Fine text."\n"bad\x01byte"\n'.encode()
    with pytest.raises(CsvRowsError) as refused:
        ingest_bytes(rows, "rows.csv")
    assert [(p.line, p.column) for p in refused.value.problems] == [(2, "text"), (4, "text")]
    assert "no letter or digit" in str(refused.value) and "U+0001" in str(refused.value)


def test_csv_without_text_or_source_column_names_the_header() -> None:
    with pytest.raises(CsvRowsError, match=r"line 1, column '\(header\)': no 'text' or 'source' column"):
        ingest_bytes(b"title,body\nA,Some words.\n", "rows.csv")


def test_csv_header_problems_and_blank_trailing_columns() -> None:
    with pytest.raises(CsvRowsError) as caught:
        ingest_bytes(b"id,text,id,\n1,Hello there.,2,x\n", "rows.csv")
    assert [(p.line, p.column) for p in caught.value.problems] == [(1, "(empty)"), (1, "id")]
    with pytest.raises(CsvRowsError) as long_rows:
        ingest_bytes(b"id,text\n1,Fine row.\n2,Hello, there.\n3,Fine.\n4,Hi, you, all.\n", "rows.csv")
    assert [(p.line, p.column) for p in long_rows.value.problems] == [(3, "(row)"), (5, "(row)")]
    assert "3 cells but the header names 2 columns" in str(long_rows.value)
    exported = ingest_bytes(b"id,text,,\n01,Hello there.,,\n", "rows.csv")  # empty trailing columns
    assert exported.sections[0].overrides == {"id": "01"} and exported.sections[0].metadata == {}


def test_csv_source_rows_are_fetched_relative_to_the_csv_and_keep_their_row_settings() -> None:
    document = ingest(str(DATA / "rows-sources.csv"))
    guide = [s for s in document.sections if s.overrides.get("id") == "guide"]
    assert [s.title for s in guide] == ["Laptop setup guide", "Install the tools", "Check your access"]
    assert all(s.line == 2 and s.overrides["voice_id"] == "en-GB-SoniaNeural" for s in guide)
    assert guide[0].metadata["source"] == str(DATA / "onboarding-guide.md")
    assert guide[0].metadata["team"] == "IT"
    notes = document.sections[-1]
    assert notes.line == 3 and "east gate" in notes.text


def test_csv_source_rows_that_fail_are_reported_together() -> None:
    rows = b"source\nmissing-one.md\nmissing-two.html\n"
    with pytest.raises(CsvRowsError) as caught:
        ingest("rows.csv", fetch=lambda uri: rows if uri == "rows.csv" else read_source(uri))
    assert [(p.line, p.column) for p in caught.value.problems] == [(2, "source"), (3, "source")]
    assert "missing-one.md" in str(caught.value) and "missing-two.html" in str(caught.value)


# --- reading sources --------------------------------------------------------------------------------


def read_loopback(uri: str) -> bytes:
    return read_source(uri, policy=LOOPBACK)


def test_http_ingest_from_a_real_loopback_server(http_data: str) -> None:
    check_news_page(ingest(f"{http_data}/harbour-news.html", fetch=read_loopback))
    rows = ingest(f"{http_data}/rows-sources.csv", fetch=read_loopback)  # relative sources: against its URL
    assert rows.sections[0].metadata["source"] == f"{http_data}/onboarding-guide.md"
    assert "east gate" in rows.sections[-1].text


def test_http_errors_say_what_and_whether_to_retry(http_data: str) -> None:
    with pytest.raises(SourceReadError, match=r"nope\.html: HTTP 404") as missing:
        read_loopback(f"{http_data}/nope.html")
    assert missing.value.transient is False
    with pytest.raises(SourceReadError, match="limit") as big:
        read_source(f"{http_data}/harbour-news.html", max_bytes=100, policy=LOOPBACK)
    assert big.value.transient is False
    with pytest.raises(SourceReadError) as refused:
        read_source("http://127.0.0.1:9/closed.html", timeout=2, policy=LOOPBACK)
    assert refused.value.transient is True
    with pytest.raises(SourceReadError, match="refused: the host '127.0.0.1' is .* non-public") as guarded:
        read_source(f"{http_data}/harbour-news.html")  # loopback is not public: refused by default
    assert guarded.value.transient is False


def test_local_reads_and_unsupported_schemes(tmp_path: Path) -> None:
    page = tmp_path / "page.txt"
    page.write_bytes(b"Hello from a file.")
    assert read_source(page.as_uri()) == read_source(str(page)) == b"Hello from a file."
    with pytest.raises(SourceReadError, match="absent.md: cannot read the file"):
        read_source(str(tmp_path / "absent.md"))
    with pytest.raises(UnsupportedSourceError, match="ftp://"):
        read_source("ftp://example.com/a.md")


@pytest.fixture
def s3_source(seaweedfs: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Config:
    """A note at s3://talkmill/sources/note.md; the S3 settings that reach it."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    note = b"# Note\n\nHello from S3.\n"
    seaweedfs.client().put_object(Bucket="talkmill", Key="sources/note.md", Body=note)
    return S3Config(endpoint_url=seaweedfs.endpoint_url, region="us-east-1")


def test_s3_sources_are_read_with_the_pipelines_s3_client(s3_source: S3Config, monkeypatch) -> None:
    from connectors.storage import s3 as s3_store

    made = []
    real_client_for = s3_store.client_for
    spy = lambda settings: made.append(settings) or real_client_for(settings)
    monkeypatch.setattr(s3_store, "client_for", spy)
    document = ingest_source.fn("s3://talkmill/sources/note.md", s3=s3_source)
    assert (document.title, document.sections[0].text) == ("Note", "Hello from S3.")
    assert made == [s3_source]  # the endpoint and region of the config, the factory with timeouts
    with pytest.raises(SourceReadError, match="limit"):
        read_source("s3://talkmill/sources/note.md", max_bytes=5, s3=s3_source)
    with pytest.raises(SourceReadError, match="NoSuchKey") as missing:
        read_source("s3://talkmill/sources/absent.md", s3=s3_source)
    assert missing.value.transient is False
    with pytest.raises(UnsupportedSourceError, match="s3://bucket/key"):
        read_source("s3://talkmill", s3=s3_source)


def test_ingest_source_is_an_io_task_that_retries_only_what_may_succeed_later() -> None:
    assert ingest_source.retries == 2
    document = ingest_source.fn(str(DATA / "notes.txt"))
    assert document.title == "Weekly operations note"

    class State:
        def __init__(self, data: object) -> None:
            self.data = data

    worth = ingest_module._worth_retrying
    assert worth(None, None, State(SourceReadError("x: timeout", transient=True)))
    assert not worth(None, None, State(SourceReadError("x: HTTP 404")))
    assert not worth(None, None, State(CsvRowsError("rows.csv", [])))
    assert worth(None, None, State(OSError("disk")))
