"""Phone timings for audio scripts, from pocketsphinx (en-US acoustic model, CMUdict and a phone language
model, all inside its wheel: nothing is downloaded).

With a transcript, forced alignment; without one, the phone loop (allphone). Either way the audio is
decoded in windows of about WINDOW_SECONDS: the aligner's memory grows with frames × HMM states.
Languages: CMUdict is English, so a transcript mostly outside it is taken as another language and gets no
phones. Audio without a transcript gets the phone loop whatever its language: it is trained on English, but
the mouth shapes it tells apart (open, spread, rounded, closed lips) are broadly universal.
No phones (and a warning, when something failed) means the renderer drives the mouth from loudness.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from talkmill_engine.speech.timing import PAUSE, STRESS_MARKS, Phone, append_phone, end_at

_LOGGER = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # the acoustic model's
FRAMES_PER_SECOND = 100  # pocketsphinx's frame rate (10 ms)
WINDOW_SECONDS = 30  # 10 minutes aligned in windows: 34 CPU s, 191 MB peak (172 s in one piece: 1 GB)
MARGIN_SECONDS = 5  # a window's end is not forced: its last words are aligned again in the next window
MAX_WORDS_PER_SECOND = 8  # a window's grammar holds at most this many words per second of it
MIN_SPEECH_PHONES = 3  # fewer is no speech (a tone's abrupt end reads as "P"): loudness does as well
MIN_ENGLISH_SHARE = 0.7  # of a transcript's words in CMUdict (English texts: 0.8-1.0; es, fr, de: 0.4-0.6)
ESPEAK_VOICE = "en-us"  # pronounces words CMUdict lacks
# Measured (bench/lipsync_audio.py: mouth tracks against piper's and espeak's own phone timings):
# - the default beams prune the right path away on unusual voices (espeak-ng's alignment fails at once);
# - the lattice's best path (bestpath) disagrees with the Viterbi frames the phone pass is held to: that
#   pass then fails (5 windows of 13 in 172 s of joe; none of 27 without), and it costs twice the time;
# - the phone loop is best with the phone LM weighted as the acoustics (lw 1; the default 6.5 is for words);
# - boundaries come 20-30 ms early (a frame is a 25.6 ms window starting at its 10 ms mark).
ALIGNMENT_SETTINGS = {"beam": 1e-80, "wbeam": 1e-60, "pbeam": 1e-80, "bestpath": False}
PHONE_LOOP_SETTINGS = {"lw": 1.0}
BOUNDARY_DELAY = 0.025  # seconds added to every pocketsphinx time

# ARPAbet (CMUdict, without stress) → the IPA-like symbols of piper and espeak that render/visemes.py keys on.
# Diphthongs become their two sounds, as piper gives them: the mouth moves between the two.
ARPABET: dict[str, tuple[str, ...]] = {
    "AA": ("ɑː",), "AE": ("æ",), "AH": ("ə",), "AO": ("ɔː",), "AW": ("a", "ʊ"), "AY": ("a", "ɪ"),
    "B": ("b",), "CH": ("tʃ",), "D": ("d",), "DH": ("ð",), "EH": ("ɛ",), "ER": ("ɚ",), "EY": ("e", "ɪ"),
    "F": ("f",), "G": ("ɡ",), "HH": ("h",), "IH": ("ɪ",), "IY": ("iː",), "JH": ("dʒ",), "K": ("k",),
    "L": ("l",), "M": ("m",), "N": ("n",), "NG": ("ŋ",), "OW": ("o", "ʊ"), "OY": ("ɔ", "ɪ"), "P": ("p",),
    "R": ("ɹ",), "S": ("s",), "SH": ("ʃ",), "T": ("t",), "TH": ("θ",), "UH": ("ʊ",), "UW": ("uː",),
    "V": ("v",), "W": ("w",), "Y": ("j",), "Z": ("z",), "ZH": ("ʒ",),
}  # fmt: skip
# espeak's en-us IPA that the table above does not spell (it is read with length and stress marks removed).
_ESPEAK_ONLY = {
    "ʌ": "AH", "ɐ": "AH", "ᵻ": "IH", "i": "IY", "u": "UW", "ɜ": "ER", "ɑ": "AA", "ɔ": "AO", "ɒ": "AA",
    "o": "OW", "e": "EH", "a": "AA", "ɾ": "T", "ʔ": "T", "r": "R", "x": "K", "ɬ": "L", "ç": "HH",
}  # fmt: skip
# Without espeak-ng: one sound per letter, crude but enough to keep the alignment going.
_LETTERS = dict(zip("abcdefghijklmnopqrstuvwxyz",
                    "AE B K D EH F G HH IH JH K L M N AA P K R S T AH V W K Y Z".split()))  # fmt: skip

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*|\d+")


class AlignmentFailed(RuntimeError):
    """pocketsphinx found no path through the audio."""


@dataclass(frozen=True)
class _Timed:
    """A pocketsphinx phone (ARPAbet, SIL or a filler) from `start` to `end` seconds."""

    name: str
    start: float
    end: float


def audio_phones(samples: np.ndarray, duration: float, transcript: str | None = None) -> list[Phone]:
    """Phones covering [0, `duration`] of mono float32 `samples` at SAMPLE_RATE; silences are pauses.

    Forced alignment of `transcript` when there is one, the phone loop otherwise. Empty (the mouth follows
    loudness) for a transcript in another language, for audio without speech, and when anything fails.
    """
    try:
        timed = _timed_phones(samples, transcript)
    except AlignmentFailed as e:
        _LOGGER.warning("audio alignment failed (%s); the mouth follows loudness", e)
        return []
    except Exception:  # never fail a talk over its mouth: loudness drives it instead
        _LOGGER.warning("audio alignment broke; the mouth follows loudness", exc_info=True)
        return []
    phones = to_phones(timed, duration)
    return phones if sum(phone.symbol != PAUSE for phone in phones) >= MIN_SPEECH_PHONES else []


def _timed_phones(samples: np.ndarray, transcript: str | None) -> list[_Timed]:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    with _lock:
        if transcript is None:
            return _phone_loop(_decoder("phones"), pcm)
        decoder = _decoder("words")
        words = transcript_words(transcript)
        if not is_english(decoder, words):
            _LOGGER.info("transcript not in English: the mouth follows loudness")
            return []
        _add_pronunciations(decoder, words)
        return _forced(decoder, pcm, words)


_lock = threading.Lock()  # pocketsphinx decoders are not thread-safe; one talk at a time per process
_decoders: dict[str, Any] = {}


def _decoder(kind: str) -> Any:
    """The process's decoder for "words" (grammars of a transcript) or "phones" (the phone loop), loaded on
    first use (0.15 s; call with _lock held). Two decoders, as each search reads the weights once."""
    if kind not in _decoders:
        from pocketsphinx import Decoder, get_model_path

        settings = PHONE_LOOP_SETTINGS if kind == "phones" else ALIGNMENT_SETTINGS
        extra = {"allphone": get_model_path("en-us/en-us-phone.lm.bin")} if kind == "phones" else {}
        # no word LM (never needed); quiet, as failures are ours to report
        _decoders[kind] = Decoder(lm=None, **{"loglevel": "FATAL", **settings}, **extra)
    return _decoders[kind]


# -- the transcript -----------------------------------------------------------------------------------


def transcript_words(text: str) -> list[str]:
    """The words of `text` as CMUdict spells them: lower case, inner apostrophes kept, digits apart."""
    text = text.lower().replace("’", "'").replace("‘", "'")
    return _WORD.findall(text)


def is_english(decoder: Any, words: list[str]) -> bool:
    """Whether most of the transcript's words are in CMUdict (numbers do not count either way)."""
    lettered = [word for word in words if not word.isdigit()]
    if not lettered:
        return bool(words)
    known = sum(decoder.lookup_word(word) is not None for word in lettered)
    return known / len(lettered) >= MIN_ENGLISH_SHARE


