"""Captions of a talk: the script's words timed from the Speech's phones, grouped into cues, as WebVTT
and SRT.

Engines give phones, not words, and pause in different places (piper between every word, Kokoro only at
punctuation, pocketsphinx where it hears silence), and a number is spoken as several words. Where the
engine pauses between words, words are matched to the runs of phones between pauses (dynamic
programming on lengths); elsewhere they are laid over the voiced phones in proportion to their expected
length, re-estimated after each word, a clause's last word ending at the nearest pause. Every word lands
in order, inside the audio, however the engine spoke it. Pure: no files, no models.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

from talkmill_engine.speech.timing import PAUSE, Phone, Speech

MAX_LINE_CHARS = 42
MAX_LINES = 2
MAX_CUE_SECONDS = 7.0
MIN_CUE_SECONDS = 1.0  # a short cue stays up this long when the next one leaves room: time to read it
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*$")
_CLAUSE_END = re.compile(r"([,;:、，；]|[—–-]{1,2})[\"'”’)\]]*$")
_SYMBOLS_SPOKEN = set("%&$€£@+=#°")  # each is read as a word or two
WORD_PAUSES_PER_WORD = 0.6  # more pauses than this per word boundary: the engine pauses between words


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]


@dataclass(frozen=True)
class TimedWord:
    text: str
    start: float
    end: float


def cues_from_speech(speech: Speech, text: str) -> list[Cue]:
    """The cues of `text` (the plain text that was spoken) timed from `speech.phones`; [] without phones."""
    return group_cues(time_words(speech.phones, text.split()), speech.duration)


def time_words(phones: list[Phone], words: list[str]) -> list[TimedWord]:
    """Each word's start and end, from the phones, in order; [] without words or voiced phones."""
    voiced = [phone for phone in phones if phone.symbol != PAUSE]
    if not words or not voiced:
        return []
    gaps = _pause_gaps(phones)
    weights = [_expected_phones(word) for word in words]
    if len(words) > 1 and len(gaps) >= WORD_PAUSES_PER_WORD * (len(words) - 1):
        spans = align_to_groups(weights, [0, *gaps, len(voiced)])
        if spans is not None:
            return [_timed(voiced, word, start, end) for word, (start, end) in zip(words, spans)]
    return _spread(voiced, words, weights, gaps)


def _spread(voiced: list[Phone], words: list[str], weights: list[float], gaps: list[int]) -> list[TimedWord]:
    """Words laid over the voiced phones by expected length, re-estimated after each word; a word ending a
    clause ends at the nearest pause (engines that pause only at punctuation)."""
    timed, cursor, left = [], 0.0, sum(weights)
    for i, word in enumerate(words):
        remaining = len(words) - i - 1
        scale = (len(voiced) - cursor) / left
        end = _word_end(cursor, weights[i] * scale, gaps, len(voiced), remaining, _wants_pause(word))
        timed.append(_timed(voiced, word, cursor, end))
        cursor, left = end, max(left - weights[i], 1e-6)
    return timed


def align_to_groups(weights: list[float], edges: list[int]) -> list[tuple[float, float]] | None:
    """For engines that pause between words: words matched to the runs of phones between pauses (edges, in
    voiced phones), one word to one or more runs (a number read as words) or a few words to one run, by
    dynamic programming on how well each run's length fits its words'. Each word's span in voiced phones;
    None when no path stays within the band (the caller spreads the words instead)."""
    scale = edges[-1] / sum(weights)
    prefix = [0.0]
    for weight in weights:
        prefix.append(prefix[-1] + weight * scale)
    best: list[dict[int, tuple[float, tuple[int, int] | None]]] = [{} for _ in range(len(weights) + 1)]
    best[0][0] = (0.0, None)
    for i in range(len(weights)):
        for j, (cost, _) in best[i].items():
            for words, groups in _MOVES:
                if i + words <= len(weights) and j + groups < len(edges):
                    n = edges[j + groups] - edges[j]
                    step = _misfit(n, prefix[i + words] - prefix[i]) + _MOVE_COST[(words, groups)]
                    _relax(best, i + words, j + groups, cost + step, (i, j), edges, prefix)
    if len(edges) - 1 not in best[-1]:
        return None
    return _spans(best, weights, edges, scale)


