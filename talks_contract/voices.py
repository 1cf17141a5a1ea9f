"""The voice a request names: `script.provider` {type, voice_id, voice_config}, read alike by both halves.

- microsoft, google, azure-openai: ids start with the locale ("de-DE-KatjaNeural", "cmn-CN-Wavenet-A");
  azure-openai ids without a locale ("alloy") are opaque, like ElevenLabs'.
- amazon: Polly ids are names; `POLLY_LANGUAGES` gives each name's locale.
- elevenlabs, afflorithmics: ids are opaque and the voices multilingual: no locale.
- talkmill: the engine's own voice ids ("en-US-af_heart", "de-espeak"); which exist is the engine's business.
The gender of a known cloud voice (cloud_voices) travels with the request: an engine serving it with a
local voice picks one of the same language and, where it has one, the same gender.
Omitted voice ids take D-ID's defaults (google: "he-IL-Wavenet-A", elevenlabs: "21m00Tcm4TlvDq8ikWAM"); an
omitted provider is D-ID's default, Microsoft "en-US-JennyNeural".

voice_config {style, rate, pitch} takes Microsoft's forms (RATE_FORMS, PITCH_FORMS) for every provider
(ElevenLabs' own settings are accepted and ignored). A style is any string; a few (STYLE_NUDGES) nudge
rate and pitch, the rest change nothing. "Hz" pitches are relative to a nominal 120 Hz.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from talks_contract.cloud_voices import POLLY_VOICES, ascii_lower, gender_of
from talks_contract.errors import ContractViolation

PROVIDER_TYPES = ("talkmill", "microsoft", "amazon", "google", "azure-openai", "elevenlabs", "afflorithmics")
PROVIDER_KEYS = ("language", "model_id", "type", "voice_config", "voice_id")
DEFAULT_PROVIDER = {"type": "microsoft", "voice_id": "en-US-JennyNeural"}  # D-ID's, when none is given
DEFAULT_VOICE_IDS = {"google": "he-IL-Wavenet-A", "elevenlabs": "21m00Tcm4TlvDq8ikWAM"}  # D-ID's defaults
LOCALE_PROVIDERS = ("microsoft", "google")  # their ids must start with a locale
OWN_PROVIDER = "talkmill"  # the engine's own voice ids

POLLY_LANGUAGES = {name: locale for name, (locale, _) in POLLY_VOICES.items()}  # Polly voice names → locale

# voice_config: how fast and how high, in Microsoft's SSML <prosody> forms.
RATE_WORDS = {"x-slow": 0.5, "slow": 0.64, "medium": 1.0, "default": 1.0, "fast": 1.55, "x-fast": 2.0}
PITCH_WORDS = {"x-low": 0.55, "low": 0.8, "medium": 1.0, "default": 1.0, "high": 1.2, "x-high": 1.45}
RATE_FORMS = ["x-slow", "slow", "medium", "fast", "x-fast", "default", "+10%", "-20%", "a multiplier 0.5..2"]
PITCH_FORMS = ["x-low", "low", "medium", "high", "x-high", "default", "+10%", "-2st", "+20Hz", "150Hz",
               "a multiplier 0.5..2"]  # fmt: skip
PROSODY_LIMITS = (0.5, 2.0)  # both multipliers; Microsoft's own range for rate
NOMINAL_PITCH_HZ = 120.0  # what "Hz" values are relative to
# Styles are recorded with the talk; these few nudge the delivery (rate, pitch), the others change nothing.
STYLE_NUDGES = {
    **dict.fromkeys(["cheerful", "excited", "friendly", "hopeful", "happy"], (1.05, 1.05)),
    **dict.fromkeys(["sad", "depressed", "disgruntled", "empathetic"], (0.9, 0.95)),
    **dict.fromkeys(["calm", "gentle", "serious", "whispering", "documentary-narration"], (0.95, 1.0)),
    **dict.fromkeys(["angry", "shouting", "terrified"], (1.08, 1.05)),
}  # fmt: skip
VOICE_CONFIG_KEYS = ("pitch", "rate", "style")
ELEVENLABS_CONFIG_KEYS = (
    "apply_language_text_normalization", "similarity_boost", "stability", "use_speaker_boost",
)  # accepted, ignored

_LOCALE = re.compile(r"^([a-z]{2,3})(?:-([A-Z][a-z]{3}))?-([A-Z]{2}|\d{3})(?:-|$)")
_NUMBER = r"([0-9]+(?:\.[0-9]+)?|\.[0-9]+)"
_RELATIVE = re.compile(rf"^([+-]){_NUMBER}(%|st|hz)$")
_ABSOLUTE = re.compile(rf"^{_NUMBER}(hz)?$")


@dataclass(frozen=True)
class Prosody:
    rate: float = 1.0  # speaking speed, times normal
    pitch: float = 1.0  # voice pitch, times normal
    style: str | None = None


@dataclass(frozen=True)
class VoiceRequest:
    """What a valid `script.provider` asks for."""

    provider: str  # one of PROVIDER_TYPES
    voice_id: str
    locale: str | None  # e.g. "de-DE"; None: opaque or multilingual ids, or a talkmill voice id
    prosody: Prosody = Prosody()
    gender: str | None = None  # "female" | "male" when the named cloud voice is known (cloud_voices)


def parse_voice_request(provider: dict | None, field: str = "script.provider") -> VoiceRequest:
    """The voice a `script.provider` asks for (None: D-ID's default, Microsoft Jenny); ContractViolation
    naming the offending field and what is allowed."""
    if provider is None:
        provider = DEFAULT_PROVIDER
    if not isinstance(provider, dict):
        allowed = ["{type, voice_id, voice_config}"]
        raise ContractViolation(field, "must be an object with type and voice_id", allowed)
    unknown = sorted(set(provider) - set(PROVIDER_KEYS))
    if unknown:
        problem = f"unknown provider field {unknown[0]!r}"
        raise ContractViolation(f"{field}.{unknown[0]}", problem, list(PROVIDER_KEYS))
    kind = provider.get("type")
    if kind not in PROVIDER_TYPES:
        raise ContractViolation(f"{field}.type", f"unknown provider type {kind!r}", list(PROVIDER_TYPES))
    prosody = parse_voice_config(provider.get("voice_config"), f"{field}.voice_config", kind)
    voice_id = provider.get("voice_id", DEFAULT_VOICE_IDS.get(kind))
    id_field = f"{field}.voice_id"
    if not isinstance(voice_id, str) or not voice_id.strip():
        problem = f"a voice_id is required for provider {kind!r}"
        raise ContractViolation(id_field, problem, ["a non-empty string"])
    voice_id = voice_id.strip()
    locale = _locale_of(kind, voice_id, id_field)
    return VoiceRequest(kind, voice_id, locale, prosody, gender_of(kind, voice_id, locale))


def _locale_of(kind: str, voice_id: str, field: str) -> str | None:
    if kind == OWN_PROVIDER:
        return None
    if kind == "amazon":
        return _polly_locale(voice_id, field)
    locale = locale_prefix(voice_id)
    if locale is None and kind in LOCALE_PROVIDERS:
        problem = f"{voice_id!r} does not start with a locale such as de-DE"
        raise ContractViolation(field, problem, ["<locale>-<name>, e.g. de-DE-KatjaNeural"])
    return locale  # elevenlabs, afflorithmics, azure-openai names ("alloy"): None


def _polly_locale(voice_id: str, field: str) -> str:
    locale = POLLY_LANGUAGES.get(ascii_lower(voice_id))
    if locale is None:
        names = sorted(name.title() for name in POLLY_LANGUAGES)
        raise ContractViolation(field, f"unknown Amazon Polly voice {voice_id!r}", names)
    return locale


def locale_prefix(voice_id: str) -> str | None:
    """ "de-DE-KatjaNeural" → "de-DE"; "sr-Latn-RS-NicholasNeural" → "sr-Latn-RS"; "alloy" → None."""
    match = _LOCALE.match(voice_id)
    return "-".join(part for part in match.groups() if part) if match else None


def parse_voice_config(
    config: Any, field: str = "script.provider.voice_config", provider: str = ""
) -> Prosody:
    """Rate and pitch multipliers of a voice_config (None: normal), the style's nudge included."""
    if config is None:
        return Prosody()
    if not isinstance(config, dict):
        raise ContractViolation(field, "must be an object", list(VOICE_CONFIG_KEYS))
    allowed = set(VOICE_CONFIG_KEYS) | (set(ELEVENLABS_CONFIG_KEYS) if provider == "elevenlabs" else set())
    unknown = sorted(set(config) - allowed)
    if unknown:
        problem = f"unknown voice_config field {unknown[0]!r}"
        raise ContractViolation(f"{field}.{unknown[0]}", problem, sorted(allowed))
    style = config.get("style")
    if style is not None and not isinstance(style, (str, int, float)):
        raise ContractViolation(f"{field}.style", "must be a string", ["any style name, e.g. cheerful"])
    rate = _multiplier(config.get("rate"), RATE_WORDS, f"{field}.rate", RATE_FORMS)
    pitch = _multiplier(config.get("pitch"), PITCH_WORDS, f"{field}.pitch", PITCH_FORMS)
    style = None if style is None else str(style)
    rate_nudge, pitch_nudge = STYLE_NUDGES.get((style or "").lower(), (1.0, 1.0))
    return Prosody(_clamp(rate * rate_nudge), _clamp(pitch * pitch_nudge), style)


def _multiplier(value: Any, words: dict[str, float], field: str, forms: list[str]) -> float:
    """One of Microsoft's prosody forms as a multiplier; ContractViolation listing the forms otherwise."""
    if value is None or value == "":
        return 1.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ContractViolation(field, f"{value!r} is not a string", forms)
    text = value.strip().lower()
    factor = words.get(text)
    if factor is None:
        is_pitch = words is PITCH_WORDS
        factor = _relative(text, is_pitch) if text[:1] in "+-" else _absolute(text, is_pitch)
    low, high = PROSODY_LIMITS
    if factor is None or not math.isfinite(factor) or not low <= factor <= high:
        raise ContractViolation(field, f"{value!r} is not a supported value (range {low}..{high})", forms)
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
    return min(max(factor, PROSODY_LIMITS[0]), PROSODY_LIMITS[1])
