"""Blinks: the lid comes down over the eye, as skin; the eye beneath is covered, not squashed.

The rig slides the upper lid down with its crease. Between crease and lashes an open eye shows the lid's
fold, lashes and shadow, which would come down as a dark smudge; a closing lid shows skin there, so that
band takes the photo's own skin (mirrored, texture and all) from just above the crease, or, behind
glasses (whose frame runs along the crease), from under the eye; the lashes stay at its edge. Where that
is not plain skin either, the warp's lid stays. Inside the narrowing opening the warp would squeeze the
eyeball (an iris flattened to a smear): the photo's eyeball is shown there instead, whole, moved with the
head only. Where the lids meet, the lid's skin darkens to a thin line of the lashes' own colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from talkmill_engine.render import landmarks as L
from talkmill_engine.render.mouth import curve_at, polygon_mask
from talkmill_engine.render.rig import Rig, smoothstep
from talkmill_engine.render.teeth import skin_lab, to_lab

SEEN_FROM = 0.05  # blinks below this leave the warp alone
PLAIN_SKIN = 18.0  # ΔE (Lab) from the skin by the mouth: above this it is not skin (a frame, brows, shadow)
LASH_KEEP = 0.3  # of the band above the lashes that keeps the warp's own lid: the lash line
LID_SHADE = 0.15  # darker toward the lashes
LID_ABOVE, LASH_WIDTH = 0.025, 0.007  # × iod: where shut lids take their skin from; the lash line's half-width


@dataclass
class Eye:
    outline: list[int]  # upper lid corner to corner, then the lower lid back
    patch: np.ndarray  # the photo's eye, float32
    origin: tuple[int, int]
    depth: float
    lashes: np.ndarray  # RGB, of the line where the lids meet
    crease: list[int]
    lid: list[int]  # the upper lid, corner to corner
    lower: list[int]
    skin_from: str | None  # "above" the crease, "below" the lower lid, or None: the lid's skin source


class Eyelids:
    def __init__(self, image: np.ndarray, rig: Rig) -> None:
        self.rig = rig
        self.eyes = [_eye(image, rig, eye) for eye in L.EYES]

    def paint(self, frame: np.ndarray, points: np.ndarray, pose: dict[str, float]) -> None:
        blink = float(pose.get("blink", 0.0))
        if blink < SEEN_FROM:
            return
        for eye in self.eyes:
            if eye.skin_from:
                self._skin_over_fold(frame, points, eye, blink)
            self._cover(frame, points, pose, eye, blink)

    def _skin_over_fold(self, frame: np.ndarray, points: np.ndarray, eye: Eye, blink: float) -> None:
        lid, crease = points[eye.lid], points[eye.crease]
        x1, x2 = int(np.floor(lid[:, 0].min())), int(np.ceil(lid[:, 0].max())) + 1
        xs = np.arange(max(x1, 0), min(x2, frame.shape[1]), dtype=np.float32)
        if len(xs) < 3:
            return
        edge = curve_at(lid, xs)
        top = np.minimum(curve_at(crease, xs), edge - 1)
        band = edge - top
        y1, y2 = max(int(np.floor(top.min())), 0), min(int(np.ceil(edge.max())) + 1, frame.shape[0])
        ys = np.arange(y1, y2, dtype=np.float32)[:, None]
        # Mirrored about the crease (seamless there), or about the lower lid.
        mirror = top if eye.skin_from == "above" else curve_at(points[eye.lower], xs)
        source_y = np.broadcast_to(2 * mirror - ys, (len(ys), len(xs))).astype(np.float32)
        skin = cv2.remap(frame, np.broadcast_to(xs, source_y.shape).astype(np.float32), source_y,
                         cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        down = np.clip((ys - top) / band, 0, 1)
        skin *= (1 - LID_SHADE * down)[..., None]  # the lid turns away from the light toward its edge
        centre, half = (xs[0] + xs[-1]) / 2, max((xs[-1] - xs[0]) / 2, 1.0)
        weight = np.clip((ys - top) / 2 + 0.5, 0, 1) * np.clip((edge - ys) / (LASH_KEEP * band), 0, 1)
        weight = weight * (1 - smoothstep(0.7, 1.0, np.abs(xs - centre) / half))
        weight = weight * float(smoothstep(0.2, 0.8, np.asarray(blink)))
        region = frame[y1:y2, int(xs[0]) : int(xs[-1]) + 1].astype(np.float32)
        mixed = region + (skin - region) * weight[..., None]
        frame[y1:y2, int(xs[0]) : int(xs[-1]) + 1] = mixed.astype(np.uint8)

    def _cover(self, frame: np.ndarray, points: np.ndarray, pose: dict[str, float], eye: Eye, blink: float) -> None:
        head = self.rig.head_matrix(pose, eye.depth)
        opening = points[eye.outline]
        rest = self.rig.base[eye.outline] @ head[:, :2].T + head[:, 2]
        x1, y1 = np.floor(np.minimum(opening.min(axis=0), rest.min(axis=0))).astype(int) - 2
        x2, y2 = np.ceil(np.maximum(opening.max(axis=0), rest.max(axis=0))).astype(int) + 3
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, frame.shape[1]), min(y2, frame.shape[0])
        if x2 - x1 < 3 or y2 - y1 < 3:
            return
        shape = (y2 - y1, x2 - x1)
        # Inside both the lids' opening now and the eye's own outline (a widened eye shows no skin inside).
        mask = np.minimum(polygon_mask(opening - [x1, y1], shape), polygon_mask(rest - [x1, y1], shape))
        shift = head[:, :2] @ np.asarray(eye.origin, np.float64) + head[:, 2] - [x1, y1]
        placed = np.hstack([head[:, :2], shift[:, None]]).astype(np.float32)
        inside = cv2.warpAffine(eye.patch, placed, (shape[1], shape[0]), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        meet = float(smoothstep(0.7, 1.0, np.asarray(blink)))
        if meet > 0:  # the warp squeezes the eyeball into a slit a pixel or two tall: cover all of it
            mask = np.maximum(mask, meet * cv2.dilate(mask, np.ones((3, 1), np.uint8)))
            inside += (self._lash_line(frame, points, eye, x1, y1, shape) - inside) * meet
        region = frame[y1:y2, x1:x2].astype(np.float32)
        frame[y1:y2, x1:x2] = (region + (inside - region) * mask[..., None]).astype(np.uint8)

    def _lash_line(self, frame: np.ndarray, points: np.ndarray, eye: Eye, x1: int, y1: int, shape) -> np.ndarray:
        """Shut lids: the lid's own skin from just above, darkening to the lashes' colour along the line
        where the lids meet."""
        xs = np.arange(shape[1], dtype=np.float32) + x1
        ys = np.arange(shape[0], dtype=np.float32)[:, None] + y1
        meeting = (curve_at(points[eye.lid], xs) + curve_at(points[eye.lower], xs)) / 2
        rows = np.clip(np.round(meeting - LID_ABOVE * self.rig.iod).astype(int), 0, frame.shape[0] - 1)
        lid = frame[rows, np.clip(xs.astype(int), 0, frame.shape[1] - 1)].astype(np.float32)[None]
        lid = cv2.blur(lid, (5, 1))  # one row repeated down would streak
        line = np.exp(-(((ys - meeting) / max(LASH_WIDTH * self.rig.iod, 0.7)) ** 2))[..., None]
        return lid + (eye.lashes - lid) * line


def _eye(image: np.ndarray, rig: Rig, eye: dict) -> Eye:
    outline = eye["upper"] + eye["lower"][-2:0:-1]
    points = rig.base[outline]
    pad = max(int(0.05 * rig.iod), 2)
    x1, y1 = np.floor(points.min(axis=0)).astype(int) - pad
    x2, y2 = np.ceil(points.max(axis=0)).astype(int) + pad
    x1, y1 = max(x1, 0), max(y1, 0)
    patch = image[y1:y2, x1:x2].astype(np.float32)
    return Eye(outline, patch, (int(x1), int(y1)), float(rig.depth[outline].mean()), _lash_colour(image, rig, eye),
               eye["crease"], eye["upper"], eye["lower"], _skin_source(image, rig, eye))


def _skin_source(image: np.ndarray, rig: Rig, eye: dict) -> str | None:
    """Where a closing lid's skin comes from: above the crease, or below the lower lid behind glasses; a
    band as tall as the eye and its fold, if it has the colour of the face's skin."""
    crease, lower = rig.base[eye["crease"]], rig.base[eye["lower"]]
    height = float(np.median(curve_at(lower, crease[:, 0]) - crease[:, 1]))
    side, edge, step = ("below", lower, height) if rig.glasses else ("above", crease, -height)
    band = np.vstack([edge, (edge + [0, step])[::-1]])
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(band).astype(np.int32)], 255)
    pixels = image[mask > 0]
    if not len(pixels):
        return None
    skin = skin_lab(image, rig.base, rig.iod)
    return side if float(np.linalg.norm(np.median(to_lab(pixels), axis=0) - skin)) < PLAIN_SKIN else None


def _lash_colour(image: np.ndarray, rig: Rig, eye: dict) -> np.ndarray:
    """Half the darker pixels along the upper lid's edge (lashes, in this photo's light), half the lid's
    median: a closed eye's lash line is soft at this size."""
    mask = np.zeros(image.shape[:2], np.uint8)
    thickness = max(round(0.02 * rig.iod), 1)
    cv2.polylines(mask, [np.round(rig.base[eye["upper"]]).astype(np.int32)], False, 255, thickness=thickness)
    pixels = image[mask > 0].astype(np.float32)
    if not len(pixels):
        return np.array([60.0, 45, 40], np.float32)
    luma = pixels.mean(axis=1)
    return (pixels[luma <= np.percentile(luma, 25)].mean(axis=0) + np.median(pixels, axis=0)) / 2
