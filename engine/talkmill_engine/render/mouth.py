"""What shows when the lips part: a dark cavity, a tongue, and teeth.

If the photo shows its own teeth (an open mouth), that patch of the photo is carried rigidly with the
upper lip, as real upper teeth are. Otherwise teeth are drawn: shaded incisors under the upper lip
(darker toward the corners and in the lip's shadow, with faint gaps), and lower teeth when the mouth
is wide open. Everything is composited inside the moved inner-lip outline, anti-aliased.
"""

from __future__ import annotations

import cv2
import numpy as np

from talkmill_engine.render import landmarks as L
from talkmill_engine.render.rig import Rig

SHIFT = 4
TOOTH_WIDTHS = (0.105, 0.09, 0.08)  # central, lateral incisor, canine, × iod


class MouthInterior:
    def __init__(self, image: np.ndarray, rig: Rig) -> None:
        self.iod = rig.iod
        self.base = rig.base
        lip = _lip_colour(image, rig.base)
        self.cavity = lip * 0.16
        self.tongue = lip * 0.62 + np.array([18.0, 0, 0])
        skin = image[int(rig.base[1, 1]), int(rig.base[1, 0])].astype(np.float32)  # the nose tip
        # Ivory, tinted by the photo's light so the teeth belong to the same picture.
        self.teeth = (0.7 * np.array([242.0, 232.0, 208.0]) + 0.3 * skin) * np.clip(image.mean() / 130, 0.9, 1.08)
        self.photo_teeth = _photo_teeth(image, rig) if rig.mouth_open else None

    def paint(self, frame: np.ndarray, points: np.ndarray) -> None:
        """Composite the interior into `frame` (in place) inside the inner-lip outline at `points`."""
        loop = points[L.INNER_LOOP]
        x1, y1 = np.floor(loop.min(axis=0)).astype(int) - 2
        x2, y2 = np.ceil(loop.max(axis=0)).astype(int) + 3
        x1, y1 = max(x1, 0), max(y1, 0)
        x2, y2 = min(x2, frame.shape[1]), min(y2, frame.shape[0])
        if x2 - x1 < 2 or y2 - y1 < 2 or _max_gap(points) < 1.0:
            return
        mask = polygon_mask(loop - [x1, y1], (y2 - y1, x2 - x1))
        layer = self._layer(points, x1, y1, x2, y2)
        region = frame[y1:y2, x1:x2].astype(np.float32)
        frame[y1:y2, x1:x2] = (region + (layer - region) * mask[..., None]).astype(np.uint8)

    def _layer(self, points: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
        h, w = y2 - y1, x2 - x1
        xs = np.arange(w, dtype=np.float32) + x1
        ys = np.arange(h, dtype=np.float32)[:, None] + y1
        upper = _curve_at(points[L.LIP_INNER_UPPER], xs)
        lower = _curve_at(points[L.LIP_INNER_LOWER], xs)
        centre_x = float(points[[13, 14], 0].mean())
        half = max(float(np.ptp(points[L.LIP_INNER_UPPER, 0])) / 2, 1.0)
        across = np.clip(np.abs(xs - centre_x) / half, 0, 1)
        depth = np.clip((ys - upper) / np.maximum(lower - upper, 1.0), 0, 1)  # 0 at upper lip, 1 at lower
        shade = (0.55 + 0.45 * np.sin(np.pi * depth) * (1 - across**2))[..., None]
        layer = np.broadcast_to(self.cavity, (h, w, 3)) * (1.4 - 0.6 * shade)
        layer = self._tongue(layer, xs, ys, upper, lower, across)
        if self.photo_teeth is not None:
            return self._photo(layer, points, x1, y1)
        return self._drawn_teeth(layer, xs, ys, upper, lower, across, centre_x)

    def _tongue(self, layer, xs, ys, upper, lower, across) -> np.ndarray:
        gap = lower - upper
        top = lower - 0.38 * gap
        inside = np.clip((ys - top) / np.maximum(0.3 * gap, 1.0), 0, 1) * (1 - across**3)
        visible = np.clip((gap - 0.12 * self.iod) / (0.1 * self.iod), 0, 1)  # only when wide open
        weight = (inside * visible)[..., None]
        return layer + (self.tongue - layer) * weight * 0.8

    def _drawn_teeth(self, layer, xs, ys, upper, lower, across, centre_x) -> np.ndarray:
        iod = self.iod
        gap = lower - upper
        height = 0.055 * iod * (1 - 0.5 * across**2)  # the visible part: the upper lip hides the rest
        edge = np.clip((upper + height - ys) / 1.5, 0, 1)  # 1 inside the upper teeth, soft lower edge
        shadow = 0.82 + 0.18 * np.clip((ys - upper) / np.maximum(0.4 * height, 1.0), 0, 1)
        tone = (1 - 0.45 * across**2) * shadow * _tooth_gaps(xs, centre_x, iod)
        upper_teeth = edge * (across < 0.93)
        low_height = 0.05 * iod * np.clip((gap - 0.14 * iod) / (0.08 * iod), 0, 1)
        lower_teeth = np.clip((ys - (lower - low_height)) / 1.2, 0, 1) * (across < 0.7) * (low_height > 0.5)
        teeth = self.teeth * tone[..., None]
        layer = layer + (teeth - layer) * upper_teeth[..., None]
        return layer + (teeth * 0.82 - layer) * lower_teeth[..., None]

    def _photo(self, layer: np.ndarray, points: np.ndarray, x1: int, y1: int) -> np.ndarray:
        patch, mask, (px, py) = self.photo_teeth
        offset = points[13] - self.base[13]  # the upper lip carries the teeth
        matrix = np.float32([[1, 0, px + offset[0] - x1], [0, 1, py + offset[1] - y1]])
        size = (layer.shape[1], layer.shape[0])
        moved = cv2.warpAffine(patch, matrix, size, flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(mask, matrix, size, flags=cv2.INTER_LINEAR)[..., None]
        return layer + (moved.astype(np.float32) - layer) * alpha


def _tooth_gaps(xs: np.ndarray, centre_x: float, iod: float) -> np.ndarray:
    """Faint dark lines between teeth, from the centre outwards."""
    tone = np.ones_like(xs)
    edges = np.cumsum((0.0,) + TOOTH_WIDTHS) * iod
    for edge in edges:
        for x in (centre_x - edge, centre_x + edge):
            tone *= 1 - 0.08 * np.exp(-(((xs - x) / max(0.006 * iod, 0.6)) ** 2))
    return tone


def _curve_at(curve: np.ndarray, xs: np.ndarray) -> np.ndarray:
    order = np.argsort(curve[:, 0])
    return np.interp(xs, curve[order, 0], curve[order, 1]).astype(np.float32)


def _max_gap(points: np.ndarray) -> float:
    return float(np.max(points[L.LIP_INNER_LOWER[1:-1], 1] - points[L.LIP_INNER_UPPER[1:-1], 1]))


def polygon_mask(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    fixed = np.round(polygon * (1 << SHIFT)).astype(np.int32)
    cv2.fillPoly(mask, [fixed], 255, lineType=cv2.LINE_AA, shift=SHIFT)
    return mask.astype(np.float32) / 255


def _lip_colour(image: np.ndarray, base: np.ndarray) -> np.ndarray:
    mask = np.zeros(image.shape[:2], np.uint8)
    outer = np.round(base[L.LIP_OUTER_UPPER + L.LIP_OUTER_LOWER[::-1]]).astype(np.int32)
    inner = np.round(base[L.INNER_LOOP]).astype(np.int32)
    cv2.fillPoly(mask, [outer], 255)
    cv2.fillPoly(mask, [inner], 0)
    pixels = image[mask > 0]
    return pixels.mean(axis=0).astype(np.float32) if len(pixels) else np.array([150.0, 80, 80], np.float32)


def _photo_teeth(image: np.ndarray, rig: Rig) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """The photo's own mouth interior: (patch, alpha mask, top-left) in the photo's coordinates."""
    loop = rig.base[L.INNER_LOOP]
    x1, y1 = np.floor(loop.min(axis=0)).astype(int) - 1
    x2, y2 = np.ceil(loop.max(axis=0)).astype(int) + 2
    x1, y1 = max(x1, 0), max(y1, 0)
    patch = image[y1:y2, x1:x2].copy()
    mask = polygon_mask(loop - [x1, y1], patch.shape[:2])
    mask = cv2.erode(mask, np.ones((2, 2), np.uint8))  # keep the lips' own edge out of the patch
    return patch, mask, (x1, y1)
