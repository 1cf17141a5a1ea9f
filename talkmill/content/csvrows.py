"""CSV → one section per row, every bad row reported at once (CsvRowsError) before anything is made.

Relative paths in a row (`source`, `presenter_image`) are resolved against the CSV's own location, and a
local path or file:// URL must stay inside the CSV's own folder or `fetch.local_roots`
(talkmill.content.uris). What a row may ask for (text lengths, result formats, expressions, driver URLs)
is the Talks contract's, so a row is refused here exactly when the engine would refuse its talk.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from talkmill.content.images import IMAGE_ADVICE, has_image_suffix
from talkmill.content.text import decode
from talkmill.content.uris import is_local_reference, outside_folder_problem, resolve_relative, slug
from talkmill.errors import ContentError, CsvRowsError, EmptyContentError, RowProblem
from talkmill.models import Section
from talks_contract.drivers import GRAMMAR, parse_driver_url
from talks_contract.errors import ContractViolation
from talks_contract.formats import EXPRESSIONS, RESULT_FORMATS
from talks_contract.limits import spoken_text_problem

OVERRIDE_COLUMNS = ("id", "presenter_image", "voice_provider", "voice_id", "driver_url", "expression",
                    "stitch", "result_format", "output_name")
CHOICES = {"stitch": ("true", "false"), "result_format": RESULT_FORMATS, "expression": EXPRESSIONS}
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
HEADER_NAMES_TEXT = re.compile(rb"(^|,)\s*\"?(text|source)\"?\s*(,|$)")
LOCAL_COLUMNS = ("source", "presenter_image")  # the cells that may name a file


def sniff(head: bytes) -> bool:
    """A first line with commas that names a text or source column."""
    first_line = head[:2048].lstrip().lower().split(b"\n", 1)[0].rstrip(b"\r")
    return b"," in first_line and HEADER_NAMES_TEXT.search(first_line) is not None


def parse(data: bytes, uri: str, local_roots: Sequence[Path] = ()) -> tuple[str | None, list[Section]]:
    """A CSV's title is its file's name: its rows are scripts of their own, not chapters of one."""
    return slug(uri), csv_sections(decode(data, uri), uri, local_roots)


def csv_sections(text: str, uri: str, local_roots: Sequence[Path] = ()) -> list[Section]:
    """One section per row; every bad row reported at once (CsvRowsError) before anything is made. Files
    the rows name must be inside the CSV's folder or `local_roots`."""
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
    import pandas as pd  # imported here: slow (~1 s), and only CSV sources need it

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
    if problems := _row_problems(rows, lines, _Place(uri, tuple(local_roots))):
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


def _row_problems(rows: list[dict[str, str]], lines: list[int], place: _Place) -> list[RowProblem]:
    problems: list[RowProblem] = []
    first_line_of_id: dict[str, int] = {}
    for row, line in zip(rows, lines):
        problems += [RowProblem(line=line, column=column, problem=problem)
                     for column, problem in _check_row(row, place)]
        row_id = row.get("id", "")
        if row_id and row_id in first_line_of_id:
            problems.append(RowProblem(line=line, column="id", problem=(
                f"id {row_id!r} is already used on line {first_line_of_id[row_id]}; ids must be unique")))
        first_line_of_id.setdefault(row_id, line)
    return problems


def _check_row(row: dict[str, str], place: _Place) -> list[tuple[str, str]]:
    text, source = row.get("text", ""), row.get("source", "")
    found: list[tuple[str, str]] = []
    if not text and not source:
        found.append(("text", "empty; each row needs a text to read, or a source (path or URL) to fetch"))
    elif text and source:
        found.append(("source", "a row has either a text or a source, not both"))
    elif text and (problem := spoken_text_problem(text)):
        found.append(("text", problem))
    for column, allowed in CHOICES.items():
        value = row.get(column, "")
        if value and value.lower() not in allowed:
            choices = ", ".join(allowed)
            found.append((column, f"{value!r} is not allowed; use one of: {choices} (or leave it empty)"))
    for column in ("id", "output_name"):
        if row.get(column) and not SAFE_NAME.fullmatch(row[column]):
            found.append((column, f"{row[column]!r}: use up to 100 letters, digits, '.', '_' or '-'"))
    if row.get("driver_url") and (driver := _driver_problem(row["driver_url"])):
        found.append(("driver_url", driver))
    if row.get("voice_provider") and not row.get("voice_id"):
        provider = row["voice_provider"]
        found.append(("voice_id", f"empty while voice_provider is {provider!r}; name one of its voices"))
    found += [(column, problem) for column in LOCAL_COLUMNS if (problem := _file_problem(row, column, place))]
    return found


@dataclass(frozen=True)
class _Place:
    """Where the CSV is, and the other folders its rows may name files in."""

    uri: str
    local_roots: tuple[Path, ...]


def _file_problem(row: dict[str, str], column: str, place: _Place) -> str | None:
    value = row.get(column, "")
    if not value:
        return None
    if problem := outside_folder_problem(value, place.uri, place.local_roots):
        return problem
    if column == "presenter_image" and is_local_reference(value) and not has_image_suffix(value):
        return f"{value!r}: {IMAGE_ADVICE}"
    return None


def _driver_problem(url: str) -> str | None:
    try:
        parse_driver_url(url)
    except ContractViolation as violation:
        return f"{violation.problem}; use {GRAMMAR}"
    return None


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