def _add_pronunciations(decoder: Any, words: list[str]) -> None:
    """Gives the decoder a pronunciation for each word CMUdict lacks (numbers, names, jargon)."""
    missing = sorted({word for word in words if decoder.lookup_word(word) is None})
    for word in missing:
        decoder.add_word(word, " ".join(pronounce(word)), update=word == missing[-1])


def pronounce(word: str) -> list[str]:
    """ARPAbet for `word`: espeak-ng's English reading of it, or one sound per letter without espeak."""
    try:
        from talkmill_engine.speech import espeak_lib

        _, _, events = espeak_lib.synthesize(word, ESPEAK_VOICE)
        phones = [arpa for _, symbol in events for arpa in arpabet_of_ipa(symbol)]
    except Exception:  # noqa: BLE001 (espeak missing or refusing): letters will do
        _LOGGER.debug("espeak could not pronounce %r", word, exc_info=True)
        phones = []
    return phones or [_LETTERS[ch] for ch in word if ch in _LETTERS] or ["AH"]


def arpabet_of_ipa(symbol: str) -> list[str]:
    """ARPAbet for one espeak phoneme (e.g. "aɪ" → AY, "əl" → AH L), longest known spelling first;
    length and stress marks and combining marks (syllabic n̩) are ignored, unknown sounds dropped."""
    plain = "".join(ch for ch in symbol if ch not in (*STRESS_MARKS, "ː") and not _combining(ch))
    found, i = [], 0
    while i < len(plain):
        for size in (2, 1):
            if (arpa := _FROM_IPA.get(plain[i : i + size])) is not None:
                found.append(arpa)
                i += size
                break
        else:
            i += 1
    return found


