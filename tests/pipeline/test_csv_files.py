"""What a CSV may make the pipeline read from disk: files inside its own folder (or `fetch.local_roots`),
regular files only, never more than the limit, and only images as portraits. A refusal names the row and
the column, and comes before anything is uploaded."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from talkmill.config import load_config
from talkmill.errors import ContentError, CsvRowsError, SourceReadError
from talks_contract.limits import MAX_IMAGE_BYTES
from tasks.ingest import ingest, ingest_bytes, read_source
from tasks.scripts import plan_scripts
from tests.engine.helpers import png_bytes
from tests.pipeline.conftest import run_flow
from tests.pipeline.servers import serving


def problems_of(rows_csv: Path, **options: object) -> list[tuple[int, str, str]]:
    with pytest.raises(CsvRowsError) as caught:
        ingest(str(rows_csv), **options)
    return [(p.line, p.column, p.problem) for p in caught.value.problems]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A CSV's folder with a portrait in it, a sub-folder, and a secret beside (not inside) it."""
    csvs = tmp_path / "csvs"
    (csvs / "faces").mkdir(parents=True)
    (csvs / "faces" / "ada.png").write_bytes(png_bytes(32, 32))
    (csvs / "note.md").write_text("# Note\n\nA short note to read.\n")
    (tmp_path / "secret.png").write_text("api_key=tm_do-not-leak\n")
    return csvs


def test_files_inside_the_csvs_folder_are_used(folder: Path) -> None:
    rows = folder / "rows.csv"
    rows.write_text("text,presenter_image\nHello there.,faces/ada.png\nHi again.,"
                    f"{(folder / 'faces' / 'ada.png').as_uri()}\n")
    sections = ingest(str(rows)).sections
    assert [s.overrides["presenter_image"] for s in sections] == [str(folder / "faces" / "ada.png")] * 2


@pytest.mark.parametrize("cell", ["file:///etc/passwd", "/etc/passwd", "../secret.png", "faces/../../secret.png",
                                  "~/.ssh/id_rsa.png", "file:///dev/zero"])
def test_presenter_files_outside_the_folder_are_refused_by_row_and_column(folder: Path, cell: str) -> None:
    rows = folder / "rows.csv"
    rows.write_text(f"text,presenter_image\nA fine row.,faces/ada.png\nA bad row.,{cell}\n")
    [(line, column, problem)] = problems_of(rows)
    assert (line, column) == (3, "presenter_image")
    assert f"{cell!r} is outside {folder}" in problem


def test_source_files_outside_the_folder_are_refused(folder: Path) -> None:
    rows = folder / "rows.csv"
    rows.write_text("source\nnote.md\n/etc/hostname\nfile:///proc/self/environ\n")
    assert [(line, column) for line, column, _ in problems_of(rows)] == [(3, "source"), (4, "source")]


def test_a_symlink_out_of_the_folder_is_refused(folder: Path) -> None:
    (folder / "faces" / "escape.png").symlink_to(folder.parent / "secret.png")
    (folder / "faces" / "alias.png").symlink_to(folder / "faces" / "ada.png")  # inside: fine
    (folder / "elsewhere").symlink_to(folder.parent, target_is_directory=True)
    rows = folder / "rows.csv"
    rows.write_text("text,presenter_image\nOne.,faces/alias.png\nTwo.,faces/escape.png\nThree.,elsewhere/secret.png\n")
    found = problems_of(rows)
    assert [(line, column) for line, column, _ in found] == [(3, "presenter_image"), (4, "presenter_image")]
    assert f"a link to {folder.parent / 'secret.png'}" in found[0][2]


def test_other_folders_need_the_config(folder: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "grace.png").write_bytes(png_bytes(32, 32))
    rows = folder / "rows.csv"
    rows.write_text("text,presenter_image\nHello there.,../shared/grace.png\n")
    assert "fetch.local_roots" in problems_of(rows)[0][2]
    config = tmp_path / "conf" / "talkmill.yaml"
    config.parent.mkdir()
    config.write_text("fetch:\n  local_roots: [../shared]\n")  # relative to the config file
    roots = load_config(config).fetch.roots
    assert roots == (shared,)
    [section] = ingest(str(rows), local_roots=roots).sections
    assert section.overrides["presenter_image"] == str(shared / "grace.png")


def test_a_csv_read_from_a_url_names_no_local_files() -> None:
    rows = b"source,presenter_image\nnotes.md,file:///etc/passwd\n/etc/hostname,faces/a.png\n"
    with pytest.raises(CsvRowsError) as caught:
        ingest_bytes(rows, "https://example.com/batch/rows.csv")
    assert [(p.line, p.column) for p in caught.value.problems] == [(2, "presenter_image"), (3, "source")]
    assert "names URLs and relative paths, not local files" in str(caught.value)


# -- reading what is inside: regular files, capped, images ---------------------------------------------


def test_dev_zero_and_fifos_are_refused_not_read(folder: Path) -> None:
    """A portrait inside the folder that is a link to /dev/zero is refused by the folder rule; named by the
    config (trusted, so not confined), it is refused as no regular file, at once and without reading it."""
    (folder / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(folder / "pipe.png")  # opening it to read would wait for a writer forever
    rows = folder / "rows.csv"
    started = time.monotonic()
    rows.write_text("text,presenter_image\nOne.,zero.png\n")
    with pytest.raises(CsvRowsError, match=r"line 2, column 'presenter_image': .*a link to /dev/zero"):
        ingest(str(rows))
    rows.write_text("text,presenter_image\nOne.,faces/ada.png\nTwo.,pipe.png\n")
    with pytest.raises(CsvRowsError, match=r"line 3, column 'presenter_image': .*not a regular file"):
        plan_scripts(ingest(str(rows)), load_config())
    config = load_config(None, {"presenter": str(folder / "zero.png")})
    with pytest.raises(ContentError, match="not a regular file"):
        plan_scripts(ingest(str(folder / "note.md")), config)
    with pytest.raises(SourceReadError, match="not a regular file"):
        read_source("/dev/zero")
    assert time.monotonic() - started < 5


def test_a_huge_portrait_is_refused_without_reading_it_whole(folder: Path) -> None:
    with (folder / "faces" / "huge.png").open("wb") as file:
        file.truncate(8 << 30)  # 8 GB, sparse
    rows = folder / "rows.csv"
    rows.write_text("text,presenter_image\nHello there.,faces/huge.png\n")
    started = time.monotonic()
    with pytest.raises(CsvRowsError, match=f"larger than {MAX_IMAGE_BYTES // 2**20} MB"):
        plan_scripts(ingest(str(rows)), load_config())
    assert time.monotonic() - started < 5


# -- a whole run: refused before anything reaches the backend --------------------------------------------


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("cell", ["file:///etc/passwd", "file:///dev/zero"])
def test_a_run_uploads_nothing_for_a_refused_presenter(folder: Path, tmp_path: Path, cell: str) -> None:
    rows = folder / "rows.csv"
    rows.write_text(f"id,text,presenter_image\nok,A fine row.,faces/ada.png\nbad,A bad row.,{cell}\n")
    with serving({}) as backend:  # any request to it (GET /talks, POST /images) is recorded
        with pytest.raises(CsvRowsError, match=r"line 3, column 'presenter_image': .* is outside"):
            run_flow([rows], output=str(tmp_path / "out"), wait="poll", talks_url=backend.base)
    assert backend.asked == []
