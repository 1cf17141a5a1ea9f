"""Audio media I/O with PyAV (no system ffmpeg): decode an uploaded script (with its phone timings, from
speech/align.py), resample, write a talk's WAV."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import av
import numpy as np

from talkmill_engine.errors import AudioError
from talkmill_engine.speech import align
from talkmill_engine.speech.timing import Speech
from talks_contract.formats import AUDIO_FORMATS
from talks_contract.limits import MAX_AUDIO_SECONDS

SAMPLE_RATE = 22050  # the renderer's rate, the same as piper's and espeak's
# What errors promise is what POST /audios accepts (the contract's list); an audio_url's ogg, webm or aac
# file still decodes, as a courtesy, without being promised.
ALLOWED = ", ".join(AUDIO_FORMATS)
_DECODE_ERRORS = (av.FFmpegError, ValueError, OSError, EOFError)


def decode_audio(
    data: bytes, max_seconds: float = MAX_AUDIO_SECONDS, transcript: str | None = None
) -> Speech:
    """Mono float32 speech at SAMPLE_RATE from an audio (or video) file's bytes, with the phones pocketsphinx
    finds: forced alignment of `transcript` (what the audio says), else the phone loop; none when it cannot
    align (another language, no speech, a failure), and the mouth then follows loudness.

    Raises AudioError for bytes that are not audio, a file without an audio stream, empty audio, and audio
    longer than `max_seconds` (decoding stops as soon as it is over the limit).
    """
    demuxer = _sniff(data)
    try:
        container = av.open(io.BytesIO(data), mode="r", format=demuxer)
    except _DECODE_ERRORS as e:
        raise AudioError("The audio file could not be read.", f"{e}; allowed formats: {ALLOWED}") from e
    with container:
        stream = _audio_stream(container)
        _check_declared_length(container, stream, max_seconds)
        samples = _decode(container, stream, max_seconds)
    if samples.size == 0:
        raise AudioError("The audio file holds no sound (0 samples).", f"allowed formats: {ALLOWED}")
    duration = len(samples) / SAMPLE_RATE
    phones = align.audio_phones(resample(samples, SAMPLE_RATE, align.SAMPLE_RATE), duration, transcript)
    return Speech(samples, SAMPLE_RATE, phones)


def _sniff(data: bytes) -> str:
    """The demuxer for the file's magic bytes. Forcing it keeps FFmpeg from probing formats that open
    other files or URLs (playlists, concat lists), and gives a clear error for everything else."""
    head = data[:12]
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[4:8] == b"ftyp":
        return "mp4"  # also m4a and mov
    if head[:4] == b"\x1aE\xdf\xa3":
        return "matroska"  # also webm
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "aac" if head[1] & 0x06 == 0 else "mp3"  # frame sync: ADTS has layer bits 00
    raise AudioError("The file is not a supported audio format.", f"allowed formats: {ALLOWED}")


def _audio_stream(container: av.container.InputContainer) -> av.audio.stream.AudioStream:
    if not container.streams.audio:
        raise AudioError("The file has no audio stream.", f"allowed formats: {ALLOWED}")
    return container.streams.audio[0]


def _check_declared_length(container, stream, max_seconds: float) -> None:  # type: ignore[no-untyped-def]
    """Refuse early when the header already says the audio is too long (decoding checks again)."""
    seconds = None
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    if seconds is not None and seconds > max_seconds + 1:
        raise _too_long(max_seconds, f"{seconds:.1f} s")


def _decode(container, stream, max_seconds: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    limit = int(max_seconds * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total = 0
    try:
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
                total += out.samples
            if total > limit:
                raise _too_long(max_seconds, "more")
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except _DECODE_ERRORS as e:
        raise AudioError("The audio stream could not be decoded.", str(e)) from e
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return np.clip(samples.astype(np.float32, copy=False), -1.0, 1.0)


def _too_long(max_seconds: float, found: str) -> AudioError:
    description = f"The audio is longer than {max_seconds:g} seconds ({found})."
    return AudioError(description, f"at most {max_seconds:g} s")


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Mono float32 `samples` at `from_rate` resampled to `to_rate` (FFmpeg's swresample)."""
    if from_rate == to_rate or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    planar = np.ascontiguousarray(samples, np.float32)[None, :]
    frame = av.AudioFrame.from_ndarray(planar, format="flt", layout="mono")
    frame.sample_rate = from_rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=to_rate)
    frames = resampler.resample(frame) + resampler.resample(None)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32, copy=False)


def write_wav(speech: Speech, path: str | Path) -> None:
    """16-bit PCM mono WAV of `speech` (served as the talk's audio_url)."""
    pcm = (np.clip(speech.samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(speech.sample_rate)
        out.writeframes(pcm.tobytes())
