"""Kokoro-82M with the real model and voices: timings, voices by language and gender, the sha256 guard."""

from __future__ import annotations

import functools
import itertools
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from talkmill_engine.render import visemes
from talkmill_engine.speech import (
    kokoro,
    kokoro_cjk,
    kokoro_files,
    kokoro_graph,
    kokoro_phonemes,
    kokoro_timing,
)
from talkmill_engine.speech.catalogue import resolve_voice, voice_by_id
from talkmill_engine.speech.kokoro_files import KokoroFilesError
from talkmill_engine.speech.onnx_session import cpu_session
from talkmill_engine.speech.synthesizer import Synthesizer
from talkmill_engine.speech.text import split_for_synthesis
from talkmill_engine.speech.timing import PAUSE, Speech

from talks_contract.voices import parse_voice_config
from tests.engine.helpers import ENGINE_COMMAND, start_engine

FRAME = 600 / 24000  # one Kokoro frame
SENTENCE = "Hello there. This is a short test of the speech engine."


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    kokoro.warm()
    return Synthesizer()


@pytest.fixture(scope="module")
def heart(synth: Synthesizer) -> Speech:
    return synth.synthesize(SENTENCE, resolve_voice(None))


def assert_timed(speech: Speech) -> None:
    """Phones from 0 to exactly the audio's end, touching, in IPA (misaki's letters spelled out)."""
    phones = speech.phones
    assert phones and phones[0].start == 0.0
    for before, after in itertools.pairwise(phones):
        assert after.start == before.end and after.end > after.start
    assert phones[-1].end == pytest.approx(speech.duration, abs=1e-9)
    assert sum(phone.symbol != PAUSE for phone in phones) > len(phones) / 2
    assert not {"A", "I", "O", "Q", "W", "Y", "ʧ", "ʤ", "ˈ", "ˌ"} & {ch for p in phones for ch in p.symbol}


def test_the_default_voice_is_kokoro_heart_with_timings_to_the_end(heart: Speech) -> None:
    """D-ID's default (Microsoft Jenny) speaks with Kokoro's best female en-US voice, frame-exact timings."""
    assert heart.voice_id == "en-US-af_heart"
    assert heart.sample_rate == 24000 and heart.samples.dtype == np.float32
    assert_timed(heart)
    assert len(heart.samples) % 600 == 0  # whole frames: the model's durations are the audio
    assert 1.5 <= len(SENTENCE.split()) / heart.duration <= 4.5
    assert {"h", "ə", "l", "o", "ʊ", "ð", "ɛ", "s", "t"} <= {phone.symbol for phone in heart.phones}


# --- phones where the audio has them (bench/lipsync.py: the mouth follows them) --------------------------

TALK = ("Hello there. This is a short test of the speech engine. Good morning, and welcome to the quarterly "
        "product briefing. First, the new search.")  # fmt: skip
HOP = 0.005  # seconds per loudness value
VOWELS = set("aɑɒæʌeɛiɪoɔuʊəɜ")
VOICELESS = set("ptkfθsʃh")


