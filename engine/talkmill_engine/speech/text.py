"""The text a speech engine is given: SSML reduced to its text, and text cut into pieces short enough to
speak. SSML tags are dropped, a <break> becomes a pause, and prosody inside the markup is not applied (use
voice_config instead)."""

from __future__ import annotations

import html
import re

# A neural model's memory grows with the length of one run (piper joe ~1 MB a character), and while a talk
# streams it adds to the renderer's and x264's: a 60-s Kokoro talk peaked at 634 MB in pieces of 160
# characters, 545 MB in pieces of 120 (issue 11: 600 MB); longer sentences are cut at clauses, where a
# pause is natural (a cut after "bugs," pauses 0.36 s, the sentence's own comma 0.29 s).
MAX_CHUNK_CHARS = 120

# Chinese and Japanese put no space after a full stop or comma: their marks end a piece by themselves.
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？])\s*")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+|(?<=[、，；])\s*")
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
