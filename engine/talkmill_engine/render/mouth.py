"""What shows when the lips part, painted per frame inside the moved inner-lip outline.

Back to front: the cavity (dark at the back, lit toward the lips), the tongue (low on open vowels, its tip
raised to the upper teeth for l and th), the lower teeth (with the jaw, partly hidden, seen on wide-open
shapes), the upper teeth (with the head: the upper lip slides over them), then the lips' shadow along the
inner edges and in the corners, and the photo's own grain. Teeth come from teeth.py (a photographed
texture, or the portrait's own). Everything is in a small box around the mouth; the outline's edge is
anti-aliased and softened.
"""

from __future__ import annotations

import cv2
import numpy as np

from talkmill_engine.render import landmarks as L
from talkmill_engine.render.rig import Rig, smoothstep
from talkmill_engine.render.teeth import (SKIN_SAMPLES, Layer, closed_lip_line, from_lab, photo_teeth, skin_lab,
                                          texture_teeth)

SHIFT = 4
# The cavity's colour, as fractions of the lips' (in their reddish shade): the cheeks' inner walls, lit from
# the front, and the throat at the back, seen deep in the middle of the opening.
WALL = np.array([0.55, 0.33, 0.3], np.float32)
BACK = np.array([0.24, 0.12, 0.1], np.float32)
TONGUE_LOW = 0.42  # of the lip gap, at rest on the floor of the mouth
TONGUE_TIP = 0.55  # more, at the middle, with the tip raised
LOWER_SHOW = 0.035  # × iod of lower teeth seen on a wide-open mouth (the lower lip hides the rest)
# The inner edge of the lips: moist, pink (the lips' own colour, a little deeper), RIM × iod wide, and a thin
# soft shadow inside it; a closed mouth's line is the lips' own colour, darkened in a soft line.
RIM_LOWER, RIM_UPPER = 0.007, 0.005
MOIST = np.array([0.92, 0.8, 0.8], np.float32)
LIP_SAMPLE = (0.022, 0.012)  # × iod above the upper inner lip and below the lower: the lips' own colour there
SEAM_DEPTH = (0.2, 0.38)
SEAM_TINT = np.array([0.75, 1.1, 1.1], np.float32)  # a shadow on lips: the red stays  # how much darker closed lips meet: at the middle, at the corners