def _combining(ch: str) -> bool:
    return unicodedata.category(ch).startswith("M")


_FROM_IPA = {**_ESPEAK_ONLY, **{"".join(ipa).replace("ː", ""): arpa for arpa, ipa in ARPABET.items()}}


# -- decoding, window by window -------------------------------------------------------------------------


def _forced(decoder: Any, pcm: np.ndarray, words: list[str]) -> list[_Timed]:
    """Forced alignment of `words`, one window at a time. Each window's grammar is the next words, any
    prefix of them accepted; the window is kept up to a pause (or word end) before its margin."""
    timed: list[_Timed] = []
    cursor, next_word = 0, 0
    while cursor < len(pcm) and next_word < len(words):
        end = _window_end(pcm, cursor)
        last = end == len(pcm)
        budget = words[next_word : next_word + MAX_WORDS_PER_SECOND * WINDOW_SECONDS]
        aligned = _align_window(decoder, pcm[cursor:end], budget)
        limit = (end - cursor) / SAMPLE_RATE - (0 if last else MARGIN_SECONDS)
        cut = limit if last else _cut(aligned, limit)
        offset = cursor / SAMPLE_RATE
        for word, phones in aligned:
            kept = [p for p in phones if p.start < cut]
            if word is not None and kept and kept[-1].end <= cut:
                next_word += 1
            timed += [_Timed(p.name, offset + p.start, offset + min(p.end, cut)) for p in kept]
        cursor += max(int(cut * SAMPLE_RATE), 1)
    return timed


def _window_end(pcm: np.ndarray, cursor: int) -> int:
    """The audio's end when it is near (no short last window); else the quietest moment of the last margin
    of a full window: a window cut inside a word has no path of the grammar to its end."""
    window, margin = WINDOW_SECONDS * SAMPLE_RATE, MARGIN_SECONDS * SAMPLE_RATE
    if len(pcm) - cursor <= window + margin:
        return len(pcm)
    return _quietest(pcm, cursor + window - margin, cursor + window)


