"""The talk's poster: which frame to show before playback (eyes open, mouth closed), and its JPEG bytes."""

from __future__ import annotations

import io

import numpy as np

DEFAULT_FPS = 25
SETTLE_SECONDS = 0.4  # the head eases in from rest: frame 0 is often mid-motion or before the first blink
SEARCH_SECONDS = 4.0  # prefer an early frame: a poster should look like the start of the talk
JPEG_QUALITY = 85


def poster_frame_index(tracks: dict[str, np.ndarray], fps: int = DEFAULT_FPS) -> int:
    """The frame with the most open eyes and the most closed mouth, within the first seconds after the head
    settles; the whole talk is searched only when it is shorter than that."""
    n_frames = len(next(iter(tracks.values()))) if tracks else 0
    if n_frames <= 1:
        return 0
    cost = _cost(tracks, n_frames)
    first = min(int(SETTLE_SECONDS * fps), n_frames - 1)
    last = max(first + 1, min(int(SEARCH_SECONDS * fps), n_frames))
    return first + int(np.argmin(cost[first:last]))


def _cost(tracks: dict[str, np.ndarray], n_frames: int) -> np.ndarray:
    """Per frame: closed eyes weigh most (a half-blink looks worst), then an open or pressed mouth."""
    zeros = np.zeros(n_frames)
    blink = np.asarray(tracks.get("blink", zeros), dtype=float)
    jaw = np.abs(np.asarray(tracks.get("jaw", zeros), dtype=float))
    press = np.abs(np.asarray(tracks.get("press", zeros), dtype=float))
    return 4.0 * blink + jaw + 0.5 * press


def encode_jpeg(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """An RGB uint8 frame as JPEG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8), "RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