class MouthInterior:
    def __init__(self, image: np.ndarray, rig: Rig) -> None:
        self.rig = rig
        self.iod = rig.iod
        lip = lip_colour(image, rig.base)
        shade = np.sqrt(lip / max(float(lip.max()), 1.0))  # light inside a mouth is reddened by it
        self.wall, self.back = lip * WALL, lip * BACK
        self.tongue = lip * np.array([0.95, 0.66, 0.66], np.float32)
        self.shadow_tint = (1 + 0.6 * (1 - shade)).astype(np.float32)  # shadows redden too: less red goes
        self.upper, self.lower = texture_teeth(image, rig, shade)
        if rig.mouth_open:
            self.upper = photo_teeth(image, rig, lip)
        self.depth = float(rig.depth[13])
        self.grain = grain(image, rig)
        self.rest_line = rig.mouth_centre + float(closed_lip_line(rig, np.zeros(1))[0]) * rig.axis_v
        self.soft = max(0.6, 0.005 * rig.iod)  # px: the blur of the outline's edge
        self.skin_grey = float(np.mean(from_lab(skin_lab(image, rig.base, rig.iod))))

    def paint(self, frame: np.ndarray, points: np.ndarray, pose: dict[str, float]) -> None:
        """Composite the interior into `frame` (in place) inside the inner-lip outline at `points`."""
        loop = points[L.INNER_LOOP]
        x1, y1 = np.floor(loop.min(axis=0)).astype(int) - 3
        x2, y2 = np.ceil(loop.max(axis=0)).astype(int) + 4
        x1, y1 = max(x1, 0), max(y1, 0)
        x2, y2 = min(x2, frame.shape[1]), min(y2, frame.shape[0])
        if x2 - x1 < 2 or y2 - y1 < 2 or (_max_gap(points) < 1.0 and not self.rig.mouth_open):
            return
        mask = polygon_mask(loop - [x1, y1], (y2 - y1, x2 - x1))
        if self.rig.mouth_open:  # its closed lips squeeze the photo's teeth into the seam: cover a line
            mask = cv2.dilate(mask, np.ones((5, 1), np.uint8))  # (and its lips' edges may hold teeth pixels)
        mask = cv2.GaussianBlur(mask, (0, 0), self.soft)
        region = frame[y1:y2, x1:x2].astype(np.float32)
        layer = self._layer(region, points, pose, x1, y1, x2, y2)
        frame[y1:y2, x1:x2] = np.clip(region + (layer - region) * mask[..., None], 0, 255).astype(np.uint8)

    def _layer(self, region: np.ndarray, points: np.ndarray, pose: dict[str, float], x1: int, y1: int, x2: int,
               y2: int) -> np.ndarray:
        xs = np.arange(x2 - x1, dtype=np.float32) + x1
        ys = np.arange(y2 - y1, dtype=np.float32)[:, None] + y1
        upper = curve_at(points[L.LIP_INNER_UPPER], xs)
        lower = curve_at(points[L.LIP_INNER_LOWER], xs)
        centre_x = float(points[[13, 14], 0].mean())
        half = max(float(np.ptp(points[L.LIP_INNER_UPPER, 0])) / 2, 1.0)
        across = np.clip(np.abs(xs - centre_x) / half, 0, 1)
        gap = np.maximum(lower - upper, 1.0)
        tongue = float(pose.get("tongue", 0.0))
        layer = self._cavity(ys, upper, gap, across)
        layer = self._tongue(layer, ys, lower, gap, across, tongue)
        head = self.rig.head_matrix(pose, self.depth)
        lower_teeth = self._lower_matrix(head, points)
        if lower_teeth is not None:
            layer = _over(layer, self.lower, lower_teeth, x1, y1)
        layer = _over(layer, self.upper, head, x1, y1)
        dark = 1 - self._shadow(ys, upper, lower, across)[..., None]
        layer = layer * np.clip(1 - dark * self.shadow_tint, 0, 1)
        above, below = self._lips_beside(region, upper, lower, y1)
        layer = self._rim(layer, ys, upper, lower, above, below)
        layer = self._tongue_tip(layer, ys, lower, gap, across, tongue)
        closing = (1 - smoothstep(0.0, 0.03 * self.iod, lower - upper))[..., None]
        if closing.max() > 0:
            layer = layer + (self._seam(ys, upper, lower, across, above, below) - layer) * closing
        # The photo's grain, weaker in the dark (as a camera's is, relative to what it sees)
        light = np.sqrt(np.clip(layer.mean(axis=2, keepdims=True) / self.skin_grey, 0.15, 1.0))
        return layer + self.grain[y1:y2, x1:x2, None] * light

    def _cavity(self, ys, upper, gap, across) -> np.ndarray:
        """Red-brown walls, lit from the front; the throat dark, deep in the middle and a little low; a narrow
        opening lets less light in (_shadow)."""
        depth = (ys - upper) / gap  # 0 at the upper lip, 1 at the lower
        deep = np.exp(-2.2 * (across**2 + ((depth - 0.55) / 0.6) ** 2))[..., None]
        return self.wall + (self.back - self.wall) * deep

    def _tongue(self, layer, ys, lower, gap, across, tip: float, width=1.0, lit=0.5, seen_from=(0.03, 0.09)):
        if gap.max() <= seen_from[0] * self.iod:  # not in a barely open mouth
            return layer
        height = gap * (TONGUE_LOW * (1 - 0.45 * across**2) + TONGUE_TIP * tip * np.exp(-((across / 0.4) ** 2)))
        top = lower - height
        inside = smoothstep(0.0, 0.025 * self.iod, ys - top) * (1 - np.minimum(across / width, 1) ** 3)
        seen = smoothstep(seen_from[0] * self.iod, seen_from[1] * self.iod, gap)
        front = np.clip((ys - top) / np.maximum(height, 1.0), 0, 1)  # its top recedes into the dark
        tone = ((lit + (1 - lit) * np.sqrt(front)) * (1 - 0.4 * across**2))[..., None]
        return layer + (self.tongue * tone - layer) * (inside * seen)[..., None]

    def _tongue_tip(self, layer, ys, lower, gap, across, tip: float) -> np.ndarray:
        """For th the tip comes forward between the teeth, in the light: the middle of the tongue again,
        over the teeth and the lips' shadow."""
        forward = float(smoothstep(0.75, 1.0, np.asarray(tip)))
        if forward <= 0:
            return layer
        tipped = self._tongue(layer, ys, lower, gap, across, tip, width=0.35, lit=0.8, seen_from=(0.01, 0.04))
        return layer + (tipped - layer) * forward

    def _lower_matrix(self, head: np.ndarray, points: np.ndarray) -> np.ndarray | None:
        """The head's map, then down with the jaw to the lower lip, less the part of the row it uncovers;
        None while the lower lip hides the whole row."""
        down = head[:, :2] @ self.rig.axis_v
        gap = float((points[14] - points[13]) @ down)
        seen = LOWER_SHOW * self.iod * float(smoothstep(0.14 * self.iod, 0.26 * self.iod, np.asarray(gap)))
        if seen <= 0:
            return None
        rest = head[:, :2] @ self.rest_line + head[:, 2]
        drop = float((points[14] - rest) @ down)
        moved = head.copy()
        moved[:, 2] += (drop - seen) * down
        return moved

    def _shadow(self, ys, upper, lower, across) -> np.ndarray:
        """The lips shade the mouth's edges: most under the upper lip, less over the lower, the corners a
        little; and a narrow opening lets little light in at all."""
        below_upper = np.maximum(ys - upper, 0) / (0.025 * self.iod)
        above_lower = np.maximum(lower - ys, 0) / (0.02 * self.iod)
        admitted = 0.45 + 0.55 * smoothstep(0.0, 0.06 * self.iod, lower - upper)
        return ((1 - 0.32 * np.exp(-below_upper)) * (1 - 0.28 * np.exp(-above_lower))
                * (1 - 0.35 * smoothstep(0.7, 1.0, across)) * admitted)

    def _lips_beside(self, region, upper, lower, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """Per column, the lips' own colour just above the upper inner lip and just below the lower one."""
        cols, last = np.arange(region.shape[1]), region.shape[0] - 1
        above = region[np.clip(np.floor(upper - y1 - LIP_SAMPLE[0] * self.iod).astype(int), 0, last), cols]
        below = region[np.clip(np.ceil(lower - y1 + LIP_SAMPLE[1] * self.iod).astype(int), 0, last), cols]
        return above, below

    def _rim(self, layer, ys, upper, lower, above, below) -> np.ndarray:
        """The lips' moist inner edge: their own colour, a shade deeper, fading into the mouth within a pixel
        or two (over the teeth too: the lips cover their edges)."""
        from_lower = np.exp(-np.maximum(lower - ys, 0) / (RIM_LOWER * self.iod))[..., None]
        from_upper = np.exp(-np.maximum(ys - upper, 0) / (RIM_UPPER * self.iod))[..., None]
        layer = layer + (below * MOIST - layer) * from_lower
        return layer + (above * MOIST - layer) * from_upper

    def _seam(self, ys, upper, lower, across, above, below) -> np.ndarray:
        """Closed lips: the lips' own colour from either side of the line, met in a soft darker line (deeper
        toward the corners), not a painted stripe."""
        top, bottom = upper - LIP_SAMPLE[0] * self.iod, lower + LIP_SAMPLE[1] * self.iod
        t = np.clip((ys - top) / np.maximum(bottom - top, 1.0), 0, 1)[..., None]
        lips = above + (below - above) * t
        width = max(1.0, 0.012 * self.iod)
        line = np.exp(-(((ys - (upper + lower) / 2) / width) ** 2))
        depth = SEAM_DEPTH[0] + (SEAM_DEPTH[1] - SEAM_DEPTH[0]) * across**2
        return lips * np.clip(1 - (line * depth)[..., None] * SEAM_TINT, 0, 1)


def grain(image: np.ndarray, rig: Rig) -> np.ndarray:
    """A still noise field as strong as the photo's own grain (measured on the skin around the mouth), so
    the painted inside of the mouth is not smoother than the picture around it."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    detail = grey - cv2.GaussianBlur(grey, (0, 0), 1.5)
    half = max(int(0.03 * rig.iod), 1)
    samples = [detail[max(int(y) - half, 0) : int(y) + half + 1, max(int(x) - half, 0) : int(x) + half + 1]
               for x, y in rig.base[list(SKIN_SAMPLES), :2]]
    strength = float(np.median([np.std(s) for s in samples if s.size]))
    noise = cv2.GaussianBlur(np.random.default_rng(0).standard_normal(grey.shape).astype(np.float32), (0, 0), 0.7)
    return noise * (strength / max(float(noise.std()), 1e-6))


def _over(layer: np.ndarray, teeth: Layer, matrix: np.ndarray, x1: int, y1: int) -> np.ndarray:
    """`teeth` moved by `matrix` (rest face → frame), composited over `layer` (whose corner is x1, y1)."""
    linear = matrix[:, :2]
    shift = linear @ np.asarray(teeth.origin, np.float64) + matrix[:, 2] - [x1, y1]
    placed = np.hstack([linear, shift[:, None]]).astype(np.float32)
    size = (layer.shape[1], layer.shape[0])
    moved = cv2.warpAffine(teeth.rgba, placed, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return layer + (moved[..., :3] - layer) * moved[..., 3:]


def curve_at(curve: np.ndarray, xs: np.ndarray) -> np.ndarray:
    order = np.argsort(curve[:, 0])
    return np.interp(xs, curve[order, 0], curve[order, 1]).astype(np.float32)


def _max_gap(points: np.ndarray) -> float:
    return float(np.max(points[L.LIP_INNER_LOWER[1:-1], 1] - points[L.LIP_INNER_UPPER[1:-1], 1]))


def polygon_mask(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    fixed = np.round(polygon * (1 << SHIFT)).astype(np.int32)
    cv2.fillPoly(mask, [fixed], 255, lineType=cv2.LINE_AA, shift=SHIFT)
    return mask.astype(np.float32) / 255


def lip_colour(image: np.ndarray, base: np.ndarray) -> np.ndarray:
    mask = np.zeros(image.shape[:2], np.uint8)
    outer = np.round(base[L.LIP_OUTER_UPPER + L.LIP_OUTER_LOWER[::-1]]).astype(np.int32)
    inner = np.round(base[L.INNER_LOOP]).astype(np.int32)
    cv2.fillPoly(mask, [outer], 255)
    cv2.fillPoly(mask, [inner], 0)
    pixels = image[mask > 0]
    return pixels.mean(axis=0).astype(np.float32) if len(pixels) else np.array([150.0, 80, 80], np.float32)
