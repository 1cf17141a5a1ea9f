"""Finding the face: mediapipe's detector on the whole image, then its 478-point mesh on the face crop.

Media models load once per process (`FaceFinder()`); they ship inside mediapipe 0.10.x wheels.
"""

from __future__ import annotations

import logging
import os
import sys
import types
from dataclasses import dataclass

import numpy as np

from talkmill_engine.errors import FaceError

os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ logging: warnings and up only
log = logging.getLogger(__name__)

MIN_FACE_PX = 48  # smaller faces cannot be animated legibly


@dataclass
class FaceFit:
    num_faces: int
    detection: tuple[int, int, int, int]  # x1, y1, x2, y2 of the animated face, in image pixels
    confidence: float
    top_left: tuple[int, int]  # the square face crop, in image pixels
    size: int  # its side


def _mediapipe_solutions():  # type: ignore[no-untyped-def]
    """mediapipe's solutions, imported where the models load. Its drawing helpers import matplotlib.pyplot,
    which rendering never uses: 1.2 s and ~30 MB of every worker. Stand-ins take its place while mediapipe
    imports (unless the process already has matplotlib), then leave, so a later real import still works."""
    stand_ins = [name for name in ("matplotlib", "matplotlib.pyplot") if name not in sys.modules]
    sys.modules.update({name: types.ModuleType(name) for name in stand_ins})
    try:
        import mediapipe as mp
    finally:
        for name in stand_ins:
            del sys.modules[name]
    return mp.solutions


class FaceFinder:
    def __init__(self) -> None:
        solutions = _mediapipe_solutions()
        self._detectors = [
            solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5),
            solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5),
        ]
        self._mesh = solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.3
        )

    def find(self, image: np.ndarray, expand: float) -> FaceFit:
        """The largest face, and the square crop around it that `expand` (align_expand_factor) frames."""
        boxes = self._detect(image)
        if not boxes:
            raise FaceError("No valid face detected", "the portrait must show a face, front-facing")
        box, score = max(boxes, key=lambda b: (b[0][2] - b[0][0]) * (b[0][3] - b[0][1]))
        if box[2] - box[0] < MIN_FACE_PX:
            raise FaceError("No valid face detected", f"the face is {box[2] - box[0]} px wide; at least {MIN_FACE_PX}")
        mesh_box = self._mesh_box(image, box)
        top_left, size = square_crop(mesh_box, expand, image.shape[1], image.shape[0])
        return FaceFit(len(boxes), box, score, top_left, size)

    def _mesh_box(self, image: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """The face's extent from its mesh (forehead to chin, cheek to cheek): steadier than the detector's."""
        (left, top), side = square_crop(box, 0.6, image.shape[1], image.shape[0])
        points = self.landmarks(image[top : top + side, left : left + side])
        x1, y1 = points[:, :2].min(axis=0)
        x2, y2 = points[:, :2].max(axis=0)
        return round(left + x1), round(top + y1), round(left + x2), round(top + y2)

    def landmarks(self, crop: np.ndarray) -> np.ndarray:
        """(478, 3) mesh points of the face in `crop`, in its pixels (z in the same scale, negative = nearer)."""
        result = self._mesh.process(np.ascontiguousarray(crop))
        if not result.multi_face_landmarks:
            raise FaceError("No valid face detected", "a face was found but its landmarks could not be fitted")
        h, w = crop.shape[:2]
        points = result.multi_face_landmarks[0].landmark
        return np.array([(p.x * w, p.y * h, p.z * w) for p in points], dtype=np.float32)

    def close(self) -> None:
        """Frees the models' memory (~45 MB, with their threads)."""
        for model in (*self._detectors, self._mesh):
            model.close()

    def __enter__(self) -> FaceFinder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _detect(self, image: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        h, w = image.shape[:2]
        for detector in self._detectors:  # full range (small faces) first, then short range
            result = detector.process(np.ascontiguousarray(image))
            if result.detections:
                return [(_box(d, w, h), float(d.score[0])) for d in result.detections]
        return []


def _box(detection, w: int, h: int) -> tuple[int, int, int, int]:
    b = detection.location_data.relative_bounding_box
    x1, y1 = max(0, round(b.xmin * w)), max(0, round(b.ymin * h))
    return x1, y1, min(w, round((b.xmin + b.width) * w)), min(h, round((b.ymin + b.height) * h))


def square_crop(box: tuple[int, int, int, int], expand: float, width: int, height: int) -> tuple[tuple[int, int], int]:
    """A square around the face box, `1 + 2*expand` times its larger side, kept inside the image.

    Centred a little above the face's centre: the mesh stops at the forehead, and hair frames a face.
    """
    x1, y1, x2, y2 = box
    side = int(min(max(x2 - x1, y2 - y1) * (1 + 2 * expand), width, height))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 - 0.06 * (y2 - y1)
    left = int(np.clip(round(cx - side / 2), 0, width - side))
    top = int(np.clip(round(cy - side / 2), 0, height - side))
    return (left, top), side
