"""Captions and posters: cues timed from real synthesized (and force-aligned) speech, WebVTT and SRT that
parse back to the script's words, and a real engine that serves them, burns them in, and makes a poster."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from PIL import Image
from talkmill_engine.captions import MAX_CUE_SECONDS, MAX_LINE_CHARS, Cue, cues_from_speech, to_srt, to_vtt
from talkmill_engine.render.poster import PosterPicker, encode_jpeg
from talkmill_engine.speech.audio import decode_audio, write_wav
from talkmill_engine.speech.catalogue import voice_by_id
from talkmill_engine.speech.synthesizer import Synthesizer
from talkmill_engine.speech.timing import Speech

from tests.engine.helpers import Engine, StaticServer, start_s3_engine, wait_for
from tests.s3server import S3Server

TEXT = (
    "Welcome to the quarterly update. Dr. Smith joined us at 3:30 pm on May 4, and 42 people came! "
    "Training material is mostly slide decks, PDF files and Word documents, and viewers of corporate video "
    "expect captions because accessibility rules often require them. Short one. Thanks."
)
NO_CLAUSES = ("the quick brown fox jumps over the lazy dog " * 6).strip() + "."
KOKORO_TEXT = "Dr. Smith joined us at 3:30 pm, and 42 people came. Thanks!"
SAY = "Captions help everyone follow along. They are timed from the voice itself."
FPS = 25


@pytest.fixture(scope="module")
def synthesizer() -> Synthesizer:
    return Synthesizer()


@pytest.fixture(scope="module")
def spoken(synthesizer: Synthesizer) -> Speech:
    """piper's joe: a pause after every word (numbers: several)."""
    return synthesizer.synthesize(TEXT, voice_by_id("en-US-joe"))


# -- a tiny reader of what we write: WebVTT and SRT back to cues --------------------------------------


_TIMES = re.compile(r"^(\d\d):(\d\d):(\d\d)[.,](\d{3}) --> (\d\d):(\d\d):(\d\d)[.,](\d{3})$")


