"""The engine's offline voices, and how a request's `script.provider` picks one of them.

Voices: the neural piper voice "en-US-joe" (the default), and every espeak-ng voice installed on the machine,
with ids "<language>-espeak" (e.g. "de-espeak", "en-GB-espeak", "pt-BR-espeak").

Cloud providers (the engine holds no credentials for them) are served by the closest local voice of the same
language, and the talk records the local voice's id:
- microsoft, google, azure-openai: ids start with the locale ("de-DE-KatjaNeural", "cmn-CN-Wavenet-A");
  azure-openai ids without a locale ("alloy") are treated like ElevenLabs.
- amazon: Polly ids are names; `POLLY_LANGUAGES` gives each name's locale.
- elevenlabs, afflorithmics: ids are opaque and the voices multilingual: served by joe.
Every English locale is served by joe, the best English voice. Omitted voice ids take D-ID's defaults
(google: "he-IL-Wavenet-A", elevenlabs: "21m00Tcm4TlvDq8ikWAM").

voice_config {style, rate, pitch} takes Microsoft's forms (see RATE_FORMS, PITCH_FORMS) for every provider
(ElevenLabs' own settings are accepted and ignored). A style is any string; a few (STYLE_NUDGES) nudge
rate and pitch, the rest change nothing. "Hz" pitches are relative to a nominal 120 Hz.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from talkmill_engine.errors import ValidationError
from talkmill_engine.render import espeak

_LOGGER = logging.getLogger(__name__)

DEFAULT_VOICE_ID = "en-US-joe"
DEFAULT_PROVIDER = {"type": "microsoft", "voice_id": "en-US-JennyNeural"}
PROVIDER_TYPES = ("talkmill", "microsoft", "amazon", "google", "azure-openai", "elevenlabs", "afflorithmics")
_LOCALE_PROVIDERS = ("microsoft", "google")
_DEFAULT_VOICE_IDS = {"google": "he-IL-Wavenet-A", "elevenlabs": "21m00Tcm4TlvDq8ikWAM"}
_PROVIDER_KEYS = {"type", "voice_id", "voice_config", "language", "model_id"}

# Amazon Polly voice names → locale (the ones D-ID lists, and Polly's other common ones).
POLLY_LANGUAGES = {
    **dict.fromkeys(["joanna", "matthew", "ivy", "justin", "kendra", "kimberly", "salli", "joey", "kevin",
                     "ruth", "stephen", "danielle", "gregory", "patrick"], "en-US"),
    **dict.fromkeys(["amy", "emma", "brian", "arthur"], "en-GB"),
    **dict.fromkeys(["nicole", "russell", "olivia"], "en-AU"),
    **dict.fromkeys(["raveena", "aditi", "kajal"], "en-IN"),
    "aria": "en-NZ", "ayanda": "en-ZA", "niamh": "en-IE", "geraint": "en-GB",
    **dict.fromkeys(["hans", "marlene", "vicki", "daniel"], "de-DE"), "hannah": "de-AT", "sabrina": "de-CH",
    **dict.fromkeys(["celine", "lea", "mathieu", "remi"], "fr-FR"),
    **dict.fromkeys(["chantal", "gabrielle", "liam"], "fr-CA"),
    **dict.fromkeys(["conchita", "lucia", "enrique", "sergio"], "es-ES"),
    **dict.fromkeys(["mia", "andres"], "es-MX"),
    **dict.fromkeys(["penelope", "lupe", "miguel", "pedro"], "es-US"),
    **dict.fromkeys(["carla", "bianca", "giorgio", "adriano"], "it-IT"),
    **dict.fromkeys(["camila", "vitoria", "ricardo", "thiago"], "pt-BR"),
    **dict.fromkeys(["ines", "cristiano"], "pt-PT"),
    **dict.fromkeys(["mizuki", "takumi", "kazuha", "tomoko"], "ja-JP"),
    "zhiyu": "zh-CN", "hiujin": "zh-HK", "seoyeon": "ko-KR",
    **dict.fromkeys(["lotte", "ruben", "laura"], "nl-NL"), "lisa": "nl-BE",
    **dict.fromkeys(["naja", "mads", "sofie"], "da-DK"),
    "astrid": "sv-SE", "elin": "sv-SE", "liv": "nb-NO", "ida": "nb-NO", "suvi": "fi-FI",
    **dict.fromkeys(["ewa", "maja", "jacek", "jan", "ola"], "pl-PL"),
    "tatyana": "ru-RU", "maxim": "ru-RU", "filiz": "tr-TR", "burcu": "tr-TR", "carmen": "ro-RO",
    "dora": "is-IS", "karl": "is-IS", "gwyneth": "cy-GB", "zeina": "ar", "hala": "ar-AE", "zayd": "ar-AE",
    "arlet": "ca-ES", "jitka": "cs-CZ",
}  # fmt: skip

# Locales whose espeak voice is not found by the language subtag alone.
_LOCALE_ALIASES = {"zh-hk": "yue", "zh-mo": "yue", "no": "nb", "nn": "nb"}


@dataclass(frozen=True)
class Voice:
    id: str  # what a talk records as the voice it used
    name: str
    language: str  # BCP-47, e.g. "en-US", "de"
    gender: str | None  # "male" | "female" | None
    engine: str  # "piper" | "espeak"
    espeak_voice: str | None = None  # the espeak-ng voice file, e.g. "gmw/de"
    languages: tuple[str, ...] = ()  # every language the voice speaks, lower case, most preferred first

    def to_dict(self) -> dict[str, Any]:
        """The voice as GET /tts/voices lists it."""
        return {
            "id": self.id,
            "name": self.name,
            "language": self.language,
            "gender": self.gender,
            "provider": "talkmill",
            "engine": self.engine,
        }


JOE = Voice(DEFAULT_VOICE_ID, "Joe", "en-US", "male", "piper", languages=("en-us", "en"))


def list_voices() -> list[Voice]:
    """Joe, then the installed espeak-ng voices (listed once per process)."""
    return list(_voices())


@lru_cache(maxsize=1)
def _voices() -> tuple[Voice, ...]:
    try:
        infos = espeak.list_voices()
    except espeak.EspeakUnavailable as e:
        _LOGGER.warning("espeak-ng voices unavailable, only %s is offered: %s", DEFAULT_VOICE_ID, e)
        infos = []
    voices = [JOE]
    taken = {JOE.id}
    for info in infos:
        voice = _espeak_voice(info, taken)
        taken.add(voice.id)
        voices.append(voice)
    return tuple(voices)


def _espeak_voice(info: espeak.EspeakVoiceInfo, taken: set[str]) -> Voice:
    language = bcp47(info.languages[0] if info.languages else info.identifier.rsplit("/", 1)[-1])
    voice_id = f"{language}-espeak"
    if voice_id in taken:  # two voices of one language (Cantonese): name it by its voice file instead
        voice_id = f"{bcp47(info.identifier.rsplit('/', 1)[-1])}-espeak"
    languages = tuple(code.lower() for code in info.languages)
    name = f"{info.name} (espeak-ng)"
    return Voice(voice_id, name, language, info.gender, "espeak", info.identifier, languages)


def bcp47(tag: str) -> str:
    """Conventional casing of a language tag: "en-gb-x-rp" → "en-GB-x-rp", "cmn-latn" → "cmn-Latn"."""
    parts = tag.replace("_", "-").split("-")
    out = [parts[0].lower()]
    private = False
    for part in parts[1:]:
        private = private or len(part) == 1
        if private:
            out.append(part.lower())
        elif len(part) == 2:
            out.append(part.upper())
        elif len(part) == 4 and part.isalpha():
            out.append(part.title())
        else:
            out.append(part.lower())
    return "-".join(out)


def resolve_voice(provider: dict | None, field: str = "script.provider") -> Voice:
    """The local voice that serves a request's `script.provider` (None: D-ID's default, Microsoft Jenny).

    Also validates `voice_config`, so a talk is refused before it is queued. Raises ValidationError whose
    details name the offending field and what is allowed.
    """
    if provider is None:
        provider = DEFAULT_PROVIDER
    if not isinstance(provider, dict):
        raise _invalid(field, "must be an object with type and voice_id", ["{type, voice_id, voice_config}"])
    _check_keys(provider, field)
    kind = provider.get("type")
    if kind not in PROVIDER_TYPES:
        raise _invalid(f"{field}.type", f"unknown provider type {kind!r}", list(PROVIDER_TYPES))
    parse_voice_config(provider.get("voice_config"), f"{field}.voice_config", kind)
    voice_id = provider.get("voice_id", _DEFAULT_VOICE_IDS.get(kind))
    id_field = f"{field}.voice_id"
    if not isinstance(voice_id, str) or not voice_id.strip():
        raise _invalid(id_field, f"a voice_id is required for provider {kind!r}", ["a non-empty string"])
    return _voice_for(kind, voice_id.strip(), id_field)


def _check_keys(provider: dict, field: str) -> None:
    unknown = sorted(set(provider) - _PROVIDER_KEYS)
    if unknown:
        problem = f"unknown provider field {unknown[0]!r}"
        raise _invalid(f"{field}.{unknown[0]}", problem, sorted(_PROVIDER_KEYS))


def _voice_for(kind: str, voice_id: str, field: str) -> Voice:
    if kind == "talkmill":
        return _own_voice(voice_id, field)
    if kind == "amazon":
        return _polly_voice(voice_id, field)
    locale = _locale_prefix(voice_id)
    if locale is not None:
        return voice_for_language(locale, field)
    if kind in _LOCALE_PROVIDERS:
        raise _invalid(field, f"{voice_id!r} does not start with a locale such as de-DE", _served_locales())
    return JOE  # elevenlabs, afflorithmics, azure-openai names ("alloy"): opaque ids, multilingual voices


def _own_voice(voice_id: str, field: str) -> Voice:
    for voice in _voices():
        if voice.id == voice_id:
            return voice
    raise _invalid(field, f"unknown talkmill voice {voice_id!r}", [voice.id for voice in _voices()])


def _polly_voice(voice_id: str, field: str) -> Voice:
    locale = POLLY_LANGUAGES.get(_ascii_lower(voice_id))
    if locale is None:
        names = sorted(name.title() for name in POLLY_LANGUAGES)
        raise _invalid(field, f"unknown Amazon Polly voice {voice_id!r}", names)
    return voice_for_language(locale, field)


_LOCALE = re.compile(r"^([a-z]{2,3})(?:-([A-Z][a-z]{3}))?-([A-Z]{2}|\d{3})(?:-|$)")


def _locale_prefix(voice_id: str) -> str | None:
    """ "de-DE-KatjaNeural" → "de-DE"; "sr-Latn-RS-NicholasNeural" → "sr-Latn-RS"; "alloy" → None."""
    match = _LOCALE.match(voice_id)
    return "-".join(part for part in match.groups() if part) if match else None


def voice_for_language(locale: str, field: str = "script.provider.voice_id") -> Voice:
    """The best local voice for a BCP-47 locale: joe for any English, else the closest espeak-ng voice."""
    tag = locale.lower().replace("_", "-")
    primary = tag.split("-")[0]
    if primary == "en":
        return JOE
    wanted = _LOCALE_ALIASES.get(tag) or _LOCALE_ALIASES.get(primary) or tag
    candidates = [voice for voice in _voices() if voice.engine == "espeak"]
    best = min(candidates, key=lambda voice: _distance(voice, wanted), default=None)
    if best is None or _distance(best, wanted)[0] > 1:
        raise _invalid(field, f"no local voice speaks {locale!r}", _served_locales())
    return best


def _distance(voice: Voice, wanted: str) -> tuple[int, int, int]:
    """(0 exact tag, 1 same language, 2 no match; position in the voice's list; 0 if the voice is the
    language's main one, e.g. file "roa/fr" for French)."""
    primary = wanted.split("-")[0]
    main = 0 if (voice.espeak_voice or "").rsplit("/", 1)[-1].lower() == primary else 1
    for position, code in enumerate(voice.languages):
        if code == wanted:
            return (0, position, main)
    for position, code in enumerate(voice.languages):
        if code.split("-")[0] == primary:
            return (1, position, main)
    return (2, 0, main)


def _served_locales() -> list[str]:
    """What a locale-based voice id may start with: any English locale, or a language espeak-ng speaks."""
    languages = {code for voice in _voices() for code in voice.languages}
    return ["en-*"] + sorted(bcp47(code) for code in languages if code.split("-")[0] != "en")


def _ascii_lower(name: str) -> str:
    """ "Léa" → "lea": Polly names are matched without case or accents."""
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()


def _invalid(field: str, problem: str, allowed: list[str]) -> ValidationError:
    return ValidationError(f"Invalid {field}: {problem}.", {"field": field, "allowed": allowed})


# --- voice_config: how fast and how high (Microsoft's SSML <prosody> forms) ---------------------------------

RATE_WORDS = {"x-slow": 0.5, "slow": 0.64, "medium": 1.0, "default": 1.0, "fast": 1.55, "x-fast": 2.0}
PITCH_WORDS = {"x-low": 0.55, "low": 0.8, "medium": 1.0, "default": 1.0, "high": 1.2, "x-high": 1.45}
RATE_FORMS = ["x-slow", "slow", "medium", "fast", "x-fast", "default", "+10%", "-20%", "a multiplier 0.5..2"]
PITCH_FORMS = ["x-low", "low", "medium", "high", "x-high", "default", "+10%", "-2st", "+20Hz", "150Hz",
               "a multiplier 0.5..2"]  # fmt: skip
LIMITS = (0.5, 2.0)  # both multipliers; Microsoft's own range for rate
NOMINAL_PITCH_HZ = 120.0  # what "Hz" values are relative to: our voices are low male voices
# Styles are recorded with the talk; these few nudge the delivery (rate, pitch), the others change nothing.
STYLE_NUDGES = {
    **dict.fromkeys(["cheerful", "excited", "friendly", "hopeful", "happy"], (1.05, 1.05)),
    **dict.fromkeys(["sad", "depressed", "disgruntled", "empathetic"], (0.9, 0.95)),
    **dict.fromkeys(["calm", "gentle", "serious", "whispering", "documentary-narration"], (0.95, 1.0)),
    **dict.fromkeys(["angry", "shouting", "terrified"], (1.08, 1.05)),
}  # fmt: skip
_CONFIG_KEYS = {"style", "rate", "pitch"}
_ELEVENLABS_KEYS = {"stability", "similarity_boost", "use_speaker_boost", "apply_language_text_normalization"}


@dataclass(frozen=True)
class Prosody:
    rate: float = 1.0  # speaking speed, times normal
    pitch: float = 1.0  # voice pitch, times normal
    style: str | None = None


def parse_voice_config(
    config: Any, field: str = "script.provider.voice_config", provider: str = ""
) -> Prosody:
    """Rate and pitch multipliers of a voice_config (None: normal), the style's nudge included."""
    if config is None:
        return Prosody()
    if not isinstance(config, dict):
        raise _invalid(field, "must be an object", sorted(_CONFIG_KEYS))
    allowed = _CONFIG_KEYS | (_ELEVENLABS_KEYS if provider == "elevenlabs" else set())
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise _invalid(f"{field}.{unknown[0]}", f"unknown voice_config field {unknown[0]!r}", sorted(allowed))
    style = config.get("style")
    if style is not None and not isinstance(style, (str, int, float)):
        raise _invalid(f"{field}.style", "must be a string", ["any style name, e.g. cheerful"])
    rate = _multiplier(config.get("rate"), RATE_WORDS, f"{field}.rate", RATE_FORMS)
    pitch = _multiplier(config.get("pitch"), PITCH_WORDS, f"{field}.pitch", PITCH_FORMS)
    style = None if style is None else str(style)
    rate_nudge, pitch_nudge = STYLE_NUDGES.get((style or "").lower(), (1.0, 1.0))
    return Prosody(_clamp(rate * rate_nudge), _clamp(pitch * pitch_nudge), style)


_NUMBER = r"([0-9]+(?:\.[0-9]+)?|\.[0-9]+)"
_RELATIVE = re.compile(rf"^([+-]){_NUMBER}(%|st|hz)$")
_ABSOLUTE = re.compile(rf"^{_NUMBER}(hz)?$")


def _multiplier(value: Any, words: dict[str, float], field: str, forms: list[str]) -> float:
    """One of Microsoft's prosody forms as a multiplier; ValidationError listing the forms otherwise."""
    if value is None or value == "":
        return 1.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _invalid(field, f"{value!r} is not a string", forms)
    text = value.strip().lower()
    factor = words.get(text)
    if factor is None:
        is_pitch = words is PITCH_WORDS
        factor = _relative(text, is_pitch) if text[:1] in "+-" else _absolute(text, is_pitch)
    if factor is None or not math.isfinite(factor) or not LIMITS[0] <= factor <= LIMITS[1]:
        raise _invalid(field, f"{value!r} is not a supported value (range {LIMITS[0]}..{LIMITS[1]})", forms)
    return factor


def _relative(text: str, allow_pitch_units: bool) -> float | None:
    match = _RELATIVE.match(text)
    if not match or (match.group(3) != "%" and not allow_pitch_units):
        return None
    sign = 1.0 if match.group(1) == "+" else -1.0
    amount, unit = float(match.group(2)) * sign, match.group(3)
    if unit == "%":
        return 1.0 + amount / 100.0
    if unit == "st":
        return 2.0 ** (amount / 12.0)
    return 1.0 + amount / NOMINAL_PITCH_HZ


def _absolute(text: str, allow_hz: bool) -> float | None:
    match = _ABSOLUTE.match(text)
    if not match or (match.group(2) and not allow_hz):
        return None
    number = float(match.group(1))
    return number / NOMINAL_PITCH_HZ if match.group(2) else number


def _clamp(factor: float) -> float:
    return min(max(factor, LIMITS[0]), LIMITS[1])
