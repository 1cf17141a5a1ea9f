"""Phone timings for audio scripts (speech/align.py): real pocketsphinx on a real WAV spoken by piper's joe,
through decode_audio, a worker's make_speech and the API (the `script.input` transcript extension)."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import numpy as np
import pytest
from talkmill_engine.fetch import FetchPolicy
from talkmill_engine.jobs.work import WorkContext, make_speech
from talkmill_engine.speech import align
from talkmill_engine.speech.audio import SAMPLE_RATE, decode_audio, resample, write_wav
from talkmill_engine.speech.piper_joe import JOE
from talkmill_engine.speech.synthesizer import Synthesizer
from talkmill_engine.speech.timing import PAUSE, Phone, Speech

from talks_contract.urlpolicy import UrlPolicy
from tests.engine.helpers import Engine, StaticServer, wait_for

# "talkmill" and "200" are not in CMUdict: espeak-ng pronounces them
TEXT = "Good morning. Talkmill renders 200 talking heads, and the mouth follows every word."
# the phones of words with one pronunciation (CMUdict's "good" also has G IH D, "every" EH V R IY, ...)
WORDS = [["m", "ɔː", "ɹ", "n", "ɪ", "ŋ"], ["t", "ɔː", "k", "m", "ɪ", "l"], ["ɹ", "ɛ", "n", "d", "ɚ", "z"],
         ["h", "ɛ", "d", "z"], ["m", "a", "ʊ", "θ"], ["f", "ɑː", "l", "o", "ʊ", "z"],
         ["w", "ɚ", "d"]]  # fmt: skip
GERMAN = "Guten Morgen und willkommen zur vierteljährlichen Produktvorstellung."
LIPS_TOLERANCE = 0.06  # seconds between a closure (m, p, b) found and joe's own


@pytest.fixture(scope="module")
def joe() -> Speech:
    return Synthesizer().synthesize(TEXT, JOE)


@pytest.fixture(scope="module")
def wav(joe: Speech, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("align") / "joe.wav"
    write_wav(joe, path)
    return path.read_bytes()


def assert_covering(phones: list[Phone], duration: float) -> None:
    assert phones and phones[0].start == 0.0 and phones[-1].end == pytest.approx(duration, abs=1e-9)
    assert all(a.end == b.start for a, b in zip(phones, phones[1:]))
    assert all(p.end > p.start for p in phones)


def count_in_order(symbols: list[str], pieces: list[list[str]]) -> int:
    """How many of `pieces` appear, each as a run of `symbols` after the one before."""
    found, at = 0, 0
    for piece in pieces:
        starts = [i for i in range(at, len(symbols) - len(piece) + 1) if symbols[i : i + len(piece)] == piece]
        if not starts:
            break
        found, at = found + 1, starts[0] + len(piece)
    return found


def closures(phones: list[Phone]) -> np.ndarray:
    return np.array([p.start for p in phones if p.symbol in ("m", "p", "b")])


def speaking_share(phones: list[Phone], truth: list[Phone]) -> float:
    """The share of the time `phones` speak during which `truth` speaks too (on a 10 ms grid)."""
    grid = np.arange(0, truth[-1].end, 0.01)

    def speaking(of: list[Phone]) -> np.ndarray:
        return np.array([any(p.start <= t < p.end and p.symbol != PAUSE for p in of) for t in grid])

    found = speaking(phones)
    return float((found & speaking(truth)).sum() / max(found.sum(), 1))


def spoken(phones: list[Phone]) -> list[str]:
    return [p.symbol for p in phones if p.symbol != PAUSE]


# -- forced alignment and the phone loop ----------------------------------------------------------------


def test_forced_alignment_gives_the_words_phones_in_order_covering_the_audio(joe: Speech, wav: bytes) -> None:
    speech = decode_audio(wav, transcript=TEXT)
    assert_covering(speech.phones, speech.duration)
    assert speech.phones[0].symbol == PAUSE  # the silence before the first word
    assert count_in_order(spoken(speech.phones), WORDS) == len(WORDS)
    found, truth = closures(speech.phones), closures(joe.phones)
    assert len(found) == len(truth) and np.abs(found - truth).max() < LIPS_TOLERANCE


def test_phone_loop_without_transcript_finds_vowels_and_closed_lips(joe: Speech, wav: bytes) -> None:
    speech = decode_audio(wav)
    assert_covering(speech.phones, speech.duration)
    symbols = set(spoken(speech.phones))
    assert symbols & {"ɑː", "æ", "ə", "ɔː", "ɛ", "ɪ", "iː", "uː", "ʊ", "a", "o", "e"}
    near = np.array([np.abs(closures(speech.phones) - t).min() for t in closures(joe.phones)])
    assert (near < LIPS_TOLERANCE).any()  # of joe's three m's (the loop may miss one or two)
    assert speaking_share(speech.phones, joe.phones) > 0.8  # its phones are where joe speaks


def test_long_audio_is_aligned_window_by_window(monkeypatch: pytest.MonkeyPatch, joe: Speech) -> None:
    monkeypatch.setattr(align, "WINDOW_SECONDS", 4)  # ~14 s of audio: 3 windows and a last one
    monkeypatch.setattr(align, "MARGIN_SECONDS", 1)
    samples = resample(np.tile(joe.samples, 3), SAMPLE_RATE, align.SAMPLE_RATE)
    duration = 3 * joe.duration
    phones = align.audio_phones(samples, duration, " ".join([TEXT] * 3))
    assert_covering(phones, duration)
    assert count_in_order(spoken(phones), WORDS * 3) == 3 * len(WORDS)
    truth = np.concatenate([closures(joe.phones) + k * joe.duration for k in range(3)])
    found = closures(phones)
    assert len(found) == len(truth) and np.abs(found - truth).max() < LIPS_TOLERANCE


# -- when it cannot align: loudness, never a failed talk ------------------------------------------------


def test_a_transcript_in_another_language_leaves_the_mouth_to_loudness(wav: bytes) -> None:
    assert decode_audio(wav, transcript=GERMAN).phones == []


def test_audio_without_speech_gets_no_phones(tmp_path: Path) -> None:
    t = np.arange(2 * 22050) / 22050
    write_wav(Speech((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050), tmp_path / "tone.wav")
    tone = (tmp_path / "tone.wav").read_bytes()
    assert decode_audio(tone).phones == []
    assert decode_audio(tone, transcript=TEXT).phones == []  # no path through the words: loudness


def test_any_alignment_failure_logs_and_falls_back_to_loudness(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, wav: bytes
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("pocketsphinx broke")

    monkeypatch.setattr(align, "_forced", broken)
    with caplog.at_level(logging.WARNING, logger=align.__name__):
        speech = decode_audio(wav, transcript=TEXT)
    assert speech.phones == [] and speech.duration > 4
    assert "the mouth follows loudness" in caplog.text


# -- pronunciations ---------------------------------------------------------------------------------------


def test_words_and_pronunciations() -> None:
    assert align.transcript_words("Don’t stop—it's 200 cafés!") == ["don't", "stop", "it's", "200", "cafés"]
    assert align.arpabet_of_ipa("ˈaɪ") == ["AY"]
    assert align.arpabet_of_ipa("əl") == ["AH", "L"]
    assert align.arpabet_of_ipa("n̩") == ["N"]
    assert align.arpabet_of_ipa("ɑːɹ") == ["AA", "R"]
    assert align.pronounce("talkmill") == ["T", "AO", "K", "M", "IH", "L"]


def test_without_espeak_words_are_read_letter_by_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    from talkmill_engine.speech import espeak_lib

    def missing(*args: object) -> None:
        raise espeak_lib.EspeakUnavailable("no libespeak-ng")

    monkeypatch.setattr(espeak_lib, "synthesize", missing)
    assert align.pronounce("zorb") == ["Z", "AA", "R", "B"]


# -- a worker's speech and the API ------------------------------------------------------------------------


def test_a_worker_gives_an_audio_script_with_transcript_the_words_phones(
    static_server: StaticServer, wav: bytes
) -> None:
    url = static_server.add("joe-transcribed.wav", wav)
    policy = FetchPolicy(inputs=UrlPolicy.from_entries(["127.0.0.0/8"]))
    ctx = WorkContext(results=None, policy=policy, renderer=None, synthesizer=None)  # type: ignore[arg-type]
    speech = make_speech({"type": "audio", "audio_url": url, "input": TEXT}, ctx).collect()
    assert count_in_order(spoken(speech.phones), WORDS) == len(WORDS)  # so render uses tracks_from_phones


def test_an_audio_talk_with_transcript_renders(
    engine: Engine, client: httpx.Client, static_server: StaticServer, astronaut_url: str, wav: bytes
) -> None:
    script = {"type": "audio", "audio_url": static_server.add("joe.wav", wav), "input": TEXT}
    created = client.post("/talks", json={"source_url": astronaut_url, "script": script})
    assert created.status_code == 201, created.text
    talk = wait_for(client, created.json()["id"])
    assert talk["status"] == "done", talk
    assert talk["script"]["input"] == TEXT
    assert talk["duration"] == pytest.approx(len(wav[44:]) / 2 / 22050, abs=0.05)
    assert "audio alignment" not in engine.log()  # the worker's warning when the mouth falls back to loudness


BAD_TRANSCRIPTS = {"nul": "Good\x00morning", "punctuation": "...", "2-chars": "Hi"}


@pytest.mark.parametrize("transcript", list(BAD_TRANSCRIPTS.values()), ids=list(BAD_TRANSCRIPTS))
def test_a_bad_transcript_is_a_400_naming_script_input(
    client: httpx.Client, static_server: StaticServer, astronaut_url: str, transcript: str
) -> None:
    script = {"type": "audio", "audio_url": static_server.url("speech.mp3"), "input": transcript}
    response = client.post("/talks", json={"source_url": astronaut_url, "script": script})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["kind"] == "ValidationError" and body["details"]["field"] == "script.input", body
