"""The ingest-format registry: every list of kinds and suffixes (CLI help, folders, the inbox, detection)
is the registry's, so a format the parsers read is never "nothing to read" somewhere else."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.bucket_watch import new_files
from talkmill.cli import app
from talkmill.content.formats import FORMATS, KINDS, SUFFIX_KINDS, SUFFIXES, detect_kind, is_readable
from talkmill.content.parse import ingest_bytes
from talkmill.errors import ContentError
from tasks.plan import expand_sources

PAGE = b"<html><body><article><p>Hello from an XHTML page, read aloud.</p></article></body></html>"
DOCUMENTS = Path(__file__).resolve().parents[2] / "examples" / "documents"  # written by scripts/make_samples.py
SAMPLES = {"html": PAGE, "markdown": b"# Title\n\nSome words.\n", "csv": b"id,text\n1,Hello there.\n",
           "text": b"Just some words to say.\n", "pdf": (DOCUMENTS / "travel-expenses.pdf").read_bytes(),
           "pptx": (DOCUMENTS / "lumen-launch.pptx").read_bytes(),
           "docx": (DOCUMENTS / "working-from-home.docx").read_bytes()}


def test_the_registry_is_consistent() -> None:
    assert KINDS == tuple(fmt.kind for fmt in FORMATS) and len(set(KINDS)) == len(KINDS)
    assert len(SUFFIXES) == sum(len(fmt.suffixes) for fmt in FORMATS)  # no suffix claimed twice
    assert all(suffix == suffix.lower() and suffix.startswith(".") for suffix in SUFFIXES)
    assert set(SAMPLES) == set(KINDS)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda fmt: fmt.kind)
def test_each_format_is_one_parser_module_with_parse_and_sniff(fmt) -> None:
    assert callable(fmt.parser.parse) and callable(fmt.parser.sniff)
    assert fmt.parser.sniff(SAMPLES[fmt.kind])
    for suffix in fmt.suffixes:
        assert detect_kind(b"", f"s3://inbox/upload{suffix.upper()}") == fmt.kind
        assert ingest_bytes(SAMPLES[fmt.kind], f"sample{suffix}").source.type == fmt.kind


def test_text_is_the_last_and_catches_what_no_other_format_claims() -> None:
    assert FORMATS[-1].kind == "text" and detect_kind(b"\x00\x01 odd bytes", "upload") == "text"


def test_a_folder_of_xhtml_pages_is_read(tmp_path: Path) -> None:
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "welcome.xhtml").write_bytes(PAGE)
    (tmp_path / "pages" / "notes.text").write_text("Some notes to read.\n")
    (tmp_path / "pages" / "logo.png").write_bytes(b"\x89PNG")
    expanded = expand_sources([str(tmp_path / "pages")])
    assert expanded == [str(tmp_path / "pages" / "notes.text"), str(tmp_path / "pages" / "welcome.xhtml")]
    assert ingest_bytes(PAGE, expanded[1]).source.type == "html"


def test_the_inbox_takes_every_registered_suffix() -> None:
    keys = [f"drop/file{suffix}" for suffix in SUFFIXES] + ["drop/PAGE.XHTML", "drop/logo.png", "drop/noext"]
    assert new_files(keys) == keys[:-2]
    assert is_readable("https://example.com/page.xhtml?x=1") and not is_readable("https://example.com/")


def test_nothing_to_read_names_every_suffix(tmp_path: Path) -> None:
    with pytest.raises(ContentError, match="nothing to read") as caught:
        expand_sources([str(tmp_path)])
    assert all(suffix in str(caught.value) for suffix in SUFFIXES)


def test_run_help_lists_every_suffix() -> None:
    shown = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "300"})
    assert shown.exit_code == 0, shown.output
    assert all(suffix in shown.output for suffix in SUFFIXES), shown.output
    assert SUFFIX_KINDS[".xhtml"] == "html"
