"""Split and plan: sentence-aware chunks, per-row overrides, stable script ids, the examples."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from talkmill.config import DEFAULT_PRESENTER, PipelineConfig, load_config
from talkmill.content.images import image_file_problem, image_header, image_problem
from talkmill.errors import ConfigError, CsvRowsError
from talkmill.models import Document, Section, SourceRef
from talks_contract.limits import MAX_IMAGE_BYTES
from tasks.ingest import ingest, ingest_bytes
from tasks.scripts import plan, plan_scripts, sentences, split_text

DATA = Path(__file__).parent / "data"
REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
PORTRAIT_URL = "https://cdn.example.com/people/presenter.jpg"

TRICKY = [
    "Dr. Rivera joined the U.S. team in 2019, e.g. to lead the audit.",
    "Revenue grew by 3.14 percent to $2.5 million.",
    "Mr. Lee said the plan was fine!",
    "Was it?",
    "Prof. Ada Byron, Ph.D., approved version 2.0.1 at 9 a.m. on Friday.",
]


def test_split_never_cuts_a_sentence_and_respects_max_chars() -> None:
    text = " ".join(TRICKY * 6)
    for max_chars in (70, 120, 200, 450):
        chunks = split_text(text, max_chars)
        assert all(len(chunk) <= max_chars for chunk in chunks)
        assert " ".join(chunks) == text  # nothing lost, nothing added
        for chunk in chunks:
            assert chunk.endswith((".", "!", "?")), chunk
            assert any(chunk.startswith(sentence) for sentence in TRICKY), chunk  # starts on a sentence


def test_abbreviations_and_decimals_do_not_end_sentences() -> None:
    assert sentences(" ".join(TRICKY)) == TRICKY
    chunks = split_text(" ".join(TRICKY), 70)  # each sentence fits alone
    assert chunks[:2] == TRICKY[:2]
    for tag in ("en-US", "EN", "en_GB"):  # region tags and case must not lose the English rules
        assert sentences(" ".join(TRICKY), tag) == TRICKY


def test_a_sentence_longer_than_max_chars_is_cut_at_clauses_then_words() -> None:
    sentence = ("When the quarter closes, every team lead files a summary; finance checks it, "
                "and the board reads the combined report before the next planning meeting begins.")
    chunks = split_text(sentence, 60)
    assert all(len(chunk) <= 60 for chunk in chunks)
    assert " ".join(chunks) == sentence
    # clauses that fit stay whole; only the one clause past 60 characters is cut, between words
    assert chunks[0] == "When the quarter closes, every team lead files a summary;"
    assert any(chunk.startswith("finance checks it,") for chunk in chunks)
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_chunks_are_as_few_as_possible_and_evened_out() -> None:
    sentence = "This sentence is forty characters long.."
    chunks = split_text(" ".join([sentence] * 5), 170)  # greedy alone: 4 sentences, then 1
    assert len(chunks) == 2
    assert sorted(chunk.count(sentence) for chunk in chunks) == [2, 3]


def test_split_of_blank_text_and_bad_limits() -> None:
    assert split_text("  \n\t ", 100) == []
    with pytest.raises(ConfigError, match="split.max_chars"):
        split_text("Hello.", 0)


# --- planning ---------------------------------------------------------------------------------------


def document_of(*sections: Section, kind: str = "text") -> Document:
    source = SourceRef(type=kind, uri="mem://doc", id="doc", checksum="0" * 64)
    return Document(id="doc", title="Doc", source=source, sections=list(sections))


def config(**changes) -> PipelineConfig:
    return load_config(None, {"presenter": PORTRAIT_URL, **changes})


def the_id(section: Section | None = None, **changes) -> str:
    section = section or Section(title="A", text="Our quarterly update is ready.")
    return plan_scripts(document_of(section), config(**changes))[0].id


def test_script_ids_are_stable_across_calls_and_machines() -> None:
    assert the_id() == the_id()
    # a fixed input gives a fixed id: changing the hash scheme breaks idempotent re-runs, so it must show
    assert the_id() == "scr_254dea2ea240a064"


def test_script_ids_change_with_everything_that_shapes_the_video() -> None:
    base = the_id()
    variants = {
        the_id(Section(title="A", text="Our quarterly update is late.")),
        the_id(voice={"provider": {"voice_id": "en-GB-RyanNeural"}}),
        the_id(voice={"provider": {"type": "amazon", "voice_id": "Joanna"}}),
        the_id(presenter="https://cdn.example.com/people/other.jpg"),
        the_id(driver_url="bank://subtle"),
        the_id(talk_config={"result_format": "gif"}),
        the_id(talk_config={"stitch": True}),
    }
    assert base not in variants and len(variants) == 7
    # and not with what changes no frame: titles, output names, metadata, the output location
    same = Section(title="B", text="Our quarterly update is ready.",
                   overrides={"output_name": "q3", "id": "9"}, metadata={"team": "x"})
    assert the_id(same, output="s3://bucket/elsewhere") == base


def test_a_local_portrait_is_identified_by_its_bytes_not_its_path(tmp_path: Path) -> None:
    def id_with(portrait: Path) -> str:
        return plan_scripts(document_of(Section(text="Hello there, everyone.")),
                            load_config(None, {"presenter": str(portrait)}))[0].id

    first = tmp_path / "one" / "face.png"
    first.parent.mkdir()
    shutil.copy(EXAMPLES / "presenters" / "astronaut.png", first)
    copy = tmp_path / "copy.png"
    shutil.copy(first, copy)
    before = id_with(first)
    assert id_with(copy) == before  # same bytes elsewhere: same video
    shutil.copy(REPO_ROOT / "talkmill" / "assets" / "grace_hopper.jpg", first)  # replaced in place
    assert id_with(first) != before


def test_csv_overrides_shape_each_script() -> None:
    fluent = load_config(None, {"talk_config": {"fluent": True}})
    scripts = plan_scripts(ingest(str(DATA / "rows-good.csv")), fluent)
    first, second, third = scripts
    assert first.presenter == str(DATA / "portraits" / "face.png")
    assert first.config == {"fluent": True, "stitch": True, "result_format": "mov", "driver_expressions": {
        "expressions": [{"start_frame": 0, "expression": "happy", "intensity": 1}]}}
    assert first.output_name == "intro-007"
    assert first.metadata == {"region": "EMEA", "row_id": "007", "line": "2"}
    assert second.voice.provider.model_dump() == {"type": "microsoft", "voice_id": "en-GB-RyanNeural",
                                                  "voice_config": None}
    assert second.driver_url == "bank://lively/driver-02"
    assert second.text == "A quoted cell that spans two lines."
    assert third.config == {"fluent": True} and third.voice.provider.voice_id == "en-US-JennyNeural"
    assert third.presenter == str(REPO_ROOT / "talkmill" / "assets" / "grace_hopper.jpg")
    assert len({s.id for s in scripts}) == 3


def test_a_long_row_gets_numbered_output_names() -> None:
    text = " ".join(["Every sentence here is about sixty characters long, roughly."] * 6)
    rows = f'text,output_name\n"{text}",weekly\n'.encode()
    scripts = plan_scripts(ingest_bytes(rows, "rows.csv"), config(split={"max_chars": 200}))
    assert [s.output_name for s in scripts] == ["weekly-1", "weekly-2"]
    assert [(s.chunk_index, s.chunk_count) for s in scripts] == [(0, 2), (1, 2)]


def test_missing_portraits_are_reported_per_row_before_anything_is_planned() -> None:
    rows = b"text,presenter_image\nFirst row.,gone.png\nSecond row.,\nThird row.,also-gone.jpg\n"
    with pytest.raises(CsvRowsError) as caught:
        plan_scripts(ingest_bytes(rows, str(DATA / "rows.csv")), config())
    found = [(p.line, p.column) for p in caught.value.problems]
    assert found == [(2, "presenter_image"), (4, "presenter_image")]
    assert "portrait not found" in str(caught.value)


def test_plan_is_a_pure_task_without_retries() -> None:
    assert plan.retries == 0
    document = ingest(str(DATA / "notes.txt"))
    assert plan.fn(document, config()) == plan_scripts(document, config())


# --- the examples the demo runs ---------------------------------------------------------------------


@pytest.mark.parametrize("path, count", [
    ("articles/remote-onboarding.html", 2),
    ("handbook/security-basics.md", 3),
    ("product-updates.csv", 3),
])
def test_examples_ingest_and_plan_to_short_demo_scripts(path: str, count: int) -> None:
    scripts = plan_scripts(ingest(str(EXAMPLES / path)), load_config(REPO_ROOT / "configs" / "default.yaml"))
    assert len(scripts) == count
    assert all(10 <= script.estimated_seconds <= 26 for script in scripts)
    assert all(Path(script.presenter).is_file() for script in scripts)


def test_example_rows_use_their_overrides() -> None:
    scripts = plan_scripts(ingest(str(EXAMPLES / "product-updates.csv")), load_config())
    assert [s.metadata["row_id"] for s in scripts] == ["007", "012", "031"]
    assert Path(scripts[0].presenter).name == "astronaut.png"
    assert scripts[0].config["driver_expressions"]["expressions"][0]["expression"] == "happy"
    assert scripts[1].voice.provider.voice_id == "en-GB-SoniaNeural"
    assert [s.output_name for s in scripts] == ["fieldbook-offline-week", None, "support-chat-24h"]
    assert scripts[2].metadata["team"] == "Support, APAC"
    handbook_doc = ingest(str(EXAMPLES / "handbook" / "security-basics.md"))
    handbook = " ".join(s.text for s in plan_scripts(handbook_doc, load_config()))
    assert "tm-policy" not in handbook and "centuries" not in handbook and "SEC-114" not in handbook


# --- portraits, checked by their headers (no Pillow in the pipeline) ----------------------------------


def pillow_image(tmp_path: Path, name: str, size: tuple[int, int], mode: str = "RGB", **options) -> Path:
    """An image written by Pillow (a test dependency here, through the engine): the reference reader."""
    from PIL import Image

    path = tmp_path / name
    Image.new(mode, size, (90, 120, 150, 200)[: len(mode)]).save(path, **options)
    return path


@pytest.mark.parametrize(("name", "mode", "options", "kind"), [
    ("p.jpg", "RGB", {}, "JPEG"),
    ("p-progressive.jpg", "RGB", {"progressive": True}, "JPEG"),
    ("p.png", "RGBA", {}, "PNG"),
    ("p-lossy.webp", "RGB", {"lossless": False}, "WebP"),
    ("p-lossless.webp", "RGB", {"lossless": True}, "WebP"),
    ("p-alpha.webp", "RGBA", {"lossless": False}, "WebP"),  # VP8X: an extended header
])
def test_image_headers_give_the_size_pillow_reads(tmp_path: Path, name: str, mode: str, options: dict,
                                                   kind: str) -> None:
    path = pillow_image(tmp_path, name, (333, 517), mode, **options)
    assert image_header(path.read_bytes()) == (kind, 333, 517)
    assert image_file_problem(path) is None


def test_the_shipped_portraits_pass() -> None:
    assert image_header(DEFAULT_PRESENTER.read_bytes())[0] == "JPEG"
    assert image_file_problem(EXAMPLES / "presenters" / "astronaut.png") is None


def test_what_cannot_be_a_portrait_is_named(tmp_path: Path) -> None:
    png = pillow_image(tmp_path, "p.png", (64, 64)).read_bytes()
    jpeg = DEFAULT_PRESENTER.read_bytes()
    assert "not a JPEG, PNG or WebP" in image_problem(b"this is text, not a PNG\n")
    assert "GIF" not in image_problem(b"GIF89a....") and image_problem(b"GIF89a....")
    assert "cut short" in image_problem(png[:20])
    assert "without a frame header" in image_problem(jpeg[:2] + b"\xff\xda\x00\x02")
    assert "0x0" in image_problem(png[:16] + b"\x00" * 8 + png[24:])
    huge = tmp_path / "huge.png"
    huge.write_bytes(png + b"\x00" * MAX_IMAGE_BYTES)
    assert f"at most {MAX_IMAGE_BYTES:,}" in image_file_problem(huge)
    with pytest.raises(OSError):
        image_file_problem(tmp_path / "absent.png")


# --- the dry run's checks: the contract's, no engine code ---------------------------------------------


def test_a_dry_run_passes_a_good_plan(tmp_path: Path) -> None:
    from tasks.plan import validate_plan

    rows = "text,driver_url,result_format\nA fine first row.,bank://natural/,mov\nA fine second row.,,\n"
    scripts = plan_scripts(ingest_bytes(rows.encode(), str(tmp_path / "rows.csv")), load_config())
    assert validate_plan.fn(scripts) == []


def test_a_dry_run_names_every_problem_by_the_contract(tmp_path: Path) -> None:
    from tasks.plan import validate_plan

    fake = tmp_path / "face.png"
    fake.write_text("this is text, not a PNG\n")
    settings = load_config(None, {"presenter": str(fake), "driver_url": "bank://natural/driver-99",
                                  "voice": {"provider": {"type": "nobody", "voice_id": "x"}}})
    scripts = plan_scripts(document_of(Section(title="A", text="Hello there, team.")), settings)
    problems = validate_plan.fn(scripts)
    assert len(problems) == 3, problems
    presenter, voice, driver = problems
    assert "face.png" in presenter and "not a JPEG, PNG or WebP" in presenter
    assert "script.provider" in voice and "nobody" in voice
    assert "driver_url" in driver and "driver-99" in driver
