"""What every speech engine provides: its voices, and a SpeechEngine entry for the registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from talkmill_engine.speech.stream import SpeechStream
    from talks_contract.voices import Prosody


@dataclass(frozen=True)
class Voice:
    id: str  # what a talk records as the voice it used
    name: str
    language: str  # BCP-47, e.g. "en-US", "de"
    gender: str | None  # "male" | "female" | None
    engine: str  # the SpeechEngine's name: "kokoro" | "piper" | "espeak"
    engine_voice: str | None = None  # the engine's own name: espeak-ng's file "gmw/de", Kokoro's "af_heart"
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


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class SpeechEngine:
    """One speech engine, as the registry lists it. Its module imports heavy libraries only to speak."""

    name: str
    list_voices: Callable[[], list[Voice]]  # cheap (the API process calls it); [] when the engine is missing
    speak: Callable[[str, Voice, Prosody], SpeechStream]  # plain text → its speech (with phone timings), lazily
    warm: Callable[[], None] = _nothing  # load models once per worker, before the first talk
    locales: tuple[str, ...] | None = None  # how a refusal lists its languages; None: its voices' languages


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