def loudness(speech: Speech) -> np.ndarray:
    """RMS of 20-ms windows every HOP seconds, over its 95th percentile."""
    hop, half = int(HOP * speech.sample_rate), int(0.01 * speech.sample_rate)
    squares = np.concatenate([[0.0], np.cumsum(speech.samples.astype(np.float64) ** 2)])
    centres = np.arange(len(speech.samples) // hop) * hop + hop // 2
    lo, hi = np.clip(centres - half, 0, len(speech.samples)), np.clip(centres + half, 0, len(speech.samples))
    rms = np.sqrt((squares[hi] - squares[lo]) / (hi - lo))
    return rms / np.percentile(rms, 95)


def mean_loudness(speech: Speech, level: np.ndarray, kind: set[str]) -> float:
    times = (np.arange(len(level)) + 0.5) * HOP
    inside = [level[(times >= p.start) & (times < p.end)] for p in speech.phones if p.symbol[0] in kind]
    return float(np.mean([values.mean() for values in inside if values.size]))


def vowel_lag(speech: Speech, level: np.ndarray, most: float = 0.1) -> float:
    """How far (s) the phones' vowels must move to match the loudness best (negative: they came late)."""
    times = (np.arange(len(level)) + 0.5) * HOP
    vowels = np.zeros(len(level))
    for phone in speech.phones:
        vowels[(times >= phone.start) & (times < phone.end)] = phone.symbol[0] in VOWELS
    steps = int(most / HOP)
    r = {lag: np.corrcoef(np.roll(vowels, lag)[steps:-steps], level[steps:-steps])[0, 1]
         for lag in range(-steps, steps + 1)}  # fmt: skip
    return max(r, key=r.__getitem__) * HOP


@pytest.fixture(scope="module")
def talks(synth: Synthesizer) -> Callable[[str], Speech]:
    """TALK spoken by a voice, once per voice in this module."""
    return functools.cache(lambda voice_id: synth.synthesize(TALK, voice_by_id(voice_id)))


ENGLISH_VOICES = ["en-US-af_heart", "en-US-am_michael", "en-GB-bf_emma"]


@pytest.mark.parametrize("voice_id", ENGLISH_VOICES)
def test_phones_sit_where_the_audio_has_them(talks: Callable[[str], Speech], voice_id: str) -> None:
    """Kokoro's audio runs ~50 ms ahead of its durations and through its word spaces: placed as the token
    counts say, pauses were nearly as loud as vowels (0.36 vs 0.47), f and k loud, the vowels 50 ms late."""
    speech = talks(voice_id)
    level = loudness(speech)
    vowels = mean_loudness(speech, level, VOWELS)
    assert vowels > 4 * mean_loudness(speech, level, {PAUSE})  # measured 14-320 times (before: 1.2-1.6)
    assert vowels > 2.2 * mean_loudness(speech, level, VOICELESS)  # 2.7-4.4 (before: 1.3-1.9)
    assert abs(vowel_lag(speech, level)) <= 0.025  # -15..0 ms (before: -45..-70)


@pytest.mark.parametrize("voice_id", ENGLISH_VOICES)
def test_the_mouth_opens_with_kokoros_loudness(talks: Callable[[str], Speech], voice_id: str) -> None:
    """Kokoro's loudness stays up through close vowels, l, n, r and m, where joe's falls (af_heart's energy
    is in its fundamental, 150-300 Hz): a mouth opened by the phone alone moved against it, r 0.77-0.84 on
    these tracks (bench/lipsync.py on the output: 0.66-0.68); loudness now opens any sound (visemes)."""
    speech = talks(voice_id)
    n_frames = visemes.frame_count(speech.duration, 25)
    energy = visemes.loudness(speech.samples, speech.sample_rate, n_frames, 25)
    tracks = visemes.tracks_from_phones(speech, 25, energy)
    opening = tracks["jaw"] * (1 - tracks["press"])  # the rig's lip gap: the press shuts whatever the jaw
    assert np.corrcoef(opening, energy)[0, 1] > 0.85  # measured 0.90-0.94


def test_a_word_space_is_spoken_through_and_a_diphthong_is_two_sounds() -> None:
    """Timings alone (silent audio): " " between words is no pause, ", " is; "O" is o then ʊ; the first
    sound, one frame long, is not moved out of existence by the shift."""
    symbols = list("hˈɛlO wˈɜɹld,")
    frames = [10, 1, 1, 2, 2, 4, 2, 1, 1, 2, 2, 2, 2, 3, 1]  # the pads' included
    silence = np.zeros(sum(frames) * 600, np.float32)
    samples, phones = kokoro_timing.timed_phones(symbols, frames, silence, 1.0)
    assert [p.symbol for p in phones] == [" ", "h", "ɛ", "l", "o", "ʊ", "w", "ɜ", "ɹ", "l", "d", " "]
    assert len(samples) == (sum(frames) - 7) * 600  # the silent pad's 10 frames cut to 3
    assert phones[-1].end == pytest.approx(len(samples) / 24000)


def test_rate_and_pitch_apply_and_keep_timings(synth: Synthesizer, heart: Speech) -> None:
    voice = resolve_voice(None)
    fast = synth.synthesize(SENTENCE, voice, parse_voice_config({"rate": "x-fast"}))
    assert fast.duration < 0.7 * heart.duration
    higher = synth.synthesize(SENTENCE, voice, parse_voice_config({"pitch": "+20%"}))
    assert_timed(higher)
    assert higher.duration == pytest.approx(heart.duration, rel=0.15)


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        (None, "en-US-af_heart"),
        ({"type": "microsoft", "voice_id": "en-US-JennyNeural"}, "en-US-af_heart"),
        ({"type": "microsoft", "voice_id": "en-US-AriaNeural"}, "en-US-af_heart"),
        ({"type": "microsoft", "voice_id": "en-US-GuyNeural"}, "en-US-am_michael"),
        ({"type": "microsoft", "voice_id": "en-US-AndrewMultilingualNeural"}, "en-US-am_michael"),
        ({"type": "microsoft", "voice_id": "en-GB-SoniaNeural"}, "en-GB-bf_emma"),
        ({"type": "microsoft", "voice_id": "en-GB-RyanNeural"}, "en-GB-bm_george"),
        ({"type": "microsoft", "voice_id": "en-AU-NatashaNeural"}, "en-GB-bf_emma"),
        ({"type": "amazon", "voice_id": "Joanna"}, "en-US-af_heart"),
        ({"type": "amazon", "voice_id": "Matthew"}, "en-US-am_michael"),
        ({"type": "amazon", "voice_id": "Brian"}, "en-GB-bm_george"),
        ({"type": "google", "voice_id": "en-US-Neural2-F"}, "en-US-af_heart"),
        ({"type": "google", "voice_id": "en-US-Wavenet-D"}, "en-US-am_michael"),
        ({"type": "google", "voice_id": "en-GB-Standard-B"}, "en-GB-bm_george"),
        ({"type": "elevenlabs", "voice_id": "21m00Tcm4TlvDq8ikWAM"}, "en-US-af_heart"),  # Rachel
        ({"type": "elevenlabs", "voice_id": "pNInz6obpgDQGcFmaJgB"}, "en-US-am_michael"),  # Adam
        ({"type": "microsoft", "voice_id": "en-US-SomebodyNewNeural"}, "en-US-af_heart"),  # unknown: default
        ({"type": "microsoft", "voice_id": "es-MX-JorgeNeural"}, "es-ES-em_alex"),
        ({"type": "microsoft", "voice_id": "fr-FR-HenriNeural"}, "fr-FR-ff_siwis"),  # no male French voice
        ({"type": "talkmill", "voice_id": "en-US-joe"}, "en-US-joe"),
        ({"type": "microsoft", "voice_id": "de-DE-KatjaNeural"}, "de-espeak"),  # no German Kokoro voice
    ],
)  # fmt: skip
def test_cloud_voices_map_by_language_and_gender(provider: dict | None, expected: str) -> None:
    assert resolve_voice(provider).id == expected