def parse_captions(text: str, vtt: bool) -> list[Cue]:
    blocks = [block for block in text.strip().split("\n\n") if block.strip()]
    if vtt:
        assert blocks.pop(0).strip() == "WEBVTT"
    cues = []
    for number, block in enumerate(blocks, 1):
        index, times, *lines = block.split("\n")
        assert int(index) == number
        match = _TIMES.match(times)
        assert match, times
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, match.groups())
        start, end = h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000
        if vtt:
            lines = [line.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") for line in lines]
        cues.append(Cue(start, end, tuple(lines)))
    return cues


def words_of(cues: list[Cue]) -> list[str]:
    return [word for cue in cues for line in cue.lines for word in line.split()]


def assert_cue_rules(cues: list[Cue], duration: float) -> None:
    assert cues
    for cue in cues:
        assert 1 <= len(cue.lines) <= 2, cue
        assert all(len(line) <= MAX_LINE_CHARS for line in cue.lines), cue
        assert 0 <= cue.start < cue.end <= duration + 1e-3, cue
        assert cue.end - cue.start <= MAX_CUE_SECONDS + 1e-6, cue
    assert all(a.end <= b.start for a, b in zip(cues, cues[1:])), "cues overlap or are out of order"


def assert_split_at_punctuation(cues: list[Cue]) -> None:
    """A cue ends between two words of one clause only when that clause is too long for one cue."""
    words, ends, count = words_of(cues), set(), 0
    for cue in cues:
        count += len(words_of([cue]))
        ends.add(count)
    clause_start = 0
    for i, word in enumerate(words, 1):
        if word[-1] in ".,!?;:" or i == len(words):
            clause = " ".join(words[clause_start:i])
            inner = {end for end in ends if clause_start < end < i}
            assert not inner or len(clause) > 2 * MAX_LINE_CHARS, f"{clause!r} was cut at {inner}"
            clause_start = i


# -- cues from real speech --------------------------------------------------------------------------


def test_cues_follow_the_rules_and_hold_the_scripts_words(spoken: Speech) -> None:
    cues = cues_from_speech(spoken, TEXT)
    assert_cue_rules(cues, spoken.duration)
    assert words_of(cues) == TEXT.split()
    assert_split_at_punctuation(cues)
    assert not any(cue.lines[0].startswith("Smith") for cue in cues), "'Dr.' does not end a sentence"


def test_kokoro_speech_pausing_only_at_punctuation_is_captioned_too(synthesizer: Synthesizer) -> None:
    kokoro = synthesizer.synthesize(KOKORO_TEXT, voice_by_id("en-US-af_heart"))
    cues = cues_from_speech(kokoro, KOKORO_TEXT)
    assert_cue_rules(cues, kokoro.duration)
    assert words_of(cues) == KOKORO_TEXT.split()
    assert_split_at_punctuation(cues)


def test_cue_times_follow_the_voice(spoken: Speech) -> None:
    """The first cue starts with the first phone, the last ends with the last word; each at a word's start."""
    cues = cues_from_speech(spoken, TEXT)
    voiced = [(p.start, p.end) for p in spoken.phones if p.symbol != " "]
    assert cues[0].start == pytest.approx(voiced[0][0], abs=0.05)
    last_words_end = max(end for _, end in voiced)
    assert cues[-1].end >= last_words_end - 0.05
    thanks = cues[-1]  # "Short one. Thanks." share the last cue: both short sentences
    assert thanks.lines[-1].endswith("Thanks.")
    # joe pauses between words: every cue starts where a word does, right after a pause
    pairs = zip(spoken.phones, spoken.phones[1:])
    word_starts = {round(b.start, 3) for a, b in pairs if a.symbol == " " != b.symbol}
    assert all(cue.start in word_starts for cue in cues), [c.start for c in cues]


def test_a_long_sentence_without_clauses_is_cut_into_even_cues(synthesizer: Synthesizer) -> None:
    speech = synthesizer.synthesize(NO_CLAUSES, voice_by_id("en-US-joe"))
    cues = cues_from_speech(speech, NO_CLAUSES)
    assert_cue_rules(cues, speech.duration)
    assert words_of(cues) == NO_CLAUSES.split()
    sizes = [sum(len(line) for line in cue.lines) for cue in cues]
    assert min(sizes) >= 0.4 * max(sizes), f"an orphan cue: {sizes}"


def test_vtt_and_srt_parse_back_to_the_same_cues(spoken: Speech) -> None:
    cues = cues_from_speech(spoken, TEXT + " Q&A <here> -->")
    for text, vtt in ((to_vtt(cues), True), (to_srt(cues), False)):
        back = parse_captions(text, vtt)
        assert [c.lines for c in back] == [c.lines for c in cues]
        times = [t for c in cues for t in (c.start, c.end)]
        assert [t for c in back for t in (c.start, c.end)] == pytest.approx(times, abs=1e-3)
    assert "-->" not in to_vtt(cues).split("\n", 2)[2].replace(" --> ", " ")  # escaped in cue text


def test_an_audio_script_with_a_transcript_gets_captions_from_its_alignment(
    synthesizer: Synthesizer, tmp_path: Path
) -> None:
    joe = synthesizer.synthesize(SAY, voice_by_id("en-US-joe"))
    write_wav(joe, tmp_path / "joe.wav")
    aligned = decode_audio((tmp_path / "joe.wav").read_bytes(), transcript=SAY)
    cues = cues_from_speech(aligned, SAY)
    assert_cue_rules(cues, aligned.duration)
    assert words_of(cues) == SAY.split()
    without = decode_audio((tmp_path / "joe.wav").read_bytes())  # the phone loop: phones but no words
    assert cues_from_speech(Speech(without.samples, without.sample_rate), SAY) == []


# -- the poster frame -------------------------------------------------------------------------------


def poster_of(tracks: dict[str, np.ndarray]) -> int:
    """The index of the frame PosterPicker keeps, frames offered in order (each frame holds its index)."""
    picker = PosterPicker(25)
    for i in range(len(tracks["jaw"])):
        picker.offer(i, {name: float(values[i]) for name, values in tracks.items()}, np.array([i]))
    assert picker.frame is not None
    return int(picker.frame[0])


def test_the_poster_frame_has_open_eyes_and_a_closed_mouth_after_the_head_settles() -> None:
    n = 200
    rng = np.random.default_rng(3)
    tracks = {"jaw": 0.3 + 0.5 * rng.random(n), "press": 0.2 * rng.random(n), "blink": np.zeros(n)}
    tracks["jaw"][0] = tracks["press"][0] = 0.0  # frame 0 is at rest: not the one, the head still settles
    tracks["jaw"][30] = tracks["jaw"][60] = 0.01
    tracks["press"][60] = 0.0
    tracks["blink"][58:64] = 1.0  # ... but her eyes are shut at 60
    tracks["jaw"][150] = 0.0  # after the first 4 s: too late to be the poster
    assert poster_of(tracks) == 30
    assert poster_of({name: values[:1] for name, values in tracks.items()}) == 0
    assert poster_of({name: values[:7] for name, values in tracks.items()}) == 6  # shorter than the settling


def test_a_poster_encodes_as_a_jpeg_of_its_frame() -> None:
    frame = np.full((96, 128, 3), 200, dtype=np.uint8)
    image = Image.open(io.BytesIO(encode_jpeg(frame)))
    assert (image.format, image.size) == ("JPEG", (128, 96))


# -- a real engine ----------------------------------------------------------------------------------


BUCKET, PREFIX = "inbox", "engine-results"  # the bucket the other engine tests use (see test_replicas.py)


@pytest.fixture(scope="module")
def s3_engine(tmp_path_factory: pytest.TempPathFactory, seaweedfs: S3Server) -> Iterator[Engine]:
    started = start_s3_engine(tmp_path_factory.mktemp("captions") / "data", seaweedfs, f"s3://{BUCKET}/{PREFIX}")
    yield started
    started.kill()


def say(static_server: StaticServer, subtitles: bool = False, **config: object) -> dict:
    script = {"type": "text", "input": SAY, "subtitles": subtitles,
              "provider": {"type": "talkmill", "voice_id": "en-US-joe"}}  # fmt: skip
    return {"source_url": static_server.url("grace_hopper.jpg"), "script": script, "config": config}


@pytest.fixture(scope="module")
def talks(s3_engine: Engine, static_server: StaticServer) -> dict[str, dict]:
    """Three talks of the same words by the same driver: plain with subtitles, burned in, and audio only."""
    bodies = {
        "subtitled": say(static_server, subtitles=True),
        "burned": say(static_server, subtitles_burn=True),
        "audio": {"source_url": static_server.url("grace_hopper.jpg"),
                  "script": {"type": "audio", "audio_url": static_server.url("speech.mp3"),
                             "subtitles": True}},
    }  # fmt: skip
    with s3_engine.client() as client:
        ids = {}
        for name, body in bodies.items():
            created = client.post("/talks", json=body)
            assert created.status_code == 201, created.text
            ids[name] = created.json()["id"]
        return {name: wait_for(client, talk_id, timeout=300) for name, talk_id in ids.items()}


def test_a_subtitled_talk_serves_vtt_and_srt_of_its_words_within_the_video(talks: dict[str, dict]) -> None:
    talk = talks["subtitled"]
    assert talk["status"] == "done", talk
    assert set(talk["subtitles"]) == {"vtt_url", "srt_url"}
    vtt = httpx.get(talk["subtitles"]["vtt_url"], timeout=30)
    srt = httpx.get(talk["subtitles"]["srt_url"], timeout=30)
    assert vtt.status_code == srt.status_code == 200
    assert vtt.headers["content-type"] == "text/vtt; charset=utf-8"
    assert srt.headers["content-type"] == "application/x-subrip; charset=utf-8"
    for cues in (parse_captions(vtt.text, vtt=True), parse_captions(srt.text, vtt=False)):
        assert_cue_rules(cues, talk["duration"])
        assert words_of(cues) == SAY.split()


def test_every_talk_has_a_poster_of_its_videos_size(talks: dict[str, dict]) -> None:
    for name, talk in talks.items():
        poster = httpx.get(talk["poster_url"], timeout=30)
        assert poster.status_code == 200, name
        image = Image.open(io.BytesIO(poster.content))
        assert (image.format, list(image.size)) == ("JPEG", talk["metadata"]["resolution"]), name


def test_an_audio_script_without_a_transcript_says_why_it_has_no_captions(talks: dict[str, dict]) -> None:
    talk = talks["audio"]
    assert talk["status"] == "done", talk
    assert "transcript" in talk["subtitles"]["reason"] and "vtt_url" not in talk["subtitles"]


def test_burned_in_captions_show_in_the_decoded_frames(talks: dict[str, dict]) -> None:
    assert "subtitles" not in talks["burned"]  # burned in, not asked for as files
    cues = parse_captions(httpx.get(talks["subtitled"]["subtitles"]["vtt_url"], timeout=30).text, vtt=True)
    at = (cues[0].start + cues[0].end) / 2
    plain, burned = (frame_at(httpx.get(talks[name]["result_url"], timeout=30).content, at)
                     for name in ("subtitled", "burned"))  # fmt: skip
    third = slice(plain.shape[0] * 2 // 3, plain.shape[0])
    bright = lambda frame: int((frame[third].min(axis=2) > 220).sum())  # noqa: E731  (white text)
    darker = lambda frame: float(frame[third].mean())  # noqa: E731  (the box)
    assert bright(burned) > bright(plain) + 300, (bright(burned), bright(plain))
    assert darker(burned) < darker(plain) - 5
    burned_video = httpx.get(talks["burned"]["result_url"], timeout=30).content
    after = frame_at(burned_video, talks["burned"]["duration"] + 1)
    assert after is None or bright(after) < bright(burned)


def frame_at(video: bytes, t: float) -> np.ndarray | None:
    """The RGB frame shown at `t` seconds, decoded by PyAV; None past the end."""
    with av.open(io.BytesIO(video)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index == int(t * FPS):
                return frame.to_ndarray(format="rgb24")
    return None


def test_local_results_serve_captions_and_poster(client: httpx.Client, static_server: StaticServer) -> None:
    created = client.post("/talks", json=say(static_server, subtitles=True))
    talk = wait_for(client, created.json()["id"], timeout=300)
    assert talk["status"] == "done", talk
    for url, kind in ((talk["subtitles"]["vtt_url"], "text/vtt"), (talk["subtitles"]["srt_url"], ""),
                      (talk["poster_url"], "image/jpeg")):  # fmt: skip
        answer = httpx.get(url, timeout=30)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind), url
    assert words_of(parse_captions(httpx.get(talk["subtitles"]["vtt_url"]).text, vtt=True)) == SAY.split()
