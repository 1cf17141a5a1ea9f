"""Kokoro's phone timings: its per-token frame counts placed where its audio actually has each sound.

The counts are exact (they sum to the audio), but the audio does not follow them to the frame. Measured
on af_heart, am_michael and bf_emma at speeds 0.5 to 2, by where nasal murmur and sibilant noise fall
against the vowels (the same measure puts piper joe's own phones within 15 ms), three things differ, and
are corrected here:
- every sound comes early: 65-95 ms at speed 0.5, 60-75 at 0.7, 45-65 at 1, 35-50 at 1.4, 35-45 at 2,
  about a frame plus a frame per unit of pace (DELAY_FRAMES);
- a space between two words gets 1-3 frames, but the voice runs on through it: half of it goes to each
  neighbour (a space beside punctuation stays a pause);
- a diphthong is one token: it becomes its two sounds, as piper gives them, for the mouth to move between.
The first sound also starts before its token, in the leading pad (~45 ms at speed 1, ~150 ms at 0.7):
the pad ends where the audio's sound starts, and all but LEADING_SILENCE_FRAMES of its silence is cut.
"""

from __future__ import annotations

import numpy as np

from talkmill_engine.speech.kokoro_phonemes import ipa_of
from talkmill_engine.speech.timing import PAUSE, Phone, merge_marks, phones_from_counts

SAMPLE_RATE = 24000
SAMPLES_PER_FRAME = 600
DELAY_FRAMES = (1.0, 1.0)  # how early the audio has each sound: the first + the second / speed
LEADING_SILENCE_FRAMES = 3  # 75 ms: the model opens each sentence with up to ~0.5 s of silence
ONSET_LEVEL = 0.003  # RMS of a frame where the first sound has started (the pad's silence is ~0)
PUNCTUATION = set(';:,.!?—…"()“”')  # Kokoro's marks: a space beside one is part of a pause
# Misaki's diphthong letters as their two sounds (kokoro_phonemes.ipa_of spells them as one).
DIPHTHONGS = {"A": ("e", "ɪ"), "I": ("a", "ɪ"), "O": ("o", "ʊ"), "Q": ("ə", "ʊ"), "W": ("a", "ʊ"),
              "Y": ("ɔ", "ɪ")}  # fmt: skip


def timed_phones(
    symbols: list[str], frames: list[int], samples: np.ndarray, speed: float
) -> tuple[np.ndarray, list[Phone]]:
    """The audio with its leading silence cut, and its phones. `symbols` are the model's input tokens,
    `frames` its durations (the pads' included), `speed` the speed it was run at."""
    sounds = _sounds(symbols, frames)
    ends = np.cumsum([count for _, count in sounds])
    onset = _onset(samples, frames[0])
    ends = _realised(ends, onset, delay_samples(speed))
    cut = max(onset - LEADING_SILENCE_FRAMES, 0) * SAMPLES_PER_FRAME
    counts = zip([symbol for symbol, _ in sounds], np.diff(ends - cut, prepend=0).tolist())
    samples = samples[cut:]
    return samples, merge_marks(phones_from_counts(counts, SAMPLE_RATE, len(samples)))


def delay_samples(speed: float) -> int:
    fixed, paced = DELAY_FRAMES
    return round((fixed + paced / speed) * SAMPLES_PER_FRAME)


def _sounds(symbols: list[str], frames: list[int]) -> list[tuple[str, int]]:
    """(IPA, samples) per sound, the pads as pauses, diphthongs split in halves, word spaces dissolved."""
    sounds = [(PAUSE, frames[0] * SAMPLES_PER_FRAME)]
    for symbol, count in zip(symbols, frames[1:-1]):
        samples = count * SAMPLES_PER_FRAME
        if symbol in DIPHTHONGS:
            first, second = DIPHTHONGS[symbol]
            sounds += [(first, samples // 2), (second, samples - samples // 2)]
        else:
            sounds.append((ipa_of(symbol), samples))
    sounds.append((PAUSE, frames[-1] * SAMPLES_PER_FRAME))
    return _without_word_spaces(sounds)


def _without_word_spaces(sounds: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Each space between two spoken sounds shared by them (the first half to the one before)."""
    out = list(sounds)
    for i in range(1, len(out) - 1):
        (before, before_count), (symbol, count), (after, after_count) = out[i - 1 : i + 2]
        if symbol == " " and _spoken(before) and _spoken(after):
            half = count // 2
            out[i - 1], out[i + 1] = (before, before_count + half), (after, after_count + count - half)
            out[i] = (symbol, 0)
    return [sound for sound in out if sound[1] > 0]


def _spoken(symbol: str) -> bool:
    return symbol != PAUSE and symbol not in PUNCTUATION


def _onset(samples: np.ndarray, pad: int) -> int:
    """The frame of the leading pad where the first sound starts (the pad's end if it does not)."""
    frames = samples[: pad * SAMPLES_PER_FRAME].reshape(pad, SAMPLES_PER_FRAME)
    levels = np.sqrt((frames**2).mean(axis=1))
    return next((i for i, level in enumerate(levels) if level >= ONSET_LEVEL), pad)


def _realised(ends: np.ndarray, onset: int, delay: int) -> np.ndarray:
    """Each sound's end where the audio has it: `delay` samples early; the pad's at the first sound's
    onset, the last at the audio's end. At speed 1.4 and above the first sound starts less early than the
    rest: no sound keeps under half its length, so the first ones are not squeezed out."""
    lengths = np.diff(ends, prepend=0)
    moved = np.clip(ends - delay, 0, ends[-1])
    moved[0] = onset * SAMPLES_PER_FRAME
    for i in range(1, len(moved) - 1):
        moved[i] = max(moved[i], moved[i - 1] + lengths[i] // 2)
    moved[-1] = ends[-1]
    return np.minimum(moved, ends[-1])
