"""Text → Speech with any catalogued voice, by the voice's speech engine (see registry)."""

from __future__ import annotations

from dataclasses import replace

from talkmill_engine.errors import ValidationError
from talkmill_engine.speech.base import Voice
from talkmill_engine.speech.registry import engine_of
from talkmill_engine.speech.stream import SpeechStream
from talkmill_engine.speech.timing import Speech
from talks_contract.voices import Prosody


class Synthesizer:
    """One per worker; each engine loads its models once per process."""

    def warm(self, voice: Voice) -> None:
        """Load the models of `voice`'s engine (the first synthesis in a process is slow). Other engines load
        on their first talk: a worker pays memory only for the engines its talks use."""
        engine_of(voice).warm()

    def stream(self, text: str, voice: Voice, prosody: Prosody = Prosody()) -> SpeechStream:
        """`text` (plain text) with `voice` at `prosody` (the request's voice_config, parsed), spoken as the
        stream is read. Reading it raises ValidationError at its end when there were no words to speak."""
        stream = engine_of(voice).speak(text, voice, prosody)
        return replace(stream, voice_id=voice.id).checked(_has_words)

    def synthesize(self, text: str, voice: Voice, prosody: Prosody = Prosody()) -> Speech:
        """The whole speech of `text`, spoken before it returns."""
        return self.stream(text, voice, prosody).collect()


def _has_words(speech: Speech) -> None:
    if not speech.has_words():
        raise ValidationError(
            "The script has nothing to speak (no words, only spaces or punctuation).",
            {"field": "script.input", "allowed": ["text with at least one word"]},
        )