def _quietest(pcm: np.ndarray, start: int, stop: int) -> int:
    """The sample in [start, stop) at the middle of its quietest 50 ms."""
    hop = SAMPLE_RATE // FRAMES_PER_SECOND
    frames = pcm[start : start + (stop - start) // hop * hop].astype(np.float64).reshape(-1, hop)
    energy = np.convolve((frames**2).mean(axis=1), np.ones(5), mode="same")
    return start + int(np.argmin(energy)) * hop + hop // 2


def _align_window(decoder: Any, pcm: np.ndarray, words: list[str]) -> list[tuple[str | None, list[_Timed]]]:
    """(word, its phones) in the window, a pause's word None; times from the window's start."""
    raw = pcm.tobytes()
    decoder.add_fsg("window", _prefix_grammar(decoder, words))
    decoder.activate_search("window")
    _decode(decoder, raw)
    if decoder.hyp() is None:
        raise AlignmentFailed("no path through the transcript's words")
    segments = [(s.word, s.start_frame, s.end_frame + 1) for s in decoder.seg()]
    try:
        return _phone_pass(decoder, raw)
    except RuntimeError:  # no path within the first pass's word frames: align the words found anew
        pass
    try:
        decoder.set_align_text(" ".join(word for word, _, _ in segments if not _is_filler(word)))
        _decode(decoder, raw)
        return _phone_pass(decoder, raw)
    except RuntimeError:  # still no path (odd voices): each word's phones spread over its frames
        _LOGGER.info("phone alignment failed in a window; its phones are spread over their words")
        return [_spread(decoder, *segment) for segment in segments]


def _phone_pass(decoder: Any, raw: bytes) -> list[tuple[str | None, list[_Timed]]]:
    """The second pass, after a word-level one: the phones of the words found (RuntimeError if none fit)."""
    decoder.set_alignment()
    _decode(decoder, raw)
    alignment = decoder.get_alignment()
    return [(None if _is_filler(word.name) else word.name, list(_entries(word))) for word in alignment]


def _spread(decoder: Any, word: str, start: int, end: int) -> tuple[str | None, list[_Timed]]:
    """A word's pronunciation spread evenly over its frames (a pause: one silence)."""
    if _is_filler(word):
        return None, [_frames("SIL", start, end)]
    names = (decoder.lookup_word(word) or "SIL").split()
    bounds = np.linspace(start, end, len(names) + 1)
    return word, [_frames(name, a, b) for name, a, b in zip(names, bounds[:-1], bounds[1:])]


def _prefix_grammar(decoder: Any, words: list[str]) -> Any:
    """The words in order, ending after any of them (the window may end mid-transcript). Each word also
    leads straight to the end: a null transition would show in the path as a word "(NULL)"."""
    final = len(words)
    transitions = [(i, i + 1, 0.9, word) for i, word in enumerate(words)]
    transitions += [(i, final, 0.1, word) for i, word in enumerate(words[:-1])]
    return decoder.create_fsg("window", 0, final, transitions)


def _cut(aligned: list[tuple[str | None, list[_Timed]]], limit: float) -> float:
    """Where to end a window: the middle of its last pause before `limit` if in the second half, else the
    end of the last word before it, else `limit` (no word ended: music or silence)."""
    pauses = [(p.start + p.end) / 2 for word, phones in aligned if word is None for p in phones]
    pauses = [t for t in pauses if t <= limit]
    if pauses and pauses[-1] >= limit / 2:
        return pauses[-1]
    ends = [phones[-1].end for word, phones in aligned if word is not None and phones]
    ends = [t for t in ends if t <= limit]
    return ends[-1] if ends else limit


def _phone_loop(decoder: Any, pcm: np.ndarray) -> list[_Timed]:
    """The most likely phones (the phone language model's), window by window."""
    timed: list[_Timed] = []
    window = WINDOW_SECONDS * SAMPLE_RATE
    for cursor in range(0, len(pcm), window):
        _decode(decoder, pcm[cursor : cursor + window].tobytes())
        offset = cursor / SAMPLE_RATE
        timed += [_frames(s.word, s.start_frame, s.end_frame + 1, offset) for s in decoder.seg()]
    return timed


def _decode(decoder: Any, raw: bytes) -> None:
    decoder.start_utt()
    decoder.process_raw(raw, full_utt=True)
    decoder.end_utt()


def _entries(word: Any) -> Iterator[_Timed]:
    for phone in word:
        yield _frames(phone.name, phone.start, phone.start + phone.duration)


def _frames(name: str, start: float, end: float, offset: float = 0.0) -> _Timed:
    offset += BOUNDARY_DELAY
    return _Timed(name, offset + start / FRAMES_PER_SECOND, offset + end / FRAMES_PER_SECOND)


def _is_filler(word: str) -> bool:
    """Silence, noise, sentence edges, and a null transition's "(NULL)": no word of the transcript."""
    return word.startswith(("<", "[", "+", "("))


# -- into the renderer's phones ---------------------------------------------------------------------------


def to_phones(timed: list[_Timed], duration: float) -> list[Phone]:
    """IPA-like phones covering [0, duration]: SIL, fillers and gaps are pauses, diphthongs two halves."""
    phones: list[Phone] = []
    for item in timed:
        start, end = min(item.start, duration), min(item.end, duration)
        if start > _end(phones):
            append_phone(phones, Phone(PAUSE, _end(phones), start))
        symbols = ARPABET.get(item.name, (PAUSE,))
        step = (end - start) / len(symbols)
        for i, symbol in enumerate(symbols):
            append_phone(phones, Phone(symbol, start, start + step * (i + 1)))  # starts where the last ended
    if _end(phones) < duration:
        append_phone(phones, Phone(PAUSE, _end(phones), duration))
    return end_at(phones, duration)


def _end(phones: list[Phone]) -> float:
    return phones[-1].end if phones else 0.0
