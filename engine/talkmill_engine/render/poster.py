"""The talk's poster: which frame to show before playback (eyes open, mouth closed), and its JPEG bytes."""

from __future__ import annotations

import io

import numpy as np

DEFAULT_FPS = 25
SETTLE_SECONDS = 0.4  # the head eases in from rest: frame 0 is often mid-motion or before the first blink
SEARCH_SECONDS = 4.0  # prefer an early frame: a poster should look like the start of the talk
JPEG_QUALITY = 85


class PosterPicker:
    """Keeps, as frames go by, the one with the most open eyes and the most closed mouth within the first
    seconds after the head settles; in a talk shorter than that, the last frame."""

    def __init__(self, fps: int = DEFAULT_FPS) -> None:
        self.first = int(SETTLE_SECONDS * fps)
        self.last = int(SEARCH_SECONDS * fps)
        self.frame: np.ndarray | None = None
        self._best = np.inf

    def offer(self, index: int, pose: dict[str, float], frame: np.ndarray) -> None:
        """Frame `index` with its pose (the tracks' values); copied when it is the best so far."""
        if index < self.first:
            self.frame = frame.copy()  # a talk may end before the search starts
        elif index < self.last and (cost := frame_cost(pose)) < self._best:
            self._best, self.frame = cost, frame.copy()


def frame_cost(pose: dict[str, float]) -> float:
    """Closed eyes weigh most (a half-blink looks worst), then an open or pressed mouth."""
    return 4.0 * abs(pose.get("blink", 0.0)) + abs(pose.get("jaw", 0.0)) + 0.5 * abs(pose.get("press", 0.0))


def encode_jpeg(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """An RGB uint8 frame as JPEG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8), "RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
