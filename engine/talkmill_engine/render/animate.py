"""One portrait's face, posed frame by frame: the mesh warp, then the mouth's inside and the lids on top."""

from __future__ import annotations

import numpy as np

from talkmill_engine.render.eyes import Eyelids
from talkmill_engine.render.mouth import MouthInterior
from talkmill_engine.render.rig import Rig
from talkmill_engine.render.warp import MeshWarp


class FaceAnimator:
    def __init__(self, work: np.ndarray, rig: Rig) -> None:
        self.work = work
        self.rig = rig
        self.warp = MeshWarp(rig.base, rig.triangles, rig.size)
        self.mouth = MouthInterior(work, rig)
        self.lids = Eyelids(work, rig)

    def frame(self, pose: dict[str, float]) -> np.ndarray:
        """The face crop in `pose` (rig.POSE_KEYS; missing keys are 0), RGB uint8."""
        points = self.rig.pose_points(pose)
        face = self.warp.warp(self.work, points)
        self.mouth.paint(face, points, pose)
        self.lids.paint(face, points, pose)
        return face
