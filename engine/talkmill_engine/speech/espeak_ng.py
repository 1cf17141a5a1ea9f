"""espeak-ng's voices (about 130, many languages), ids "<language>-espeak" (e.g. "de-espeak", "en-GB-espeak",
"pt-BR-espeak"); timings from the library's phoneme events (espeak_lib, through ctypes)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from talkmill_engine.speech import espeak_lib
from talkmill_engine.speech.base import SpeechEngine, Voice, bcp47
from talkmill_engine.speech.stream import Piece, SpeechStream
from talkmill_engine.speech.timing import PAUSE, STRESS_MARKS, Phone, append_phone, end_at
from talks_contract.voices import Prosody

_LOGGER = logging.getLogger(__name__)


def list_voices() -> list[Voice]:
    """The installed espeak-ng voices, in the library's order; none when libespeak-ng is missing."""
    try:
        infos = espeak_lib.list_voices()
    except espeak_lib.EspeakUnavailable as e:
        _LOGGER.warning("espeak-ng voices unavailable: %s", e)
        return []
    voices: list[Voice] = []
    taken: set[str] = set()
    for info in infos:
        voice = _voice(info, taken)
        taken.add(voice.id)
        voices.append(voice)
    return voices


def _voice(info: espeak_lib.EspeakVoiceInfo, taken: set[str]) -> Voice:
    language = bcp47(info.languages[0] if info.languages else info.identifier.rsplit("/", 1)[-1])
    voice_id = f"{language}-espeak"
    if voice_id in taken:  # two voices of one language (Cantonese): name it by its voice file instead
        voice_id = f"{bcp47(info.identifier.rsplit('/', 1)[-1])}-espeak"
    languages = tuple(code.lower() for code in info.languages)
    name = f"{info.name} (espeak-ng)"
    return Voice(voice_id, name, language, info.gender, "espeak", info.identifier, languages)


def speak(text: str, voice: Voice, prosody: Prosody) -> SpeechStream:
    """The whole text as one piece: espeak-ng speaks ~50x faster than real time."""
    return SpeechStream(espeak_lib.sample_rate(), _spoken(text, voice, prosody))


def _spoken(text: str, voice: Voice, prosody: Prosody) -> Iterator[Piece]:
    rate = espeak_lib.DEFAULT_RATE * prosody.rate
    pitch = espeak_lib.DEFAULT_PITCH * prosody.pitch
    samples, sample_rate, events = espeak_lib.synthesize(text, str(voice.engine_voice), round(rate), round(pitch))
    yield samples, phones_from_events(events, len(samples) / sample_rate)


def phones_from_events(events: list[tuple[float, str]], duration: float) -> list[Phone]:
    """Each phoneme event lasts until the next one; silence before the first one is a pause."""
    phones: list[Phone] = []
    starts = [min(start, duration) for start, _ in events] + [duration]
    starts = np.maximum.accumulate(starts).tolist()  # never step back in time
    append_phone(phones, Phone(PAUSE, 0.0, starts[0]))
    for i, (_, symbol) in enumerate(events):
        symbol = "".join(ch for ch in symbol if ch not in STRESS_MARKS)
        append_phone(phones, Phone(symbol if symbol.strip() else PAUSE, starts[i], starts[i + 1]))
    if not phones and duration > 0:
        phones.append(Phone(PAUSE, 0.0, duration))
    return end_at(phones, duration)


ENGINE = SpeechEngine("espeak", list_voices, speak)
