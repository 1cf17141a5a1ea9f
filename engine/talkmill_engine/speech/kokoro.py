"""Kokoro-82M (int8 ONNX, 24 kHz): 54 neural voices in 9 languages, phoneme timings from the model itself.

Voice ids are "<locale>-<Kokoro's voice name>": "en-US-af_heart", "en-GB-bm_george", "es-ES-ef_dora".
Kokoro's names say the language and gender: the first letter is the language (a American English,
b British, e Spanish, f French, h Hindi, i Italian, j Japanese, p Brazilian Portuguese, z Mandarin), the
second f or m. Timings: the installed model also outputs the encoder's frame count per token (1 frame =
600 samples), summing exactly to the audio; kokoro_timing places them where the audio has the sounds. One
onnxruntime session per process, loaded on first use; each voice file is read (and checked) once. Files:
kokoro_files.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from talkmill_engine.errors import UnknownError
from talkmill_engine.speech import kokoro_cjk, kokoro_files, kokoro_phonemes
from talkmill_engine.speech.base import SpeechEngine, Voice
from talkmill_engine.speech.kokoro_timing import SAMPLES_PER_FRAME, timed_phones
from talkmill_engine.speech.stream import SpeechStream
from talkmill_engine.speech.text import split_for_synthesis
from talkmill_engine.speech.timing import Phone, shift_pitch
from talks_contract.voices import PROSODY_LIMITS, Prosody

SAMPLE_RATE = 24000
THREADS = min(2, os.cpu_count() or 1)  # a sentence at a time: two threads halve its wait, more gain little


@dataclass(frozen=True)
class KokoroLanguage:
    locale: str  # what its voices are listed as
    languages: tuple[str, ...]  # the locales they serve, best first (Voice.languages)
    phonemizer: str  # an espeak_ng language of kokoro_phonemes, or "ja" / "zh" (kokoro_cjk)


# By the first letter of a voice's name. English voices serve every English locale: the Commonwealth's by
# the British ones, the rest by the American ones.
LANGUAGES = {
    "a": KokoroLanguage("en-US", ("en-us", "en-ca", "en"), "en-us"),
    "b": KokoroLanguage("en-GB", ("en-gb", "en-au", "en-nz", "en-ie", "en-za", "en-in", "en"), "en-gb"),
    "e": KokoroLanguage("es-ES", ("es-es", "es"), "es"),
    "f": KokoroLanguage("fr-FR", ("fr-fr", "fr"), "fr"),
    "h": KokoroLanguage("hi-IN", ("hi-in", "hi"), "hi"),
    "i": KokoroLanguage("it-IT", ("it-it", "it"), "it"),
    "j": KokoroLanguage("ja-JP", ("ja-jp", "ja"), "ja"),
    "p": KokoroLanguage("pt-BR", ("pt-br", "pt"), "pt-br"),
    "z": KokoroLanguage("zh-CN", ("zh-cn", "zh-tw", "zh", "cmn-cn", "cmn"), "zh"),
}
# Best first within each language and gender (the grades of hexgrad's VOICES.md for Kokoro v1.0): the first
# of a language is its default, the first of a gender the default of that gender.
PREFERRED = (
    "af_heart", "af_bella", "af_nicole", "am_michael", "am_fenrir", "am_puck", "bf_emma", "bf_isabella",
    "bm_george", "bm_fable", "ff_siwis", "if_sara", "im_nicola", "jf_alpha", "jm_kumo", "hf_alpha",
    "hm_omega", "ef_dora", "em_alex", "pf_dora", "pm_alex", "zf_xiaoxiao", "zm_yunxi",
)  # fmt: skip
_GENDERS = {"f": "female", "m": "male"}


class KokoroTimingError(UnknownError):
    """The model's frame counts do not add up to its audio: timings would be wrong, so nothing is spoken."""


def list_voices() -> list[Voice]:
    """Every Kokoro voice of a language this installation can phonemize, best first per language."""
    names = sorted(kokoro_files.VOICE_NAMES, key=_rank)
    return [_voice(name) for name in names if _speakable(LANGUAGES[name[0]])]


def _rank(name: str) -> tuple[int, str]:
    return (PREFERRED.index(name) if name in PREFERRED else len(PREFERRED), name)


def _voice(name: str) -> Voice:
    language = LANGUAGES[name[0]]
    title = name.split("_", 1)[1].title()
    gender = _GENDERS[name[1]]
    return Voice(f"{language.locale}-{name}", f"{title} (Kokoro)", language.locale, gender, "kokoro", name,
                 language.languages)  # fmt: skip


def _speakable(language: KokoroLanguage) -> bool:
    if language.phonemizer in kokoro_phonemes.ESPEAK_LANGUAGES:
        return True
    return kokoro_cjk.available(language.phonemizer)  # cheap: its libraries are looked for, not imported


# --- the model --------------------------------------------------------------------------------------------

_lock = threading.Lock()
_session: Any = None
_run_options: Any = None


