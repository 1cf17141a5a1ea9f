"""Does the portrait wear glasses? A frame's bridge crosses the nose between the eyes as a straight edge.

No face-parsing model ships offline, so this is one measured cue: the strongest horizontal edge running
the whole way across the bridge of the nose, between the inner eye corners, from the brows to just below
the eyes, relative to the brightness there. Skin gives shading that varies along the row (0.7–1.4 on four
test faces); a frame's bridge gives one coherent edge (5.4 for Grace Hopper's).
"""

from __future__ import annotations

import cv2
import numpy as np

BRIDGE_EDGE_THRESHOLD = 3.0  # percent of the local brightness, per pixel of edge


def wears_glasses(image: np.ndarray, landmarks: np.ndarray) -> bool:
    return bridge_edge(image, landmarks) > BRIDGE_EDGE_THRESHOLD


def bridge_edge(image: np.ndarray, landmarks: np.ndarray) -> float:
    lm = landmarks[:, :2]
    iod = float(np.linalg.norm(lm[468] - lm[473])) or 1.0
    left, right = sorted([lm[133, 0], lm[362, 0]])
    x1, x2 = int(left + 0.25 * (right - left)), int(right - 0.25 * (right - left))
    y1 = int(min(lm[[107, 336], 1].min(), lm[168, 1] - 0.2 * iod))  # inner brow ends, or above the bridge
    y2 = int(lm[[133, 362], 1].mean() + 0.15 * iod)
    x1, y1 = max(x1, 0), max(y1, 0)
    if x2 - x1 < 3 or y2 - y1 < 3:
        return 0.0
    grey = cv2.cvtColor(image[y1:y2, x1:x2], cv2.COLOR_RGB2GRAY).astype(np.float32)
    grey = cv2.GaussianBlur(grey, (0, 0), 0.01 * iod + 0.5)
    edge = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3) / 8
    return float(np.abs(edge.mean(axis=1)).max() / max(grey.mean(), 1.0) * 100)
