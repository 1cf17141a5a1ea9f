"""The two flavours of D-ID's wire format, and bad answers, against a real Talks server on 127.0.0.1.

The `d-id` flavour's request body is checked against D-ID's own OpenAPI description of POST /talks
(tests/pipeline/data/did-talks-openapi.json, the subset D-ID publishes for its /talks paths, kept here so
the check runs everywhere): every property, enum value and pattern in what is sent must be one the spec allows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.talks.did import DidTalks, TalkmillTalks
from talkmill.errors import TalksBadAnswer
from talkmill.models import Voice, VoiceProvider
from talks_contract.errors import ContractViolation
from talks_contract.limits import MAX_IMAGE_BYTES
from tests.engine.helpers import png_bytes
from tests.pipeline.test_talks_client import KEY, SOURCE_URL, FakeTalks, fake_app, script_for, serve

SPEC = Path(__file__).resolve().parent / "data" / "did-talks-openapi.json"
WEBHOOK = "https://hooks.example/talks-webhook"
EVERYTHING = {  # every key of our talk config (TALKS_API.md), set
    "stitch": True, "result_format": "mov", "fluent": True, "pad_audio": 0.5, "align_driver": False,
    "align_expand_factor": 0.4, "auto_match": False, "normalization_factor": 0.5, "motion_factor": 0.8,
    "sharpen": False, "logo": {"url": "https://example.com/logo.png", "position": [-10, -10]},
    "driver_expressions": {"expressions": [{"start_frame": 0, "expression": "happy", "intensity": 1}],
                           "transition_frames": 5},
}  # fmt: skip
OURS_ONLY = ["body.driver_url"] + [f"body.config.{key}" for key in (
    "align_driver", "align_expand_factor", "auto_match", "normalization_factor", "motion_factor", "sharpen")]


@pytest.fixture
def fake() -> Iterator[tuple[FakeTalks, str]]:
    state = FakeTalks(latency=0.1)
    with serve(fake_app(state), ports=2) as (api, results):
        state.result_base = results
        yield state, api


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def full_script(script_id: str = "scr_everything", **fields: Any) -> Any:
    voice = Voice(provider=VoiceProvider(voice_id="en-US-GuyNeural",
                                         voice_config={"style": "Cheerful", "rate": "1.1", "pitch": "+1st"}))
    values = {"config": EVERYTHING, "driver_url": "bank://lively/driver-02", "voice": voice,
              "output_name": "weekly-1"} | fields
    return script_for(script_id, "Hello there. This is everything at once.", **values)


async def create_with(cls: type[DidTalks], api: str, script: Any) -> str:
    async with cls(api, KEY) as talks:
        return (await talks.create(script, SOURCE_URL, WEBHOOK)).id


# -- what each flavour sends ------------------------------------------------------------------------------


def create_schema() -> dict[str, Any]:
    spec = json.loads(SPEC.read_text())
    return spec["paths"]["/talks"]["post"]["requestBody"]["content"]["application/json"]["schema"]


def outside(value: Any, schema: dict[str, Any], where: str = "body") -> list[str]:
    """Where `value` leaves `schema`: unknown properties, values off an enum or a pattern."""
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if alternatives:  # fits when one alternative fits: report the closest
        return min((outside(value, alternative, where) for alternative in alternatives), key=len)
    problems = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}={value!r}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        problems.append(f"{where}={value!r}")
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            known = schema["properties"].get(key)
            problems += [f"{where}.{key}"] if known is None else outside(item, known, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for n, item in enumerate(value):
            problems += outside(item, schema["items"], f"{where}[{n}]")
    return problems


def test_the_d_id_flavour_sends_only_what_d_ids_spec_lists(fake: tuple[FakeTalks, str]) -> None:
    state, api = fake
    schema = create_schema()
    run(create_with(DidTalks, api, full_script()))
    sent = state.bodies[-1]
    assert outside(sent, schema) == []
    assert set(schema["required"]) <= set(sent)
    kept = {key: EVERYTHING[key] for key in ("stitch", "result_format", "fluent", "pad_audio", "logo",
                                             "driver_expressions")}
    assert sent["config"] == kept  # what D-ID has is kept, not dropped with the rest
    assert sent["script"]["provider"]["voice_config"] == {"style": "Cheerful", "rate": "1.1", "pitch": "+1st"}
    assert (sent["user_data"], sent["name"], sent["webhook"]) == ("scr_everything", "weekly-1", WEBHOOK)


def test_our_engine_gets_the_extensions_d_ids_spec_lacks(fake: tuple[FakeTalks, str]) -> None:
    """The same script to our engine: exactly the fields the d-id flavour leaves out are what is extra."""
    state, api = fake
    schema = create_schema()
    run(create_with(TalkmillTalks, api, full_script()))
    sent = state.bodies[-1]
    assert sorted(outside(sent, schema)) == sorted(OURS_ONLY)
    assert sent["config"] == EVERYTHING and sent["driver_url"] == "bank://lively/driver-02"


def test_the_talkmill_request_body() -> None:
    script = script_for("scr_1", driver_url="bank://lively/driver-02",
                        voice=Voice(provider=VoiceProvider(voice_id="en-GB-RyanNeural")))
    body = TalkmillTalks("http://talks.test").request_body(script, "https://engine.local/images/a.png",
                                                          "http://127.0.0.1:9/hook")
    assert body == {
        "source_url": "https://engine.local/images/a.png",
        "script": {"type": "text", "input": "Hello there.", "subtitles": True,
                   "provider": {"type": "microsoft", "voice_id": "en-GB-RyanNeural"}},
        "config": {}, "driver_url": "bank://lively/driver-02", "user_data": "scr_1",
        "name": "note-scr_1", "webhook": "http://127.0.0.1:9/hook",
    }  # fmt: skip


def test_dropped_fields_are_warned_about_once_per_run(caplog: pytest.LogCaptureFixture) -> None:
    did = DidTalks("http://talks.test")
    with caplog.at_level(logging.WARNING, "talkmill.talks"):
        for n in range(3):
            did.request_body(full_script(f"scr_{n}"), SOURCE_URL, None)
    warned = sorted(re.match(r"(\S+) is not part of the d-id API", r.getMessage())[1] for r in caplog.records)
    assert warned == sorted(name.removeprefix("body.") for name in OURS_ONLY)


def test_a_gif_is_refused_for_d_id_before_anything_is_sent(fake: tuple[FakeTalks, str]) -> None:
    state, api = fake
    gif = full_script(config={"result_format": "gif"})
    with pytest.raises(ContractViolation) as caught:
        run(create_with(DidTalks, api, gif))
    assert caught.value.field == "config.result_format" and caught.value.allowed == ["mp4", "mov"]
    assert "does not make 'gif'" in str(caught.value) and state.post_times == []
    run(create_with(TalkmillTalks, api, gif))  # our engine makes gifs
    assert state.bodies[-1]["config"] == {"result_format": "gif"}


# -- answers ----------------------------------------------------------------------------------------------


def test_retry_after_with_a_fraction_waits_that_long(fake: tuple[FakeTalks, str]) -> None:
    state, api = fake
    state.busy, state.retry_after = 1, "1.5"
    talk_id = run(create_with(DidTalks, api, script_for("scr_busy")))
    first, second = state.post_times
    assert 1.5 <= second - first < 2.5
    assert state.creates("scr_busy") == 1 and talk_id in state.talks


def test_an_upload_answer_without_a_url_is_a_bad_answer(fake: tuple[FakeTalks, str], tmp_path: Path) -> None:
    _, api = fake
    portrait = tmp_path / "no-url.png"
    portrait.write_bytes(png_bytes(8, 8))

    async def upload() -> str:
        async with DidTalks(api, KEY) as talks:
            return await talks.upload_image(portrait)

    with pytest.raises(TalksBadAnswer, match="POST /images answered without a url for no-url.png"):
        run(upload())


def test_a_done_talk_without_a_result_url_is_a_bad_answer(fake: tuple[FakeTalks, str]) -> None:
    _, api = fake

    async def create_and_wait() -> None:
        async with DidTalks(api, KEY) as talks:
            ref = await talks.create(script_for("scr_nothing", output_name="no-result"), SOURCE_URL, None)
            await talks.wait(ref.id, poll_interval=0.02, timeout=5)

    with pytest.raises(TalksBadAnswer, match="is done but the API gave no result_url"):
        run(create_and_wait())


def test_a_repeating_page_token_stops_the_listing_at_once(fake: tuple[FakeTalks, str]) -> None:
    state, api = fake
    state.stuck_token = "again"

    async def index() -> dict:
        async with DidTalks(api, KEY, index_pages=50) as talks:
            return await talks.find_existing({"scr_a", "scr_b"})

    started = time.monotonic()
    assert run(index()) == {}
    assert [path for method, path, _ in state.seen if method == "GET"] == ["/talks", "/talks"]
    assert time.monotonic() - started < 2


def test_a_portrait_over_the_limit_is_refused_without_reading_it_whole(
    fake: tuple[FakeTalks, str], tmp_path: Path
) -> None:
    state, api = fake
    huge = tmp_path / "huge.png"
    with huge.open("wb") as file:
        file.truncate(4 << 30)  # 4 GB, sparse: reading it whole would take seconds and 4 GB of memory

    async def upload() -> str:
        async with DidTalks(api, KEY) as talks:
            return await talks.upload_image(huge)

    started = time.monotonic()
    with pytest.raises(ContractViolation) as caught:
        run(upload())
    assert time.monotonic() - started < 2
    assert caught.value.field == "source_url" and str(MAX_IMAGE_BYTES) in str(caught.value.allowed)
    assert not [path for _, path, _ in state.seen if path == "/images"]


def test_a_portrait_that_is_not_an_image_is_never_uploaded(fake: tuple[FakeTalks, str], tmp_path: Path) -> None:
    """Whatever a path names (a text file renamed .png), only an image leaves the machine."""
    state, api = fake
    passwords = tmp_path / "face.png"
    passwords.write_text("root:x:0:0:root:/root:/bin/bash\n")

    async def upload() -> str:
        async with DidTalks(api, KEY) as talks:
            return await talks.upload_image(passwords)

    with pytest.raises(ContractViolation, match="not a JPEG, PNG or WebP image") as caught:
        run(upload())
    assert caught.value.field == "source_url"
    assert not [path for _, path, _ in state.seen if path == "/images"]