LANGUAGES = [
    ({"type": "microsoft", "voice_id": "es-ES-AlvaroNeural"}, "es", "male", "Hola a todos, es una prueba."),
    ({"type": "amazon", "voice_id": "Léa"}, "fr", "female", "Bonjour à tous, merci d'être venus."),
    ({"type": "google", "voice_id": "it-IT-Neural2-A"}, "it", "female", "Buongiorno a tutti, grazie."),
    ({"type": "microsoft", "voice_id": "pt-BR-AntonioNeural"}, "pt", "male", "Bom dia, tudo bem com vocês?"),
    ({"type": "microsoft", "voice_id": "hi-IN-SwaraNeural"}, "hi", "female", "नमस्ते, आप कैसे हैं?"),
    ({"type": "amazon", "voice_id": "Takumi"}, "ja", "male", "こんにちは、今日はいい天気ですね。"),
    ({"type": "microsoft", "voice_id": "zh-CN-XiaoxiaoNeural"}, "zh", "female", "你好，今天天气很好。"),
]  # fmt: skip


@pytest.mark.parametrize(("provider", "language", "gender", "text"), LANGUAGES, ids=[c[1] for c in LANGUAGES])
def test_each_language_speaks_with_a_neural_voice_of_it(
    synth: Synthesizer, provider: dict, language: str, gender: str, text: str
) -> None:
    voice = resolve_voice(provider)
    assert (voice.engine, voice.language.split("-")[0], voice.gender) == ("kokoro", language, gender)
    speech = synth.synthesize(text, voice)
    assert speech.voice_id == voice.id
    assert_timed(speech)
    assert 0.8 < speech.duration < 6.0


def test_cjk_text_is_cut_at_its_own_full_stops() -> None:
    assert split_for_synthesis("你好，今天天气很好。我叫李明。") == ["你好，今天天气很好。", "我叫李明。"]


def test_a_piece_longer_than_the_models_context_is_cut_at_spaces() -> None:
    batches = list(kokoro._batches(" ".join(["ni↓xau↓"] * 100)))
    assert len(batches) == 2 and all(len(batch) <= 510 and not batch.startswith(" ") for batch in batches)


@pytest.mark.parametrize(
    ("kana", "ipa"),
    [("キョー", "kʲoː"), ("シャシン", "ɕaɕiɴ"), ("ファイル", "ɸaiɽɯ"), ("ティー", "tiː"), ("ウィスキー", "βisɨkiː"),
     ("ガッコー", "ɡaʔkoː"), ("ニュース", "ɲɨːsɨ")],
)  # fmt: skip
def test_japanese_moras_become_kokoros_ipa(kana: str, ipa: str) -> None:
    assert kokoro_cjk.kana_to_ipa(kana) == ipa


def test_tts_voices_lists_the_neural_voices(tmp_path: Path) -> None:
    """Through the real API: at least 40 Kokoro voices in at least 8 languages, with gender and engine."""
    engine = start_engine(tmp_path / "data", workers=0)
    try:
        voices = engine.client().get("/tts/voices").json()
    finally:
        engine.kill()
    neural = [voice for voice in voices if voice["engine"] == "kokoro"]
    assert len(neural) >= 40
    assert len({voice["language"].split("-")[0] for voice in neural}) >= 8
    assert {voice["gender"] for voice in neural} == {"female", "male"}
    heart = next(voice for voice in voices if voice["id"] == "en-US-af_heart")
    assert heart == {"id": "en-US-af_heart", "name": "Heart (Kokoro)", "language": "en-US",
                     "gender": "female", "provider": "talkmill", "engine": "kokoro"}  # fmt: skip


