"""The speech engines, in order of preference: a locale is served by the first engine that speaks its
language. A new engine is one module defining `ENGINE = SpeechEngine(...)`, and one entry here."""

from __future__ import annotations

from talkmill_engine.speech import espeak_ng, kokoro, piper_joe
from talkmill_engine.speech.base import SpeechEngine, Voice

ENGINES: tuple[SpeechEngine, ...] = (
    kokoro.ENGINE,  # neural, 54 voices: English, Spanish, French, Hindi, Italian, Portuguese (+ ja, zh)
    piper_joe.ENGINE,  # neural English joe, by its id en-US-joe (Kokoro serves English locales first)
    espeak_ng.ENGINE,  # every other language espeak-ng speaks
)


def engine_of(voice: Voice) -> SpeechEngine:
    for engine in ENGINES:
        if engine.name == voice.engine:
            return engine
    raise ValueError(f"unknown voice engine {voice.engine!r}")
