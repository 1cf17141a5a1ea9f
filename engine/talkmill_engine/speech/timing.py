"""What a speech engine produces, audio with phoneme timings (Speech, Phone), and the helpers engines build
it with. No files, no models (a pitch shift resamples in memory)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

PAUSE = " "  # the symbol of a pause (silence, punctuation, spaces)
PEAK = 0.9  # speech is scaled to this peak as it comes (SpeechBuilder; engines' own normalisation is off)
STRESS_MARKS = ("ˈ", "ˌ")  # engines give these their own durations: they belong to the following vowel
# ... and these to the preceding one (Kokoro writes Chinese tones and Japanese labialisation as tokens)
_MODIFIERS = ("ː", "ˑ", "ʰ", "ʲ", "ʷ", "ᵝ", "↓", "→", "↗", "↘")


@dataclass(frozen=True)
class Phone:
    """One phoneme, in IPA, spoken from `start` to `end` seconds. A pause has the symbol " "."""

    symbol: str
    start: float
    end: float


@dataclass
class Speech:
    samples: np.ndarray  # float32, mono, in [-1, 1]
    sample_rate: int
    phones: list[Phone] = field(default_factory=list)  # empty when the script is audio
    voice_id: str | None = None  # the voice actually used (text scripts)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    def has_words(self) -> bool:
        return any(phone.symbol != PAUSE for phone in self.phones)


def phones_from_counts(counts: Iterable[tuple[str, int]], rate: int, total: int) -> list[Phone]:
    """Phones from (symbol, sample count) pairs; the last one is stretched to the audio's end."""
    phones, position = [], 0
    for symbol, count in counts:
        phones.append(Phone(symbol, position / rate, (position + count) / rate))
        position += count
    return end_at(phones, total / rate)


def merge_marks(phones: list[Phone]) -> list[Phone]:
    """Stress marks join the next phone, length marks the previous one; punctuation, spaces and the
    sentence edges ^ $ become pauses; neighbouring pauses become one."""
    merged: list[Phone] = []
    for phone in phones:
        symbol = phone.symbol
        if symbol in STRESS_MARKS:
            continue  # its time goes to the next phone: append_phone starts each phone where the last ended
        if (symbol in _MODIFIERS or _is_combining(symbol)) and merged and merged[-1].symbol != PAUSE:
            merged[-1] = Phone(merged[-1].symbol + symbol, merged[-1].start, phone.end)
            continue
        if symbol in "^$" or not symbol.isalpha():
            symbol = PAUSE
        append_phone(merged, Phone(symbol, phones[0].start if not merged else phone.start, phone.end))
    return end_at(merged, phones[-1].end) if phones else merged


def _is_combining(symbol: str) -> bool:
    return bool(symbol) and all(unicodedata.category(ch).startswith("M") for ch in symbol)


def append_phone(phones: list[Phone], phone: Phone) -> None:
    """Add `phone` right after the last one, joining pauses; zero-length phones are dropped."""
    if phones:  # snap away float rounding: consumers may compare ends and starts exactly
        phone = Phone(phone.symbol, phones[-1].end, phone.end)
    if phone.end <= phone.start:
        return
    if phones and phone.symbol == PAUSE and phones[-1].symbol == PAUSE:
        phones[-1] = Phone(PAUSE, phones[-1].start, phone.end)
    else:
        phones.append(phone)


def end_at(phones: list[Phone], end: float) -> list[Phone]:
    if phones:
        phones[-1] = Phone(phones[-1].symbol, phones[-1].start, end)
    return phones


def join_sentences(sentences: Iterable[tuple[np.ndarray, list[Phone]]], rate: int) -> Speech:
    """One Speech from sentences spoken one after another, each (samples, phones from its own start)."""
    builder = SpeechBuilder(rate)
    for samples, phones in sentences:
        builder.add(samples, phones)
    return builder.speech()


class SpeechBuilder:
    """A Speech put together from an engine's pieces as they come: each piece's phones moved to where it
    starts, its audio scaled so that no piece peaks above PEAK. The gain follows the loudest peak so far (it
    can only fall), so a piece's audio is final the moment it arrives: the renderer can animate it at once,
    while later sentences are still being spoken. Without `normalise` (a decoded audio file) samples stay
    as they are."""

    def __init__(self, rate: int, normalise: bool = True) -> None:
        self.rate = rate
        self.normalise = normalise
        self.phones: list[Phone] = []
        self._pieces: list[np.ndarray] = []
        self._length = 0
        self._peak = 0.0

    def add(self, samples: np.ndarray, phones: list[Phone]) -> None:
        offset = self._length / self.rate
        for phone in phones:  # append_phone joins the pause ending one piece to the next one's
            append_phone(self.phones, Phone(phone.symbol, phone.start + offset, phone.end + offset))
        samples = np.asarray(samples, dtype=np.float32)
        if self.normalise and samples.size:
            self._peak = max(self._peak, float(np.max(np.abs(samples))))
            if self._peak > 1e-6:
                samples = samples * np.float32(PEAK / self._peak)
        self._pieces.append(samples)
        self._length += len(samples)

    def speech(self) -> Speech:
        """Everything added so far (the pieces are joined once, then kept joined)."""
        if len(self._pieces) != 1:
            joined = np.concatenate(self._pieces) if self._pieces else np.zeros(0, np.float32)
            self._pieces = [joined]
        return Speech(self._pieces[0], self.rate, list(self.phones))


def shift_pitch(
    samples: np.ndarray, phones: list[Phone], pitch: float, rate: int
) -> tuple[np.ndarray, list[Phone]]:
    """Audio spoken `pitch` times slower, played `pitch` times faster: a higher voice at the same pace
    (formants move too: natural near 1, cartoonish at the 0.5..2 limits). Phones are scaled with it."""
    if pitch == 1.0:
        return samples, phones
    from talkmill_engine.speech.audio import resample  # PyAV: only when the pitch moves

    shifted = resample(samples, round(rate * pitch), rate)
    scale = len(shifted) / max(len(samples), 1)
    scaled = [Phone(p.symbol, p.start * scale, p.end * scale) for p in phones]
    return shifted, end_at(scaled, len(shifted) / rate)