# --- the sha256 guard ---------------------------------------------------------------------------------


@pytest.fixture
def kokoro_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the installed files, named by the setting (TALKMILL_ENGINE_KOKORO_DIR)."""
    copy = tmp_path / "kokoro"
    shutil.copytree(kokoro_files.kokoro_dir(), copy)
    monkeypatch.setenv("TALKMILL_ENGINE_KOKORO_DIR", str(copy))
    kokoro_files._configured_dir.cache_clear()
    yield copy
    kokoro_files._configured_dir.cache_clear()


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupted_voice_is_refused_loudly(kokoro_copy: Path) -> None:
    assert kokoro_files.kokoro_dir() == kokoro_copy and kokoro_files.problems() == []
    voice = kokoro_copy / "voices" / "af_heart.bin"
    corrupt(voice)
    expected = kokoro_files.MANIFEST["voices"]["sha256"]["af_heart"]
    with pytest.raises(KokoroFilesError) as error:
        kokoro_files.check()
    message = error.value.description
    assert str(voice) in message and f"expected {expected}" in message and "scripts/bootstrap" in message
    with pytest.raises(KokoroFilesError, match="af_heart.bin: sha256 [0-9a-f]{64}, expected"):
        kokoro_files.read_voice("af_heart")


@pytest.mark.parametrize("fast", [False, True], ids=["timed model", "int8-activation model"])
def test_the_engine_refuses_to_start_on_a_corrupted_model(
    kokoro_copy: Path, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`talkmill-engine serve` names the wrong file, expected vs found, and the fix; it never speaks."""
    model = kokoro_files.fast_model_path() if fast else kokoro_files.model_path()
    corrupt(model)
    spec = kokoro_files.MANIFEST["model"]
    expected = spec["int8_activations"]["sha256"] if fast else spec["sha256"]
    data_dir = str(kokoro_copy / "data")
    command = [*ENGINE_COMMAND, "serve", "--port", "0", "--data-dir", data_dir, "--workers", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert str(model) in done.stderr and f"expected {expected}" in done.stderr
    assert "scripts/bootstrap" in done.stderr
    monkeypatch.setattr(kokoro_graph, "has_vnni", lambda: fast)  # the model this CPU would load
    with pytest.raises(KokoroFilesError, match="model .* expected"):
        kokoro_files.checked_model_path()


def test_the_int8_activation_model_speaks_the_timed_models_audio_bit_for_bit() -> None:
    if not kokoro_graph.has_vnni():
        pytest.skip("this CPU has no VNNI: the engine keeps the timed model")
    phonemes = kokoro_phonemes.phonemize("Over the past three months our team shipped four features.", "en-us")
    tokens = kokoro_phonemes.tokens_of(phonemes)
    inputs = {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64), "speed": np.array([1.0], np.float32),
              "style": kokoro.style_vectors("af_heart")[len(tokens) - 1]}  # fmt: skip
    timed, fast = (cpu_session(str(path), 2).run(None, inputs)
                   for path in (kokoro_files.model_path(), kokoro_files.fast_model_path()))  # fmt: skip
    assert len(timed[0].reshape(-1)) > 24000
    assert all(np.array_equal(a, b) for a, b in zip(timed, fast))  # audio and frames per token


def test_vnni_is_read_from_the_cpus_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    assert kokoro_graph.has_vnni(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert not kokoro_graph.has_vnni(cpuinfo)
    assert not kokoro_graph.has_vnni(tmp_path / "absent")


def test_a_corrupted_model_part_is_refused_at_install(tmp_path: Path) -> None:
    parts = []
    for index, installed in enumerate(kokoro_files.part_paths(), start=1):
        parts.append(tmp_path / f"part{index}.bin")
        shutil.copyfile(installed, parts[-1])
    corrupt(parts[2])
    expected = kokoro_files.MANIFEST["model"]["parts"][2]["sha256"]
    with pytest.raises(KokoroFilesError) as error:
        kokoro_files.install_model(tmp_path / "kokoro", parts)
    assert str(parts[2]) in error.value.description and f"expected {expected}" in error.value.description
    assert not kokoro_files.model_path(tmp_path / "kokoro").exists()  # nothing half-made is left to speak


def test_missing_files_are_each_named(tmp_path: Path) -> None:
    found = kokoro_files.problems(tmp_path)
    assert len(found) == 2 + 54 and all("is missing" in line for line in found)
