"""Closed lids: during a blink the warp squeezes the eyeball into a slit that still shows the pupil.

When the lids are nearly shut, paint the slit with the lid's own skin tone (sampled from the photo
just above each upper lid) and a soft lash line, fading in with the blink.
"""

from __future__ import annotations

import cv2
import numpy as np

from talkmill_engine.render import landmarks as L
from talkmill_engine.render.mouth import polygon_mask
from talkmill_engine.render.rig import Rig, smoothstep


class Eyelids:
    def __init__(self, image: np.ndarray, rig: Rig) -> None:
        self.iod = rig.iod
        self.skin = [_lid_colour(image, rig.base, eye) for eye in L.EYES]

    def paint(self, frame: np.ndarray, points: np.ndarray, blink: float) -> None:
        alpha = float(smoothstep(0.45, 0.95, np.asarray(blink)))
        if alpha <= 0:
            return
        for eye, skin in zip(L.EYES, self.skin):
            self._close(frame, points, eye, skin, alpha)

    def _close(self, frame: np.ndarray, points: np.ndarray, eye: dict, skin: np.ndarray, alpha: float) -> None:
        outline = np.vstack([points[eye["upper"]], points[eye["lower"][-2:0:-1]]])
        pad = max(int(0.05 * self.iod), 2)
        x1, y1 = np.floor(outline.min(axis=0)).astype(int) - pad
        x2, y2 = np.ceil(outline.max(axis=0)).astype(int) + pad
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, frame.shape[1]), min(y2, frame.shape[0])
        if x2 - x1 < 3 or y2 - y1 < 3:
            return
        shape = (y2 - y1, x2 - x1)
        # Grow the slit by a pixel so its anti-aliased edge blends into the lid.
        mask = cv2.dilate(polygon_mask(outline - [x1, y1], shape), np.ones((3, 3), np.uint8))
        lashes = np.zeros(shape, np.uint8)
        lower = np.round((points[eye["lower"]] - [x1, y1]) * 16).astype(np.int32)
        thickness = max(round(0.012 * self.iod), 1)  # in pixels: `shift` scales points, not thickness
        cv2.polylines(lashes, [lower], False, 255, thickness=thickness, lineType=cv2.LINE_AA, shift=4)
        region = frame[y1:y2, x1:x2].astype(np.float32)
        lid = region + (skin - region) * (mask * alpha)[..., None]
        lid *= 1 - (lashes.astype(np.float32) / 255 * 0.4 * alpha)[..., None]
        frame[y1:y2, x1:x2] = lid.astype(np.uint8)


def _lid_colour(image: np.ndarray, base: np.ndarray, eye: dict) -> np.ndarray:
    """Median colour of the band between the upper lid and its crease."""
    band = np.vstack([base[eye["upper"]], base[eye["crease"][::-1]]])
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(band).astype(np.int32)], 255)
    pixels = image[mask > 0]
    return np.median(pixels, axis=0).astype(np.float32) if len(pixels) else np.array([180.0, 140, 120], np.float32)