def session() -> Any:
    """The process's one onnxruntime session of the timed model (checked by sha256 as it is read)."""
    global _session, _run_options
    with _lock:
        if _session is None:
            import onnxruntime

            from talkmill_engine.speech.onnx_session import cpu_session

            # With the arena, shrunk after each sentence: a 60-s talk measured 0.74 CPU-s per audio second,
            # a 510 MB peak and 320 MB between sentences (and while the talk renders). Without a shrink
            # the arena keeps 540 MB; without the arena glibc kept 2.4 GB of heap (0.95 CPU-s), or with
            # large buffers handed back (onnx_session), page faults cost 1.6 CPU-s.
            _session = cpu_session(str(kokoro_files.checked_model_path()), THREADS, arena=True)
            _run_options = onnxruntime.RunOptions()
            _run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        return _session


@cache
def style_vectors(name: str) -> np.ndarray:
    """A voice's 510 style vectors (one per input length), float32 (510, 1, 256), checked by sha256."""
    data = kokoro_files.read_voice(name)
    return np.frombuffer(data, dtype=np.float32).reshape(-1, 1, 256)


# --- speaking ---------------------------------------------------------------------------------------------


def speak(text: str, voice: Voice, prosody: Prosody) -> SpeechStream:
    return SpeechStream(SAMPLE_RATE, speak_sentences(text, voice, prosody))


def speak_sentences(text: str, voice: Voice, prosody: Prosody) -> Iterator[tuple[np.ndarray, list[Phone]]]:
    """Each sentence's samples (24 kHz) and phones (from its own start), spoken one by one: a consumer may
    start on the first before the last is spoken. Rate is the model's speed; pitch: timing.shift_pitch."""
    language = LANGUAGES[str(voice.engine_voice)[0]]
    speed = float(np.clip(prosody.rate / prosody.pitch, *PROSODY_LIMITS))
    for piece in split_for_synthesis(text):
        for phonemes in _batches(_phonemize(piece, language.phonemizer)):
            samples, phones = speak_phonemes(phonemes, str(voice.engine_voice), speed)
            yield shift_pitch(samples, phones, prosody.pitch, SAMPLE_RATE)


def _phonemize(text: str, phonemizer: str) -> str:
    """The phonemes of `text`, in Kokoro's vocabulary only (one character is one token)."""
    if phonemizer in kokoro_phonemes.ESPEAK_LANGUAGES:
        return kokoro_phonemes.phonemize(text, phonemizer)
    return "".join(ch for ch in kokoro_cjk.phonemize(text, phonemizer) if ch in kokoro_phonemes.VOCAB)


def _batches(phonemes: str) -> Iterator[str]:
    """Pieces within the model's context, cut at spaces (a sentence of CJK text can exceed it)."""
    while len(phonemes) > kokoro_phonemes.MAX_TOKENS:
        cut = phonemes.rfind(" ", 0, kokoro_phonemes.MAX_TOKENS)
        cut = cut if cut > 0 else kokoro_phonemes.MAX_TOKENS
        yield phonemes[:cut]
        phonemes = phonemes[cut:].lstrip()
    if phonemes.strip():
        yield phonemes


def speak_phonemes(phonemes: str, name: str, speed: float = 1.0) -> tuple[np.ndarray, list[Phone]]:
    """Kokoro's audio of a phoneme string with voice `name`, and its phones (kokoro_timing)."""
    symbols = [ch for ch in phonemes if ch in kokoro_phonemes.VOCAB]
    if not symbols:
        return np.zeros(0, np.float32), []
    tokens = kokoro_phonemes.tokens_of(phonemes)
    inputs = {
        "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
        "style": style_vectors(name)[len(tokens) - 1],  # hexgrad's pipeline: the vector of its length
        "speed": np.array([speed], dtype=np.float32),
    }
    audio, durations = session().run(None, inputs, _run_options)
    samples = np.asarray(audio, dtype=np.float32).reshape(-1)
    frames = [int(count) for count in np.asarray(durations).reshape(-1)]
    if sum(frames) * SAMPLES_PER_FRAME != len(samples) or len(frames) != len(symbols) + 2:
        raise KokoroTimingError(
            "Kokoro's phoneme timings do not match its audio.",
            f"{len(frames)} durations of {sum(frames)} frames for {len(symbols)} tokens and {len(samples)} "
            "samples",
        )
    return timed_phones(symbols, frames, samples, speed)


def warm() -> None:
    """Load the model and run a first tiny synthesis (the first run in a process is slow)."""
    speak_phonemes("həlˈO.", "af_heart")


def served_locales() -> tuple[str, ...]:
    """How a refusal lists what Kokoro speaks: any locale of its languages ("zh" is Mandarin only)."""
    served: list[str] = []
    for language in LANGUAGES.values():
        primary = language.locale.split("-")[0]
        patterns = ["zh-CN", "zh-TW", "cmn-*"] if primary == "zh" else [f"{primary}-*"]
        if _speakable(language):
            served += [pattern for pattern in patterns if pattern not in served]
    return tuple(served)


ENGINE = SpeechEngine("kokoro", list_voices, speak, warm, locales=served_locales())
