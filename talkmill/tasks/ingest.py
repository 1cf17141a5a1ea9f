"""Ingest: bytes from a path, URL or object-store key → a Document of titled sections to read aloud.

Pure parsing (`ingest_bytes`) is apart from I/O (`read_source`); `ingest` joins them and fetches the
sources that CSV rows name. CSV rows that name a `source` are fetched here, in `ingest`, not by the flow:
each fetched section inherits the row's overrides, line and metadata (plus metadata["source"]), so the
planner sees one Document per CSV and every problem still points at a CSV line.

Relative paths inside a CSV (`source`, `presenter_image`) are relative to the CSV's own location: its
folder for a local file, the URL's folder for http(s) and s3 — like links in HTML, so a folder of rows and
images moves as a unit.
"""

from __future__ import annotations

import csv
import hashlib
import io
import posixpath
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlparse

import httpx
import pandas as pd
from bs4 import BeautifulSoup
from lxml import etree
from markdown_it import MarkdownIt
from prefect import task

from talkmill.models import (
    ContentError,
    CsvRowsError,
    Document,
    EmptyContentError,
    RowProblem,
    Section,
    SourceReadError,
    SourceRef,
    UnsupportedSourceError,
)

MAX_SOURCE_BYTES = 50 * 1024 * 1024
SUFFIX_KINDS = {".html": "html", ".htm": "html", ".xhtml": "html", ".md": "markdown",
                ".markdown": "markdown", ".csv": "csv", ".txt": "text", ".text": "text"}
KINDS = ("html", "markdown", "csv", "text")
Fetch = Callable[[str], bytes]


# --- pure -------------------------------------------------------------------------------------------


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


def sections_from_blocks(blocks: list[tuple[str, str]]) -> list[Section]:
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


def decode(data: bytes, uri: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ContentError(
            f"{uri}: not UTF-8 text (byte {error.start}); save the file as UTF-8 and try again"
        ) from error


def slug(uri: str) -> str:
    """The file name's stem as a lowercase slug: ".../Remote Onboarding.html" → "remote-onboarding"."""
    path = urlparse(uri).path if "://" in uri else uri
    name = posixpath.basename(unquote(path).rstrip("/")) or urlparse(uri).netloc
    stem = posixpath.splitext(name)[0] if "." in name[1:] else name
    return re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:60] or "source"


