"""Japanese and Mandarin text → Kokoro's phonemes. Each front end is imported on first use (~100 MB each),
and only where it is installed (pyopenjtalk-plus, misaki[zh]: both bundle their dictionaries).

Japanese: OpenJTalk (pyopenjtalk-plus) reads the text into words of katakana; each mora becomes IPA as
misaki's Japanese G2P wrote it for Kokoro v1.0 (hexgrad/misaki, Apache-2.0: ɕi, ʦɨ, ɽa, ɴ, ʔ, ː …), a
space between accent phrases. Mandarin: misaki's own ZHG2P (jieba words, pypinyin, tones as ↓→↗↘).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from importlib.util import find_spec
from typing import Any

_FRONT_ENDS = {"ja": ("pyopenjtalk",), "zh": ("misaki", "jieba", "pypinyin", "cn2an")}
_lock = threading.Lock()  # OpenJTalk and jieba keep global state


def available(language: str) -> bool:
    """Whether the front end of `language` ("ja", "zh") is installed (looked for, not imported)."""
    return all(find_spec(module) is not None for module in _FRONT_ENDS.get(language, ("-",)))


def phonemize(text: str, language: str) -> str:
    with _lock:
        return japanese(text) if language == "ja" else mandarin(text)


# --- Mandarin ---------------------------------------------------------------------------------------------


def mandarin(text: str) -> str:
    phonemes, _ = _mandarin_g2p()(text)
    return phonemes


@lru_cache(maxsize=1)
def _mandarin_g2p() -> Any:
    import logging

    import jieba
    from misaki import zh

    jieba.setLogLevel(logging.WARNING)  # it announces building its word index on stderr otherwise
    return zh.ZHG2P()  # version None: the G2P Kokoro v1.0's Mandarin voices were trained with


# --- Japanese ---------------------------------------------------------------------------------------------

# Katakana → IPA, row by row (vowels a i u e o; gaps where a row has no kana).
_ROWS = {
    "アイウエオ": "a i ɯ e o", "カキクケコ": "ka ki kɯ ke ko", "ガギグゲゴ": "ɡa ɡi ɡɯ ɡe ɡo",
    "サシスセソ": "sa ɕi sɨ se so", "ザジズゼゾ": "za ʥi zɨ ze zo", "タチツテト": "ta ʨi ʦɨ te to",
    "ダヂヅデド": "da ʥi ʥɨ de do", "ナニヌネノ": "na ɲi nɯ ne no", "ハヒフヘホ": "ha çi ɸɯ he ho",
    "バビブベボ": "ba bi bɯ be bo", "パピプペポ": "pa pi pɯ pe po", "マミムメモ": "ma mi mɯ me mo",
    "ヤユヨ": "ja jɯ jo", "ラリルレロ": "ɽa ɽi ɽɯ ɽe ɽo", "ワヰヱヲ": "βa i e o", "ヴ": "vɯ",
    "ァィゥェォ": "a i ɯ e o", "ャュョヮ": "ja jɯ jo βa", "ヵヶ": "ka ke", "ンッー": "ɴ ʔ ː",
}  # fmt: skip
KANA = {kana: ipa for row, ipas in _ROWS.items() for kana, ipa in zip(row, ipas.split())}
_SMALL_VOWELS = {"ァ": "a", "ィ": "i", "ゥ": "ɯ", "ェ": "e", "ォ": "o", "ャ": "a", "ュ": "ɨ", "ョ": "o"}
_PALATAL = set("ɕʨʥɲç")  # consonants that are palatal already: シャ is ɕa, not ɕʲa
_PUNCTUATION = {"、": ",", "。": ".", "！": "!", "？": "?", "：": ":", "；": ";", "「": "“", "」": "”",
                "『": "“", "』": "”", "（": "(", "）": ")", "…": "…", "・": " ", "!": "!", "?": "?"}  # fmt: skip


def japanese(text: str) -> str:
    import pyopenjtalk

    out = ""
    for word in pyopenjtalk.run_frontend(text):
        surface = word["string"]
        if surface in _PUNCTUATION:
            out = _add_mark(out, _PUNCTUATION[surface])
            continue
        moras = kana_to_ipa(word["pron"])
        if moras:  # a new accent phrase starts a new "word" for the model
            joined = word["chain_flag"] == 1 or not out or out.endswith((" ", "“", "("))
            out += moras if joined else " " + moras
    return " ".join(out.split())


def _add_mark(out: str, mark: str) -> str:
    """Opening marks stand before the next word, the others follow the word before them."""
    if mark in "“(":
        return f"{out.rstrip()} {mark}".lstrip()
    return out.rstrip() + mark + " "


def kana_to_ipa(pron: str) -> str:
    """ "キョー" → "kʲoː"; characters that are not katakana (OpenJTalk's accent mark ’) are skipped."""
    out: list[str] = []
    previous = ""
    for kana in pron:
        if kana in _SMALL_VOWELS and previous in KANA:
            out[-1] = _combined(previous, kana)
        elif kana in KANA:
            out.append(KANA[kana])
        previous = kana
    return "".join(out)


def _combined(base: str, small: str) -> str:
    """A mora with a small kana: キャ kʲa, シュ ɕɨ, ファ ɸa, ティ ti, ウィ βi, イェ je, クァ kᵝa."""
    consonant, vowel = KANA[base][:-1], _SMALL_VOWELS[small]
    if base == "ウ":
        return "β" + vowel
    if base == "イ":
        return "j" + vowel
    if not consonant:
        return KANA[base] + KANA[small]
    if base in "クグ" and small in "ァィェォ":
        return consonant + "ᵝ" + vowel
    if small in "ャュョ" and consonant[-1] not in _PALATAL:
        return consonant + "ʲ" + vowel
    if small not in "ャュョ":
        vowel = KANA[small]  # ファ, ティ, トゥ: the plain vowel
    return consonant + vowel