_MOVES = ((1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (3, 1))  # (words, runs) per step
_MOVE_COST = {(1, 1): 0.0, (1, 2): 0.4, (1, 3): 0.8, (1, 4): 1.2, (2, 1): 0.6, (3, 1): 1.2}
BAND_PHONES = 40  # a path this far (in phones) from where the words' expected lengths put it is dropped


def _misfit(found: float, expected: float) -> float:
    return 2.0 * math.log((found + 1) / (expected + 1)) ** 2


def _relax(best, i, j, cost, back, edges, prefix) -> None:  # type: ignore[no-untyped-def]
    if abs(edges[j] - prefix[i]) > BAND_PHONES:
        return
    if j not in best[i] or cost < best[i][j][0]:
        best[i][j] = (cost, back)


def _spans(best, weights, edges, scale) -> list[tuple[float, float]]:  # type: ignore[no-untyped-def]
    """The words' spans along the best path, back from the end; words sharing a run share it by weight."""
    spans: list[tuple[float, float]] = []
    i, j = len(weights), len(edges) - 1
    while best[i][j][1] is not None:
        pi, pj = best[i][j][1]
        start, end = float(edges[pj]), float(edges[j])
        share = (end - start) / sum(weights[pi:i])
        for k in range(i - 1, pi - 1, -1):
            stop = start + share * sum(weights[pi : k + 1])
            spans.append((stop - share * weights[k], stop))
        i, j = pi, pj
    return spans[::-1]


def _timed(voiced: list[Phone], word: str, start: float, end: float) -> TimedWord:
    return TimedWord(word, _time_at(voiced, start, "start"), _time_at(voiced, end, "end"))


def _pause_gaps(phones: list[Phone]) -> list[int]:
    """The positions (counted in voiced phones before them) where a pause sits between two voiced phones."""
    gaps, count = [], 0
    for previous, phone in zip(phones, phones[1:]):
        count += previous.symbol != PAUSE
        if phone.symbol == PAUSE and previous.symbol != PAUSE:
            gaps.append(count)
    total = sum(phone.symbol != PAUSE for phone in phones)
    return [gap for gap in gaps if 0 < gap < total]


def _expected_phones(word: str) -> float:
    """Roughly how many phones `word` is spoken with: a letter ~0.85, a digit ~3.5 (numbers are read out)."""
    letters = sum(ch.isalpha() for ch in word)
    digits = sum(ch.isdigit() for ch in word)
    symbols = sum(ch in _SYMBOLS_SPOKEN for ch in word)
    return max(0.85 * letters + 3.5 * digits + 4.0 * symbols, 0.3)


def _wants_pause(word: str) -> bool:
    return bool(_SENTENCE_END.search(word) or _CLAUSE_END.search(word))


def _word_end(
    cursor: float, expected: float, gaps: list[int], total: int, remaining: int, snap: bool
) -> float:
    """Where a word starting at `cursor` ends, in voiced phones: at the pause nearest its expected end if it
    should end at one, else at the expected end; always leaving room for the words after it."""
    latest = total - 0.2 * remaining
    if remaining == 0:
        return float(total)
    target = cursor + expected
    if snap:
        window = [g for g in gaps if cursor + 0.3 * expected <= g <= target + max(1.5 * expected, 6.0)]
        if window:
            target = min(window, key=lambda g: abs(g - target))
    return min(max(target, cursor + 0.2), latest)


def _time_at(voiced: list[Phone], position: float, side: str) -> float:
    """The time at a position counted in voiced phones; a whole position is the edge between two phones:
    a word starting there starts with the next phone, one ending there ends with the previous one."""
    index = int(position)
    fraction = position - index
    if fraction < 1e-9:
        if side == "end" and index > 0:
            return voiced[index - 1].end
        return voiced[min(index, len(voiced) - 1)].start if index < len(voiced) else voiced[-1].end
    phone = voiced[min(index, len(voiced) - 1)]
    return phone.start + fraction * (phone.end - phone.start)


def group_cues(words: list[TimedWord], duration: float) -> list[Cue]:
    """Cues of at most MAX_LINES lines of MAX_LINE_CHARS and MAX_CUE_SECONDS: whole sentences while they
    fit, a sentence too long split at clauses, then between words, into halves as even as can be."""
    groups = _pack([piece for sentence in _sentences(words) for piece in _fit(sentence)])
    cues = []
    for i, group in enumerate(groups):
        start = group[0].start
        following = groups[i + 1][0].start if i + 1 < len(groups) else duration
        end = min(max(group[-1].end, start + MIN_CUE_SECONDS), following, start + MAX_CUE_SECONDS, duration)
        cues.append(Cue(round(start, 3), round(max(end, start), 3), wrap([w.text for w in group])))
    return cues


def _sentences(words: list[TimedWord]) -> list[list[TimedWord]]:
    """Split after a word ending a sentence, unless it is an abbreviation or the next word goes on in
    lower case."""
    pieces: list[list[TimedWord]] = [[]]
    for word, following in zip(words, [*words[1:], None]):
        pieces[-1].append(word)
        if following is None or _ends_sentence(word.text, following.text):
            pieces.append([])
    return [piece for piece in pieces if piece]


def _ends_sentence(word: str, following: str) -> bool:
    if not _SENTENCE_END.search(word) or word.lower().strip("\"'”’)]") in _ABBREVIATIONS:
        return False
    return not following[:1].islower()


_ABBREVIATIONS = {"dr.", "mr.", "mrs.", "ms.", "st.", "prof.", "e.g.", "i.e.", "etc.", "vs.", "no.", "fig."}


def _pack(groups: list[list[TimedWord]]) -> list[list[TimedWord]]:
    """Neighbouring groups joined while the join fits one cue (short sentences share a cue)."""
    packed: list[list[TimedWord]] = []
    for group in groups:
        if packed and _ends_sentence(packed[-1][-1].text, group[0].text) and _fits(packed[-1] + group):
            packed[-1] = packed[-1] + group
        else:
            packed.append(group)
    return packed


def _fit(words: list[TimedWord]) -> list[list[TimedWord]]:
    """`words` as cues that fit: whole if they do, else cut in two at the clause boundary nearest the middle
    (any word boundary when there is no clause boundary), each half cut again until it fits."""
    if len(words) == 1 or _fits(words):
        return [words]
    clauses = [i + 1 for i, word in enumerate(words[:-1]) if _CLAUSE_END.search(word.text)]
    cuts = clauses or list(range(1, len(words)))
    before = list(itertools.accumulate((len(word.text) + 1 for word in words), initial=0))
    cut = min(cuts, key=lambda i: abs(before[i] - before[-1] / 2))
    return _fit(words[:cut]) + _fit(words[cut:])


def _fits(words: list[TimedWord]) -> bool:
    if sum(len(word.text) + 1 for word in words) > MAX_LINES * (MAX_LINE_CHARS + 1):
        return False  # too long for any wrapping (and wrapping a long text is slow)
    lines = wrap([word.text for word in words])
    fits_lines = len(lines) <= MAX_LINES and all(len(line) <= MAX_LINE_CHARS for line in lines)
    return fits_lines and words[-1].end - words[0].start <= MAX_CUE_SECONDS


def wrap(words: list[str]) -> tuple[str, ...]:
    """One line if it fits, else two lines broken where the longer one is shortest (balanced), else lines
    filled greedily (a group too long for two lines: the caller splits it)."""
    one = " ".join(words)
    if len(one) <= MAX_LINE_CHARS or len(words) == 1:
        return (one,)
    splits = [(" ".join(words[:i]), " ".join(words[i:])) for i in range(1, len(words))]
    best = min(splits, key=lambda pair: max(len(pair[0]), len(pair[1])))
    if max(len(best[0]), len(best[1])) <= MAX_LINE_CHARS:
        return best
    lines = [words[0]]
    for word in words[1:]:
        if len(lines[-1]) + 1 + len(word) <= MAX_LINE_CHARS:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return tuple(lines)


def to_vtt(cues: list[Cue]) -> str:
    """WebVTT: a header, then each cue's number, times (hh:mm:ss.mmm) and lines; & < > escaped."""
    blocks = ["WEBVTT\n"]
    for number, cue in enumerate(cues, 1):
        lines = "\n".join(_vtt_escape(line) for line in cue.lines)
        blocks.append(f"{number}\n{_stamp(cue.start, '.')} --> {_stamp(cue.end, '.')}\n{lines}\n")
    return "\n".join(blocks)


def to_srt(cues: list[Cue]) -> str:
    """SubRip: each cue's number, times (hh:mm:ss,mmm) and lines."""
    blocks = []
    for number, cue in enumerate(cues, 1):
        lines = "\n".join(cue.lines)
        blocks.append(f"{number}\n{_stamp(cue.start, ',')} --> {_stamp(cue.end, ',')}\n{lines}\n")
    return "\n".join(blocks)


def _vtt_escape(line: str) -> str:
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _stamp(seconds: float, decimal: str) -> str:
    millis = int(round(max(seconds, 0.0) * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{decimal}{rest % 1000:03d}"
