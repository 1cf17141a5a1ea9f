"""Writing the video: H.264 + AAC in MP4 or MOV, or an animated GIF (no sound), through PyAV.

The only module of the renderer that writes media files. libx264 and the AAC encoder ship in PyAV's
wheel: no system ffmpeg. Encoding runs on its own thread, fed by a short queue: colour conversion, x264
and AAC release the GIL, so the next frame is warped while this one is encoded (bench/engine_speed.py).
Audio is added as it is spoken, ahead of the frames, and muxed alongside them.
"""

from __future__ import annotations

import queue
import threading
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from talks_contract.formats import RESULT_FORMATS

AAC_FRAME = 1024
QUEUED_FRAMES = 4  # enough to ride out x264's uneven frame times; each 512² frame is 0.8 MB
_DONE = None  # the queue's end marker


class VideoWriter:
    """Frames in (RGB uint8, even sides), a finished file out. Use as a context manager."""

    def __init__(self, path: Path, fmt: str, size: tuple[int, int], fps: int, sample_rate: int):
        if fmt not in RESULT_FORMATS:
            raise ValueError(f"unknown result format {fmt!r}; allowed: {', '.join(RESULT_FORMATS)}")
        self.fmt = fmt
        self.fps = fps
        self._container = av.open(str(path), mode="w", format=fmt)  # FFmpeg's muxers share the formats' names
        self._video = self._add_video(size, fps)
        self._audio = None if fmt == "gif" else self._add_audio(sample_rate)
        self._sample_rate = sample_rate
        self._audio_lock = threading.Lock()  # added by the renderer, encoded by the encoder thread
        self._pending = np.zeros(0, np.float32)  # audio added, not yet encoded
        self._audio_written = 0
        self.audio_added = 0  # samples
        self.frames = 0  # encoded so far
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(QUEUED_FRAMES)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._encode_all, name="video-encoder", daemon=True)
        self._thread.start()

    def _add_video(self, size: tuple[int, int], fps: int):
        if self.fmt == "gif":
            stream = self._container.add_stream("gif", rate=fps)
            stream.pix_fmt = "rgb8"
        else:
            stream = self._container.add_stream("libx264", rate=fps)
            stream.pix_fmt = "yuv420p"
            stream.options = {"preset": "veryfast", "crf": "21", "tune": "film"}
        stream.width, stream.height = size
        stream.time_base = Fraction(1, fps)
        return stream

    def _add_audio(self, sample_rate: int):
        stream = self._container.add_stream("aac", rate=sample_rate)
        stream.layout = "mono"
        stream.bit_rate = 96_000
        return stream

    def add_audio(self, samples: np.ndarray) -> None:
        """Appends `samples` (float, mono, at the writer's rate) to the sound track."""
        with self._audio_lock:
            self._pending = np.concatenate([self._pending, np.clip(samples, -1, 1).astype(np.float32)])
            self.audio_added += len(samples)

    def write(self, frame: np.ndarray) -> None:
        """Queues `frame` (the writer owns it from now on: do not change it); waits while the queue is full."""
        self._raise_failure()
        self._queue.put(frame)

    def _encode_all(self) -> None:
        try:
            while (frame := self._queue.get()) is not _DONE:
                self._encode(frame)
        except BaseException as e:  # reported to the rendering thread at its next write or close
            self._failure = e
            while self._queue.get() is not _DONE:  # keep taking frames so that the renderer never blocks
                pass

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise RuntimeError("the video encoder failed") from self._failure

    def _encode(self, frame: np.ndarray) -> None:
        if self.fmt == "gif":
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        else:  # OpenCV's SIMD conversion is several times faster than swscale's
            video_frame = av.VideoFrame.from_ndarray(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420), format="yuv420p")
        video_frame.pts = self.frames
        self._container.mux(self._video.encode(video_frame))
        self.frames += 1
        # Audio goes in alongside, so the muxer interleaves as it goes instead of buffering the video.
        self._write_audio(until=int(self.frames / self.fps * self._sample_rate))

    def _finish_queue(self) -> None:
        self._queue.put(_DONE)
        self._thread.join()

    def close(self) -> None:
        self._finish_queue()
        self._raise_failure()
        self._container.mux(self._video.encode(None))
        self._write_audio(until=self.audio_added, last=True)
        if self._audio is not None:
            self._container.mux(self._audio.encode(None))
        self._container.close()

    def _write_audio(self, until: int, last: bool = False) -> None:
        """Encodes the audio added, up to sample `until`; a short chunk only as the `last` (AAC's rule)."""
        if self._audio is None:
            return
        with self._audio_lock:
            until = min(until, self.audio_added)  # a video may outlast its audio: never encode an empty chunk
            while self._audio_written + AAC_FRAME <= until or (last and until > self._audio_written):
                chunk, self._pending = self._pending[:AAC_FRAME], self._pending[AAC_FRAME:]
                frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                frame.sample_rate = self._sample_rate
                frame.pts = self._audio_written
                frame.time_base = Fraction(1, self._sample_rate)
                self._container.mux(self._audio.encode(frame))
                self._audio_written += len(chunk)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._finish_queue()
            self._container.close()
