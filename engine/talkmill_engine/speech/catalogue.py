"""Every voice the registered speech engines offer, and the local voice that serves a request.

A request (talks_contract.voices.VoiceRequest) names a talkmill voice by id, a locale (Microsoft, Google
and Polly voices: the engine holds no credentials for them, so the closest local voice of the same language
speaks, of the same gender where the request's is known and the engine has one), or an opaque
multilingual voice (ElevenLabs), which a DEFAULT_LOCALE voice of its gender serves.
"""

from __future__ import annotations

from functools import lru_cache

from talkmill_engine.errors import ValidationError, invalid
from talkmill_engine.speech.base import SpeechEngine, Voice, bcp47
from talkmill_engine.speech.registry import ENGINES
from talks_contract.voices import OWN_PROVIDER, VoiceRequest, parse_voice_request

DEFAULT_LOCALE = "en-US"  # serves opaque, multilingual voice ids (ElevenLabs')
# Locales whose voice is not found by the language subtag alone.
_LOCALE_ALIASES = {"zh-hk": "yue", "zh-mo": "yue", "no": "nb", "nn": "nb"}


def list_voices() -> list[Voice]:
    """Every engine's voices, in registry order (listed once per process)."""
    return [voice for _, voices in _voices_by_engine() for voice in voices]


@lru_cache(maxsize=1)
def _voices_by_engine() -> tuple[tuple[SpeechEngine, tuple[Voice, ...]], ...]:
    return tuple((engine, tuple(engine.list_voices())) for engine in ENGINES)


def resolve_voice(provider: dict | None, field: str = "script.provider") -> Voice:
    """The local voice serving a request's `script.provider` (None: D-ID's default). Raises the contract's
    ContractViolation for a provider the contract refuses, ValidationError for one no local voice serves."""
    return local_voice(parse_voice_request(provider, field), field)


def local_voice(request: VoiceRequest, field: str = "script.provider") -> Voice:
    id_field = f"{field}.voice_id"
    if request.provider == OWN_PROVIDER:
        return voice_by_id(request.voice_id, id_field)
    return voice_for_language(request.locale or DEFAULT_LOCALE, id_field, request.gender)


def voice_by_id(voice_id: str, field: str = "script.provider.voice_id") -> Voice:
    voices = list_voices()
    for voice in voices:
        if voice.id == voice_id:
            return voice
    raise invalid(field, f"unknown talkmill voice {voice_id!r}", [voice.id for voice in voices])


def voice_for_language(
    locale: str, field: str = "script.provider.voice_id", gender: str | None = None
) -> Voice:
    """The best local voice for a BCP-47 locale: the first engine's (in registry order) that speaks the
    language, and of its voices the closest one: the same locale before the same language, then the
    `gender` asked for (a voice of the other one if the engine has none), then the engine's order (Kokoro
    lists its best voices first; espeak-ng's main file of a language comes before its variants)."""
    tag = locale.lower().replace("_", "-")
    primary = tag.split("-")[0]
    wanted = _LOCALE_ALIASES.get(tag) or _LOCALE_ALIASES.get(primary) or tag
    for _, voices in _voices_by_engine():
        best = min(voices, key=lambda voice: _distance(voice, wanted, gender), default=None)
        if best is not None and _distance(best, wanted, gender)[0] <= 1:
            return best
    raise _nobody_speaks(locale, field)


def _distance(voice: Voice, wanted: str, gender: str | None = None) -> tuple[int, int, int, int]:
    """(0 exact tag, 1 same language, 2 no match; 1 if not the wanted gender; position in the voice's
    language list; 0 if the voice is the language's main one, e.g. espeak-ng's file "roa/fr" for French)."""
    primary = wanted.split("-")[0]
    main = 0 if (voice.engine_voice or "").rsplit("/", 1)[-1].lower() == primary else 1
    other_gender = int(gender is not None and voice.gender != gender)
    for position, code in enumerate(voice.languages):
        if code == wanted:
            return (0, other_gender, position, main)
    for position, code in enumerate(voice.languages):
        if code.split("-")[0] == primary:
            return (1, other_gender, position, main)
    return (2, 0, 0, main)


def _nobody_speaks(locale: str, field: str) -> ValidationError:
    return invalid(field, f"no local voice speaks {locale!r}", served_locales())


def served_locales() -> list[str]:
    """What a locale may be: each engine's languages, but a language an earlier engine serves is listed
    once, by that engine (Kokoro's "en-*" covers joe and espeak-ng's English voices)."""
    served: list[str] = []
    claimed: set[str] = set()
    for engine, voices in _voices_by_engine():
        if engine.locales is not None:
            mine = [locale for locale in engine.locales if _language(locale) not in claimed]
        else:
            codes = {code for voice in voices for code in voice.languages}
            mine = sorted(bcp47(code) for code in codes if _language(code) not in claimed)
        served += mine
        claimed |= {_language(locale) for locale in mine}
    return served


def _language(locale: str) -> str:
    return locale.split("-")[0].lower()
