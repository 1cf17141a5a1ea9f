"""libespeak-ng through ctypes: the list of installed voices, and synthesis with IPA phoneme timings.

All of espeak-ng's ctypes code lives here. The library is one global state per process (one current voice,
one callback, one set of parameters), so every call holds `_LOCK`. Timings come from the library's
phoneme events (the command line cannot give them): each event carries its position in the audio.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from dataclasses import dataclass

import numpy as np

# speak_lib.h (espeak-ng 1.51); the values are part of the library's stable ABI.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_INITIALIZE_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_EE_OK = 0
_PHONEMES_IPA = 0x02
_PHONEMES_TIE = 0x80  # bits 8-23 then hold the character joining a multi-letter phoneme ("t^ʃ")

DEFAULT_RATE = 175  # words per minute, espeak's own default
DEFAULT_PITCH = 50  # 0..100, espeak's own default
MIN_RATE, MAX_RATE = 80, 450
_GENDERS = {1: "male", 2: "female"}


class EspeakUnavailable(RuntimeError):
    """libespeak-ng is missing or refused to start."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds from the start of the text
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, NUL-terminated name)*, then a 0 byte
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events): return 1 to abort.
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class EspeakVoiceInfo:
    name: str  # e.g. "German"
    identifier: str  # the voice file, e.g. "gmw/de": what espeak_SetVoiceByName accepts reliably
    languages: tuple[str, ...]  # e.g. ("de",), most preferred first
    gender: str | None


@dataclass
class _Collector:
    """What one espeak_Synth call produced; filled by the callback."""

    pcm: bytearray  # 16-bit samples: half the memory of float32 while the text is spoken
    events: list[tuple[int, str]]  # (audio position in ms, IPA symbol)


_LOCK = threading.Lock()
_lib: ctypes.CDLL | None = None
_sample_rate = 0
_current: _Collector | None = None
# After espeak_TextToPhonemes (Kokoro's phonemes) the library's next espeak_Synth drops the events of its
# first words (espeak-ng 1.51, seen after ~40 calls); an empty synthesis in between clears that.
_phonemized = False


def _load() -> ctypes.CDLL:
    """Load and initialise the library once per process (call with _LOCK held)."""
    global _lib, _sample_rate
    if _lib is not None:
        return _lib
    path = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise EspeakUnavailable(f"libespeak-ng could not be loaded ({path}): install espeak-ng") from e
    _declare(lib)
    options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA | _INITIALIZE_DONT_EXIT
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, options)
    if rate <= 0:
        raise EspeakUnavailable(f"espeak_Initialize failed ({rate}): is espeak-ng-data installed?")
    lib.espeak_SetSynthCallback(_on_audio)
    _lib, _sample_rate = lib, rate
    return lib


def _declare(lib: ctypes.CDLL) -> None:
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
        ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p


@_SynthCallback
def _on_audio(wav, num_samples, events) -> int:  # type: ignore[no-untyped-def]
    """Called by espeak_Synth (same thread, _LOCK held) with each block of audio and its events."""
    collector = _current
    if collector is None:
        return 1  # nobody is listening: ask the library to stop
    if num_samples > 0 and wav:
        collector.pcm.extend(ctypes.string_at(wav, num_samples * 2))
    i = 0
    while events[i].type != _EVENT_LIST_TERMINATED:
        event = events[i]
        if event.type == _EVENT_PHONEME:
            # `string` is up to 8 UTF-8 bytes, not NUL-terminated when full.
            symbol = bytes(event.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
            collector.events.append((event.audio_position, symbol))
        i += 1
    return 0


def list_voices() -> list[EspeakVoiceInfo]:
    """The voices installed with espeak-ng (espeak_ListVoices), in the library's order."""
    with _LOCK:
        lib = _load()
        array = lib.espeak_ListVoices(None)
        voices = []
        i = 0
        while array[i]:
            voices.append(_voice_info(array[i].contents))
            i += 1
    return voices


def _voice_info(voice: _Voice) -> EspeakVoiceInfo:
    return EspeakVoiceInfo(
        name=(voice.name or b"").decode("utf-8", "replace"),
        identifier=(voice.identifier or b"").decode("utf-8", "replace"),
        languages=_languages(voice.languages),
        gender=_GENDERS.get(voice.gender),
    )


def _languages(address: int | None) -> tuple[str, ...]:
    """Decode the packed list: a priority byte, then a NUL-terminated name; a 0 priority ends it."""
    found = []
    while address and ctypes.c_ubyte.from_address(address).value != 0:
        name = ctypes.string_at(address + 1)
        found.append(name.decode("utf-8", "replace"))
        address += 1 + len(name) + 1
    return tuple(found)


def sample_rate() -> int:
    with _LOCK:
        _load()
        return _sample_rate


def synthesize(
    text: str, voice: str, rate: int = DEFAULT_RATE, pitch: int = DEFAULT_PITCH
) -> tuple[np.ndarray, int, list[tuple[float, str]]]:
    """Speak `text` with espeak voice `voice` (a name or file identifier such as "gmw/de").

    Returns (float32 mono samples, sample rate, phoneme events as (start seconds, IPA symbol)).
    `rate` is words per minute (80..450), `pitch` 0..100.
    """
    data = text.encode("utf-8") + b"\0"
    with _LOCK:
        lib = _load()
        if lib.espeak_SetVoiceByName(voice.encode("utf-8")) != _EE_OK:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        lib.espeak_SetParameter(_PARAM_RATE, int(np.clip(rate, MIN_RATE, MAX_RATE)), 0)
        lib.espeak_SetParameter(_PARAM_PITCH, int(np.clip(pitch, 0, 100)), 0)
        if _phonemized:
            _synth(lib, b"\0")
        collector, status = _synth(lib, data)
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with status {status}")
        rate_hz = _sample_rate
    samples = np.frombuffer(collector.pcm, dtype=np.int16).astype(np.float32)
    del collector.pcm
    samples /= 32768.0
    return samples, rate_hz, [(ms / 1000.0, symbol) for ms, symbol in collector.events]


def _synth(lib: ctypes.CDLL, data: bytes) -> tuple[_Collector, int]:
    """One espeak_Synth of NUL-terminated `data` into a new collector (call with _LOCK held)."""
    global _current, _phonemized
    _current = collector = _Collector(bytearray(), [])
    try:
        status = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
    finally:
        _current, _phonemized = None, False
    return collector, status


def text_to_phonemes(text: str, voice: str, tie: str = "^") -> list[str]:
    """The IPA of `text` as espeak-ng would speak it with `voice`, one string per clause (punctuation is
    not kept), stress marks included, the letters of one phoneme joined by `tie` ("t^ʃ"), words separated
    by spaces; a switch to another language is marked "(en)…(fr)", as espeak-ng marks it."""
    mode = _PHONEMES_IPA | _PHONEMES_TIE | (ord(tie) << 8)
    buffer = ctypes.c_char_p(text.encode("utf-8"))
    pointer = ctypes.pointer(buffer)  # the library moves it past each clause, to NULL at the end
    global _phonemized
    clauses = []
    with _LOCK:
        _phonemized = True
        lib = _load()
        if lib.espeak_SetVoiceByName(voice.encode("utf-8")) != _EE_OK:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        while pointer.contents.value is not None:
            phonemes = lib.espeak_TextToPhonemes(pointer, _CHARS_UTF8, mode)
            if phonemes:
                clauses.append(phonemes.decode("utf-8", "replace"))
    return clauses
