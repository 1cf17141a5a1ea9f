"""Text → the phoneme string Kokoro-82M reads, its token ids, and the IPA of each token (for timings).

Kokoro v1.0 was trained on misaki's G2P (hexgrad/misaki 0.9.4, Apache-2.0, `misaki/espeak.py`): espeak-ng
IPA with "^" joining the letters of one phoneme, rewritten into misaki's own letters (A = eɪ, I = aɪ,
O = oʊ, ʧ = tʃ …). We do the same with espeak-ng through espeak_lib. For English misaki looks words up in
its lexicon first (a spaCy model, which would download at run time); we use its espeak-ng rules for every
word, as kokoro-onnx does. Japanese and Chinese have their own front ends (kokoro_cjk).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from talkmill_engine.speech import espeak_lib

# Kokoro-82M's token ids (hexgrad/Kokoro-82M config.json "vocab", as kokoro-onnx 0.6.1, MIT, ships it).
# Id 0 is the pad that starts and ends every input; a character outside the vocabulary is dropped.
VOCAB: dict[str, int] = {
    ";": 1, ":": 2, ",": 3, ".": 4, "!": 5, "?": 6, "—": 9, "…": 10, '"': 11, "(": 12, ")": 13, "“": 14,
    "”": 15, " ": 16, "\u0303": 17, "ʣ": 18, "ʥ": 19, "ʦ": 20, "ʨ": 21, "ᵝ": 22, "ꭧ": 23, "A": 24, "I": 25,
    "O": 31, "Q": 33, "S": 35, "T": 36, "W": 39, "Y": 41, "ᵊ": 42, "a": 43, "b": 44, "c": 45, "d": 46,
    "e": 47, "f": 48, "h": 50, "i": 51, "j": 52, "k": 53, "l": 54, "m": 55, "n": 56, "o": 57, "p": 58,
    "q": 59, "r": 60, "s": 61, "t": 62, "u": 63, "v": 64, "w": 65, "x": 66, "y": 67, "z": 68, "ɑ": 69,
    "ɐ": 70, "ɒ": 71, "æ": 72, "β": 75, "ɔ": 76, "ɕ": 77, "ç": 78, "ɖ": 80, "ð": 81, "ʤ": 82, "ə": 83,
    "ɚ": 85, "ɛ": 86, "ɜ": 87, "ɟ": 90, "ɡ": 92, "ɥ": 99, "ɨ": 101, "ɪ": 102, "ʝ": 103, "ɯ": 110,
    "ɰ": 111, "ŋ": 112, "ɳ": 113, "ɲ": 114, "ɴ": 115, "ø": 116, "ɸ": 118, "θ": 119, "œ": 120, "ɹ": 123,
    "ɾ": 125, "ɻ": 126, "ʁ": 128, "ɽ": 129, "ʂ": 130, "ʃ": 131, "ʈ": 132, "ʧ": 133, "ʊ": 135, "ʋ": 136,
    "ʌ": 138, "ɣ": 139, "ɤ": 140, "χ": 142, "ʎ": 143, "ʒ": 147, "ʔ": 148, "ˈ": 156, "ˌ": 157, "ː": 158,
    "ʰ": 162, "ʲ": 164, "↓": 169, "→": 171, "↗": 172, "↘": 173, "ᵻ": 177,
}  # fmt: skip
MAX_TOKENS = 510  # the model's context, pads excluded (its style vectors are indexed by token count)

# misaki's letters back to IPA, for the phone timings the renderer reads (visemes are keyed by IPA).
_IPA_OF = {"A": "eɪ", "I": "aɪ", "O": "oʊ", "Q": "əʊ", "W": "aʊ", "Y": "ɔɪ", "ʧ": "tʃ", "ʤ": "dʒ", "ʦ": "ts",
           "ʣ": "dz", "ʨ": "tɕ", "ʥ": "dʑ", "ꭧ": "ʈʂ", "S": "s", "T": "ɾ", "ᵊ": "ə", "ᵻ": "ɨ"}  # fmt: skip

# espeak-ng IPA → misaki's, English (misaki EspeakFallback.E2M), longest first.
_ENGLISH = sorted({
    "ʔˌn\u0329": "ʔn", "ʔn\u0329": "ʔn", "a^ɪ": "I", "a^ʊ": "W", "d^ʒ": "ʤ", "e^ɪ": "A", "e": "A",
    "t^ʃ": "ʧ", "ɔ^ɪ": "Y", "ə^l": "ᵊl", "ʲo": "jo", "ʲə": "jə", "ʲ": "", "ɚ": "əɹ", "r": "ɹ", "x": "k",
    "ç": "k", "ɐ": "ə", "ɬ": "l", "\u0303": "",
}.items(), key=lambda pair: -len(pair[0]))  # fmt: skip
_AMERICAN = (("o^ʊ", "O"), ("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ɪə", "iə"), ("ː", ""))
_BRITISH = (("e^ə", "ɛː"), ("iə", "ɪə"), ("ə^ʊ", "Q"))
# espeak-ng IPA → misaki's, other languages (misaki EspeakG2P.e2m), in misaki's (sorted) order.
_OTHER = sorted({
    "a^ɪ": "I", "a^ʊ": "W", "d^z": "ʣ", "d^ʒ": "ʤ", "e^ɪ": "A", "o^ʊ": "O", "ə^ʊ": "Q", "s^s": "S",
    "t^s": "ʦ", "t^ʃ": "ʧ", "ɔ^ɪ": "Y",
}.items())  # fmt: skip

_MARKS = ';:,.!?¡¿—…"«»“”()'
# Punctuation that is not inside a word or number ("3.5", "e.g" keep their dots).
_PUNCTUATION = re.compile(rf"(?:(?<!\w)[{_MARKS}]+|[{_MARKS}]+(?!\w))")
_OPENS = set("¡¿«“(")
_OPENING = set('“("')  # as Kokoro writes them (« becomes “, ¡¿ are dropped): no space follows
_SPOKEN_MARKS = {"«": "“", "»": "”", "¡": "", "¿": ""}  # what Kokoro has for marks it lacks
_LANGUAGE_FLAG = re.compile(r"\([^()]*\)")  # espeak-ng's "(en)" … "(fr)" around a switch of language


@dataclass(frozen=True)
class EspeakLanguage:
    voice: str  # espeak-ng's voice file
    english: str | None = None  # "us" | "gb": misaki's English rules; None: its rules for other languages


# The languages Kokoro speaks through espeak-ng (as hexgrad's KPipeline: a/b English, e/f/h/i/p).
ESPEAK_LANGUAGES = {
    "en-us": EspeakLanguage("gmw/en-US", "us"),
    "en-gb": EspeakLanguage("gmw/en", "gb"),
    "es": EspeakLanguage("roa/es"),
    "fr": EspeakLanguage("roa/fr"),
    "hi": EspeakLanguage("inc/hi"),
    "it": EspeakLanguage("roa/it"),
    "pt-br": EspeakLanguage("roa/pt-BR"),
}


def phonemize(text: str, language: str) -> str:
    """Kokoro's phonemes for `text` in one of ESPEAK_LANGUAGES: words as espeak-ng speaks them, rewritten
    as misaki does, the punctuation kept where it was (it shapes the model's pauses and intonation)."""
    spec = ESPEAK_LANGUAGES[language]
    out, position = "", 0
    for match in _PUNCTUATION.finditer(text):
        out = _join(out, _words(text[position : match.start()], spec))
        out = _add_marks(out, match.group(), _opens(text, match))
        position = match.end()
    out = _join(out, _words(text[position:], spec))
    return "".join(ch for ch in out.strip() if ch in VOCAB)


def _words(text: str, spec: EspeakLanguage) -> str:
    if not text.strip():
        return ""
    raw = " ".join(espeak_lib.text_to_phonemes(text, spec.voice))
    raw = _LANGUAGE_FLAG.sub("", raw)
    return _english(raw, spec.english) if spec.english else _other(raw)


def _english(ps: str, accent: str) -> str:
    for old, new in _ENGLISH:
        ps = ps.replace(old, new)
    ps = re.sub(r"(\S)\u0329", r"ᵊ\1", ps).replace("\u0329", "")
    for old, new in _BRITISH if accent == "gb" else _AMERICAN:
        ps = ps.replace(old, new)
    ps = ps.replace("o", "ɔ")  # misaki: "for espeak < 1.52"
    ps = ps.replace("ɾ", "T").replace("ʔ", "t")
    return ps.replace("^", "")


def _other(ps: str) -> str:
    for old, new in _OTHER:
        ps = ps.replace(old, new)
    return ps.replace("^", "").replace("-", "")


def _opens(text: str, match: re.Match[str]) -> bool:
    """Whether marks open what follows: "(", "¿", "«", "“" do; a '"' does when a word follows it, not one
    before it."""
    if match.group()[0] in _OPENS:
        return True
    if match.group()[0] != '"':
        return False
    before = text[match.start() - 1] if match.start() else " "
    after = text[match.end()] if match.end() < len(text) else " "
    return before.isspace() and not after.isspace()


def _join(out: str, words: str) -> str:
    words = " ".join(words.split())
    if not words:
        return out
    return out + words if not out or out.endswith(" ") or out[-1] in _OPENING else f"{out} {words}"


def _add_marks(out: str, marks: str, opening: bool) -> str:
    """Closing marks follow the word before them, then a space; opening ones stand before the next word."""
    marks = "".join(_SPOKEN_MARKS.get(mark, mark) for mark in marks)
    if opening:
        return f"{out.rstrip()} {marks}".lstrip()
    return (out.rstrip() + marks + " ") if marks else out


def tokens_of(phonemes: str) -> list[int]:
    return [VOCAB[ch] for ch in phonemes if ch in VOCAB]


def ipa_of(token: str) -> str:
    """The IPA a token stands for (misaki's letters spelled out; others are IPA already)."""
    return _IPA_OF.get(token, token)
