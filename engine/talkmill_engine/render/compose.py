"""Framing a talk: the face crop the rig works on, and how each animated face becomes an output frame.

Crop mode (stitch false): the square face crop at 512×512. Stitch mode: the whole portrait, the
animated crop pasted back in place (border points of the rig never move, so the seam is invisible).
"""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np

from talkmill_engine.render.face import FaceFit

OUTPUT_SIZE = 512
MAX_STITCH_WORK = 1024  # a larger face crop is animated at this size and scaled back


class Framing:
    def __init__(self, image: np.ndarray, fit: FaceFit, stitch: bool, sharpen: bool) -> None:
        (left, top), side = fit.top_left, fit.size
        crop = image[top : top + side, left : left + side]
        self.stitch = stitch
        if stitch:
            height, width = image.shape[:2]
            self.out_size = (width - width % 2, height - height % 2)  # H.264 wants even sides
            self.background = np.ascontiguousarray(image[: self.out_size[1], : self.out_size[0]])
            self.box = (left, top, side)
            work_side = min(side, MAX_STITCH_WORK)
        else:
            self.out_size = (OUTPUT_SIZE, OUTPUT_SIZE)
            work_side = OUTPUT_SIZE
        interpolation = cv2.INTER_AREA if work_side < side else cv2.INTER_CUBIC
        work = cv2.resize(crop, (work_side, work_side), interpolation=interpolation) if work_side != side else crop
        upscaled = work_side > side * 1.2
        self.work = _unsharp(work) if sharpen and upscaled else np.ascontiguousarray(work)
        self.work_size = (work_side, work_side)

    def compose(self, face: np.ndarray) -> np.ndarray:
        if not self.stitch:
            return face
        left, top, side = self.box
        if face.shape[0] != side:
            face = cv2.resize(face, (side, side), interpolation=cv2.INTER_LINEAR)
        out = self.background.copy()
        h = min(side, out.shape[0] - top)
        w = min(side, out.shape[1] - left)
        out[top : top + h, left : left + w] = face[:h, :w]
        return out


class LogoOverlay:
    """An RGBA logo at `position` [x, y] (negative counts from the far edge), at most a fifth of the width."""

    def __init__(self, logo: np.ndarray, size: tuple[int, int], spec: dict[str, Any] | None) -> None:
        width, height = size
        scale = min(1.0, width / 5 / logo.shape[1])
        if scale < 1:
            logo = cv2.resize(logo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        h, w = logo.shape[:2]
        x, y = (spec or {}).get("position") or [0, 0]
        x = int(np.clip(x if x >= 0 else width + x - w, 0, width - w))
        y = int(np.clip(y if y >= 0 else height + y - h, 0, height - h))
        self.box = (x, y, w, h)
        self.rgb = logo[..., :3].astype(np.float32)
        self.alpha = logo[..., 3:4].astype(np.float32) / 255

    def apply(self, frame: np.ndarray) -> None:
        x, y, w, h = self.box
        region = frame[y : y + h, x : x + w].astype(np.float32)
        frame[y : y + h, x : x + w] = (region + (self.rgb - region) * self.alpha).astype(np.uint8)


class Stopwatch:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 4)
        self._last = now


def _unsharp(image: np.ndarray, amount: float = 0.6) -> np.ndarray:
    """Upscaled crops are soft: sharpen once, before animation (config.sharpen)."""
    blurred = cv2.GaussianBlur(image, (0, 0), 1.2)
    return cv2.addWeighted(image, 1 + amount, blurred, -amount, 0)