def resolve_relative(value: str, base_uri: str) -> str:
    """`value` (a path or URL from inside the source at `base_uri`) as an absolute path or URL."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", value, re.IGNORECASE) and not value.startswith("file://"):
        return value
    local = local_path(value)
    if local.is_absolute():
        return str(local)
    parsed = urlparse(base_uri)
    if parsed.scheme in ("http", "https"):
        return urljoin(base_uri, value)
    if parsed.scheme == "s3":
        key = posixpath.normpath(posixpath.join(posixpath.dirname(parsed.path), value)).lstrip("/")
        return f"s3://{parsed.netloc}/{key}"
    return str((local_path(base_uri).parent / local).resolve())


def local_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path)) if uri.startswith("file://") else Path(uri).expanduser()


# --- pure: HTML, Markdown, plain text -------------------------------------------------------------

Blocks = list[tuple[str, str]]  # ("head", title) or ("text", paragraph)
SPOKEN_CODE = re.compile(r"[A-Za-z][A-Za-z0-9 '+-]{0,39}")  # `git status`, `Ctrl+L`: words, not code
BOILERPLATE = re.compile(
    r"cookie|consent|gdpr|banner|advert|\bads?\b|ad-|promo|sponsor|newsletter|subscribe|share|related")
BLOCK_TAGS = ["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "blockquote"]


def tidy(text: str) -> str:
    """One line of speech: whitespace collapsed, no space before punctuation left by dropped code."""
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+([,.;:!?])", r"\1", text.replace("()", ""))


def as_sentence(text: str) -> str:
    """List items are read as sentences: a capital to start and an end if they have none."""
    text = text[:1].upper() + text[1:]
    return text + "." if text and text[-1] not in ".!?:;…" else text


def html_blocks(data: bytes) -> tuple[str | None, Blocks]:
    """The article's title and blocks: trafilatura's main text (no menus, footers, ads, banners), or a
    beautifulsoup4 reading of <article>/<main> when trafilatura finds nothing (short or odd pages)."""
    import trafilatura  # imported here: slow, and only HTML needs it

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


# --- pure: CSV --------------------------------------------------------------------------------------

OVERRIDE_COLUMNS = ("id", "presenter_image", "voice_provider", "voice_id", "driver_url", "expression",
                    "stitch", "result_format", "output_name")
CHOICES = {"stitch": ("true", "false"), "result_format": ("mp4", "mov", "gif"),
           "expression": ("neutral", "happy", "serious", "surprise")}
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
DRIVER_URL = re.compile(r"(bank://(natural|lively|subtle)(/driver-\d+)?(/flipped)?|(https?|s3)://\S+)")
TEXT_LIMITS = (3, 40_000)


def csv_sections(text: str, uri: str) -> list[Section]:
    """One section per row; every bad row reported at once (CsvRowsError) before anything is made."""
    try:
        records = _records(text)
    except csv.Error as error:
        raise ContentError(f"{uri}: not a readable CSV: {error}") from error
    if not records:
        raise EmptyContentError(f"{uri}: the CSV is empty; give a header (text or source, ...) and rows")
    (_, header), *records = records
    too_many = f"cells but the header names {len(header)} columns; quote cells that hold commas"
    long_rows = [RowProblem(line=line, column="(row)", problem=f"{len(cells)} {too_many}")
                 for line, cells in records if len(cells) > len(header)]
    if long_rows:  # pandas would stop at the first, or silently drop the extra cell
        raise CsvRowsError(uri, long_rows)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False,
                            index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ContentError(f"{uri}: not a readable CSV: {error}") from error
    if len(records) != len(frame):  # should not happen; keep pandas' rows, number them plainly
        records = [(line, []) for line in range(2, len(frame) + 2)]
    columns = [name.strip().lower() for name in header]
    frame.columns = range(len(columns))  # pandas renames repeats ("id.1"); keep positions, check names
    blank = [i for i, name in enumerate(columns) if not name and not "".join(frame[i]).strip()]
    frame = frame.drop(columns=blank)  # spreadsheets often export empty trailing columns
    columns = [name for i, name in enumerate(columns) if i not in blank]
    if problems := _header_problems(columns):
        raise CsvRowsError(uri, problems)
    if frame.empty:
        raise EmptyContentError(f"{uri}: the CSV has a header but no rows")
    frame.columns = columns
    rows = [{key: value.strip() for key, value in record.items()} for record in frame.to_dict("records")]
    lines = [line for line, _ in records]
    if problems := _row_problems(rows, lines):
        raise CsvRowsError(uri, problems)
    return [_row_section(row, line, uri) for row, line in zip(rows, lines)]


def _records(text: str) -> list[tuple[int, list[str]]]:
    """Each record with its first physical line (a quoted cell may span lines); blank lines skipped,
    as pandas skips them. The header is the first."""
    reader = csv.reader(io.StringIO(text))
    records, previous_end = [], 0
    for cells in reader:
        if cells:
            records.append((previous_end + 1, cells))
        previous_end = reader.line_num
    return records


def _header_problems(columns: list[str]) -> list[RowProblem]:
    problems = []
    if "text" not in columns and "source" not in columns:
        problems.append(RowProblem(line=1, column="(header)", problem=(
            f"no 'text' or 'source' column (found: {', '.join(columns)}); "
            "add 'text' for a script per row or 'source' for a path/URL per row")))
    for name in sorted({c for c in columns if columns.count(c) > 1 or not c}):
        problems.append(RowProblem(line=1, column=name or "(empty)",
                                   problem="repeated or empty column name; name each column once"))
    return problems


def _row_problems(rows: list[dict[str, str]], lines: list[int]) -> list[RowProblem]:
    problems: list[RowProblem] = []
    first_line_of_id: dict[str, int] = {}
    for row, line in zip(rows, lines):
        problems += [RowProblem(line=line, column=column, problem=problem)
                     for column, problem in _check_row(row)]
        row_id = row.get("id", "")
        if row_id and row_id in first_line_of_id:
            problems.append(RowProblem(line=line, column="id", problem=(
                f"id {row_id!r} is already used on line {first_line_of_id[row_id]}; ids must be unique")))
        first_line_of_id.setdefault(row_id, line)
    return problems


def _check_row(row: dict[str, str]) -> list[tuple[str, str]]:
    text, source = row.get("text", ""), row.get("source", "")
    found: list[tuple[str, str]] = []
    if not text and not source:
        found.append(("text", "empty; each row needs a text to read, or a source (path or URL) to fetch"))
    elif text and source:
        found.append(("source", "a row has either a text or a source, not both"))
    elif text and not TEXT_LIMITS[0] <= len(text) <= TEXT_LIMITS[1]:
        found.append(("text", f"{len(text):,} characters; allowed: {TEXT_LIMITS[0]} to {TEXT_LIMITS[1]:,}"))
    for column, allowed in CHOICES.items():
        value = row.get(column, "")
        if value and value.lower() not in allowed:
            found.append((column, f"{value!r} is not allowed; use one of: {', '.join(allowed)} "
                                  "(or leave it empty)"))
    for column in ("id", "output_name"):
        if row.get(column) and not SAFE_NAME.fullmatch(row[column]):
            found.append((column, f"{row[column]!r}: use up to 100 letters, digits, '.', '_' or '-'"))
    if row.get("driver_url") and not DRIVER_URL.fullmatch(row["driver_url"]):
        found.append(("driver_url", f"{row['driver_url']!r}: use "
                                    "bank://natural|lively|subtle[/driver-N][/flipped] or a URL"))
    if row.get("voice_provider") and not row.get("voice_id"):
        found.append(("voice_id", f"empty while voice_provider is {row['voice_provider']!r}; "
                                  "name a voice of that provider"))
    image = row.get("presenter_image", "")
    if image and "://" not in image and not image.lower().endswith((".jpg", ".jpeg", ".png", ".webp")):
        found.append(("presenter_image", f"{image!r}: use a .jpg, .jpeg, .png or .webp file, "
                                         "or an http(s)/s3 URL"))
    return found


def _row_section(row: dict[str, str], line: int, uri: str) -> Section:
    overrides = {key: row[key] for key in OVERRIDE_COLUMNS if row.get(key)}
    for column in CHOICES:
        if column in overrides:
            overrides[column] = overrides[column].lower()
    if "presenter_image" in overrides:
        overrides["presenter_image"] = resolve_relative(overrides["presenter_image"], uri)
    known = {"text", "source", *OVERRIDE_COLUMNS}
    metadata = {key: value for key, value in row.items() if key not in known and value}
    if row.get("source"):
        metadata["source"] = resolve_relative(row["source"], uri)
    title = row.get("title") or row.get("id") or f"Row {line}"
    return Section(title=title, text=row.get("text", ""), line=line, overrides=overrides, metadata=metadata)


# --- I/O --------------------------------------------------------------------------------------------


def read_source(uri: str, *, timeout: float = 30.0, max_bytes: int = MAX_SOURCE_BYTES,
                s3_endpoint_url: str | None = None, s3_region: str | None = None) -> bytes:
    """The bytes at a local path, file://, http(s):// or s3://bucket/key, at most `max_bytes`.

    S3 credentials come from the usual AWS_* variables; the endpoint from the argument, else boto3's own
    AWS_ENDPOINT_URL. Raises SourceReadError (transient=True when a retry may help)."""
    scheme = urlparse(uri).scheme.lower()
    if scheme in ("http", "https"):
        return _read_http(uri, timeout, max_bytes)
    if scheme == "s3":
        return _read_s3(uri, max_bytes, s3_endpoint_url, s3_region)
    if scheme in ("", "file") or re.match(r"^[a-zA-Z]:[\\/]", uri):
        return _read_file(uri, max_bytes)
    raise UnsupportedSourceError(
        f"{uri}: cannot read {scheme}:// sources; use a path, file://, http(s):// or s3://")


def _read_file(uri: str, max_bytes: int) -> bytes:
    path = local_path(uri)
    try:
        if path.stat().st_size > max_bytes:
            raise SourceReadError(f"{uri}: larger than the {max_bytes:,}-byte limit for a source")
        return path.read_bytes()
    except OSError as error:
        raise SourceReadError(f"{uri}: cannot read the file ({error.strerror or error})") from error


def _read_http(uri: str, timeout: float, max_bytes: int) -> bytes:
    try:
        with httpx.stream("GET", uri, timeout=timeout, follow_redirects=True) as response:
            if response.status_code >= 400:
                transient = response.status_code == 429 or response.status_code >= 500
                status = f"HTTP {response.status_code} {response.reason_phrase}"
                raise SourceReadError(f"{uri}: {status}", transient)
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise SourceReadError(f"{uri}: larger than the {max_bytes:,}-byte limit for a source")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as error:  # timeouts, refused connections, bad URLs
        raise SourceReadError(f"{uri}: {type(error).__name__}: {error}", transient=True) from error


def _read_s3(uri: str, max_bytes: int, endpoint_url: str | None, region: str | None) -> bytes:
    import boto3  # imported here: slow to import and only needed for s3:// sources
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise UnsupportedSourceError(f"{uri}: an s3 source must look like s3://bucket/key")
    # S3-compatible stores (SeaweedFS, MinIO) reject the newer default checksums.
    config = Config(request_checksum_calculation="when_required",
                    response_checksum_validation="when_required")
    client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        data = body.read(max_bytes + 1)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        raise SourceReadError(f"{uri}: S3 {code}", transient=code in ("SlowDown", "InternalError")) from error
    except BotoCoreError as error:
        raise SourceReadError(f"{uri}: {error}", transient=True) from error
    if len(data) > max_bytes:
        raise SourceReadError(f"{uri}: larger than the {max_bytes:,}-byte limit for a source")
    return data


def ingest(uri: str, *, kind: str | None = None, fetch: Fetch | None = None) -> Document:
    """Read and parse one source; for a CSV, also fetch and parse the sources its rows name."""
    fetch = fetch or read_source
    document = ingest_bytes(fetch(uri), uri, kind)
    if document.source.type != "csv" or not any(s.metadata.get("source") for s in document.sections):
        return document
    return document.model_copy(update={"sections": _expand_source_rows(document, fetch)})


def _expand_source_rows(document: Document, fetch: Fetch) -> list[Section]:
    sections: list[Section] = []
    problems: list[RowProblem] = []
    transient = False
    for row in document.sections:
        source = row.metadata.get("source")
        if not source:
            sections.append(row)
            continue
        try:
            fetched = ingest_bytes(fetch(source), source)
            if fetched.source.type == "csv":
                raise UnsupportedSourceError(
                    f"{source}: a row's source cannot be a CSV; use html, markdown or text")
        except ContentError as error:
            transient = transient or getattr(error, "transient", False)
            problems.append(RowProblem(line=row.line or 0, column="source", problem=str(error)))
            continue
        metadata = {**row.metadata, "source_title": fetched.title, "source_checksum": fetched.source.checksum}
        inherited = {"line": row.line, "overrides": row.overrides, "metadata": metadata}
        sections += [part.model_copy(update=inherited) for part in fetched.sections]
    if problems:
        error = CsvRowsError(document.source.uri, problems)
        error.transient = transient  # type: ignore[attr-defined]
        raise error
    return sections


# --- Prefect ----------------------------------------------------------------------------------------


def _worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Retry network trouble, not bad content: a malformed CSV fails the same way three times."""
    error = getattr(state, "data", None)
    return not isinstance(error, ContentError) or bool(getattr(error, "transient", False))


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_worth_retrying)
def ingest_source(uri: str, kind: str | None = None, s3_endpoint_url: str | None = None,
                  s3_region: str | None = None, timeout: float = 30.0) -> Document:
    """I/O task: fetch and parse one source (and, for a CSV, the sources its rows name)."""
    def fetch(target: str) -> bytes:
        return read_source(target, timeout=timeout, s3_endpoint_url=s3_endpoint_url, s3_region=s3_region)

    return ingest(uri, kind=kind, fetch=fetch)
