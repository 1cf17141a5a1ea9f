"""The face rig: control points around a portrait's landmarks, and where they move for a given pose.

Pure geometry (no I/O). Points = the 468 mesh points, two rings outside the face (hair/neck, then
background) and the image border. A pose moves them: lips and jaw (gap profile: upper lip a quarter,
lower lip and jaw three quarters), mouth corners (width, rounding, smile), lids, brows, then the head
(roll about the neck, yaw and pitch as depth parallax), fading through the rings to a fixed border.
Behind glasses (glasses.py) a line of still points along the frame's top bar keeps the frame rigid when the
brows rise. Distances are in units of the inter-ocular distance (iod), so the rig works at any resolution.
"""

from __future__ import annotations

import cv2
import numpy as np

from talkmill_engine.render import landmarks as L

POSE_KEYS = ("jaw", "width", "press", "tongue", "smile", "brow", "blink", "eye_wide", "yaw", "pitch", "roll", "dx",
             "dy")
MIN_LIP_GAP = 0.004  # × iod: lips and lids never fully meet, so no triangle folds over
MIN_LID_GAP = 0.016  # at 0.012 the triangle at a lid's outer corner can fold in a full blink
MAX_JAW_GAP = 0.3  # lip gap of a wide-open "aa", × iod
HEAD_CENTRE_DEPTH = 0.2  # the head turns about a point this far behind its deepest landmark, × iod
PARALLAX = 0.6  # damped: full parallax rubber-sheets the face outline
FRAME_UNDER_BROWS = 0.03  # × iod: behind glasses, the still line above the frame's top bar
UPPER_LIP_SHARE = 0.25  # of a change in lip gap; the lower lip and jaw take the rest
# How far the lid crease follows the upper lid in a blink (eyes.py lays skin over the band between them);
# more stretches the skin above the crease into visible folds. Behind glasses the crease often lies on the
# frame: it stays.
CREASE_SHARE = 0.4
CREASE_SHARE_GLASSES = 0.1


def smoothstep(a: float, b: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


class Rig:
    def __init__(
        self, landmarks: np.ndarray, size: tuple[int, int], normalization: float = 1.0, glasses: bool = False
    ) -> None:
        self.size = size  # (width, height)
        self.normalization = float(normalization)
        self.glasses = glasses
        lm = landmarks.astype(np.float64)
        self.iod = float(np.linalg.norm(lm[473, :2] - lm[468, :2])) or 1.0
        self._frame(lm)
        self.base = self._control_points(lm)
        if glasses:
            self._add_frame_line(lm)
        self._weights(lm)
        self._lip_pairs()
        self._eye_pairs()
        mesh = self._mesh_indices()
        self.triangles = mesh[triangulate(self.pose_points({"jaw": 0.15})[mesh], size)]

    # -- construction -------------------------------------------------------------------------------
    def _frame(self, lm: np.ndarray) -> None:
        u = lm[473, :2] - lm[468, :2]
        self.axis_u = u / np.linalg.norm(u)
        self.axis_v = np.array([-self.axis_u[1], self.axis_u[0]])  # points down the face
        self.mouth_centre = (lm[13, :2] + lm[14, :2]) / 2

    def _control_points(self, lm: np.ndarray) -> np.ndarray:
        face = lm[:468, :2]
        oval = lm[L.FACE_OVAL, :2]
        centre = oval.mean(axis=0)
        width, height = self.size
        rings, self.ring_level = [], []
        for level, scale in ((1, 1.25), (2, 1.7)):
            ring = np.clip(centre + scale * (oval - centre), 0, [width - 1, height - 1])
            rings.append(ring)
            self.ring_level += [level] * len(ring)
        border = _border_points(width, height)
        points = np.vstack([face, *rings, border])
        self.ring_level = np.array([0] * 468 + self.ring_level + [3] * len(border))
        keep = _unique_mask(points, min_distance=2.0)
        keep[:468] = True  # the face mesh is kept whole: indices follow mediapipe's
        self.ring_level = self.ring_level[keep]
        self.depth = np.concatenate([lm[:468, 2], np.full(int(keep[468:].sum()), lm[:468, 2].max())])
        return points[keep]

    def _add_frame_line(self, lm: np.ndarray) -> None:
        """Behind glasses: still points just under the brows' upper edge, above the frame's top bar (the mesh
        puts the brows' lower edge on the bar), so raised brows stretch only the skin above them and the
        frame keeps its shape."""
        upper_brows = [i for eye in L.EYES for i in eye["brow"][5:]]
        line = lm[upper_brows, :2] + FRAME_UNDER_BROWS * self.iod * self.axis_v
        self.frame_line = np.arange(len(self.base), len(self.base) + len(line))
        self.base = np.vstack([self.base, line])
        self.ring_level = np.concatenate([self.ring_level, np.zeros(len(line), int)])
        self.depth = np.concatenate([self.depth, lm[upper_brows, 2]])

    def _weights(self, lm: np.ndarray) -> None:
        rel = self.base - self.mouth_centre
        self.u, self.v = rel @ self.axis_u, rel @ self.axis_v
        iod = self.iod
        corners = lm[list(L.MOUTH_CORNERS), :2]
        self.half_width = float(np.linalg.norm(corners[1] - corners[0]) / 2)
        n = len(self.base)
        self.is_upper_lip = np.zeros(n, bool)
        self.is_upper_lip[list(L.UPPER_LIP)] = True
        self.is_lower_lip = np.zeros(n, bool)
        self.is_lower_lip[list(L.LOWER_LIP)] = True
        chin_v = float(self.v[L.CHIN])
        lateral = 1 - smoothstep(self.half_width, self.half_width + 0.9 * iod, np.abs(self.u))
        below_chin = np.exp(-((np.maximum(self.v - chin_v, 0) / (0.2 * iod)) ** 2))
        self.w_jaw = lateral * smoothstep(-0.05 * iod, 0.12 * iod, self.v) * below_chin
        self.w_jaw[self.is_upper_lip] = 0
        self.w_jaw[self.is_lower_lip] = 1
        nose_v = float(self.v[2])  # the point under the nose
        self.w_upper = (1 - smoothstep(self.half_width * 0.6, self.half_width * 1.3, np.abs(self.u))) * smoothstep(
            nose_v, nose_v * 0.3, self.v
        ) * (self.v < 0)
        self.w_upper[self.is_upper_lip] = 1
        self.w_upper[self.is_lower_lip] = 0
        shape = (self.u / (1.3 * self.half_width)) ** 2 + (self.v / (0.45 * iod)) ** 2
        self.w_mouth = np.exp(-(shape**2))
        levels = self.ring_level
        below = self.v > chin_v
        self.w_head = np.select([levels == 0, levels == 1, levels == 2], [1.0, np.where(below, 0.45, 0.85),
                                np.where(below, 0.1, 0.3)], 0.0)
        self._rings = (levels == 1) | (levels == 2)
        inner = np.array([[1.0, 1.0], [self.size[0] - 2.0, self.size[1] - 2.0]])
        rings = self.base[self._rings]
        self._ring_bounds = (np.minimum(rings, inner[0]), np.maximum(rings, inner[1]))  # at rest: where they are

    def _lip_pairs(self) -> None:
        upper, lower = np.array(L.LIP_INNER_UPPER), np.array(L.LIP_INNER_LOWER)
        self.lip_u = self.u[upper]
        order = np.argsort(self.u[lower])
        lower_v_at = np.interp(self.lip_u, self.u[lower][order], self.v[lower][order])
        self.lip_gap = np.maximum(lower_v_at - self.v[upper], 0.0)  # the photo's own gap, per column
        self.mouth_open = bool(self.lip_gap.max() > 0.05 * self.iod)

    def _eye_pairs(self) -> None:
        self.eyes = []
        for eye in L.EYES:
            upper, lower = np.array(eye["upper"][1:-1]), np.array(eye["lower"][1:-1])
            corners = self.base[[eye["upper"][0], eye["upper"][-1]]]
            axis = (corners[1] - corners[0]) / np.linalg.norm(corners[1] - corners[0])
            along = lambda idx: (self.base[idx] - corners[0]) @ axis  # noqa: E731
            lower_order = np.argsort(along(lower))
            across = lambda idx: (self.base[idx] - corners[0]) @ self.axis_v  # noqa: E731
            lower_at_upper = np.interp(along(upper), along(lower)[lower_order], across(lower)[lower_order])
            gap = np.maximum(lower_at_upper - across(upper), 0.0)
            gap_at_lower = np.interp(along(lower), along(upper), gap)
            # The crease follows the lid above it, column by column (lid corners still): pairs by position.
            lid_along = np.concatenate([[0.0], along(upper), [float(np.linalg.norm(corners[1] - corners[0]))]])
            self.eyes.append({"upper": upper, "lower": lower, "gap_upper": gap, "gap_lower": gap_at_lower,
                              "crease": np.array(eye["crease"]), "brow": np.array(eye["brow"]),
                              "lid_along": lid_along, "crease_along": along(np.array(eye["crease"]))})
        eye_indices = [i for e in L.EYES for k in ("upper", "lower") for i in e[k]]
        brow_v = float(self.v[[i for e in L.EYES for i in e["brow"]]].mean())
        eye_v = float(self.v[eye_indices].mean())
        # Forehead follows the brows; fades out below them, down to the eyes, or behind glasses down to the
        # frame's line (nothing below it moves).
        if self.glasses:
            upper_brows = [i for e in L.EYES for i in e["brow"][5:]]
            top = float(self.v[upper_brows].mean()) - 0.01 * self.iod
            self.w_brow = smoothstep(float(self.v[self.frame_line].mean()), top, self.v)
            self.w_brow[self.frame_line] = 0
            self.w_brow[[i for e in L.EYES for i in e["brow"][:5]]] = 0
        else:
            self.w_brow = smoothstep(eye_v, brow_v, self.v)
        self.w_brow *= self.ring_level < 2

    def _mesh_indices(self) -> np.ndarray:
        """The points the warp triangulates: every feature point (lips, lids, brows, nose, outline), all
        points near the mouth and eyes (but the seam points beside the mouth's corners, whose thin triangles
        fold over), and the rest thinned to ~0.2 iod apart. Cheeks and forehead only follow the head,
        smoothly, so their extra triangles cost time (one fill each per frame) and add nothing. The other
        points still move and are measured; they just do not shape triangles."""
        features = L.UPPER_LIP | L.LOWER_LIP | set(L.MOUTH_CORNERS + L.INNER_CORNERS) | set(L.FACE_OVAL + L.NOSE)
        features |= {i for eye in L.EYES for key in ("upper", "lower", "crease", "brow") for i in eye[key]}
        eye_centres = [self.base[eye["upper"] + eye["lower"]].mean(axis=0) for eye in L.EYES]
        near = np.linalg.norm(self.base[:468] - self.mouth_centre, axis=1) < 0.45 * self.iod
        for centre in eye_centres:
            near |= np.linalg.norm(self.base[:468] - centre, axis=1) < 0.3 * self.iod
        kept = sorted((features | set(np.flatnonzero(near))) - set(L.CORNER_SEAM))
        for i in range(468):
            if i not in features and not near[i]:
                if np.min(np.linalg.norm(self.base[kept] - self.base[i], axis=1)) >= 0.2 * self.iod:
                    kept.append(i)
        return np.array(sorted(kept) + list(range(468, len(self.base))))

    # -- posing -------------------------------------------------------------------------------------
    def pose_points(self, pose: dict[str, float]) -> np.ndarray:
        """The control points moved to `pose` (missing keys are 0)."""
        get = lambda key: float(pose.get(key, 0.0))  # noqa: E731
        du, dv = np.zeros(len(self.base)), np.zeros(len(self.base))
        self._mouth(get, du, dv)
        self._eyes(get, dv)
        points = self.base + np.outer(du, self.axis_u) + np.outer(dv, self.axis_v)
        return self._head(points, get)

    def _mouth(self, get, du: np.ndarray, dv: np.ndarray) -> None:
        iod, hw = self.iod, self.half_width
        profile = np.sqrt(np.clip(1 - (self.lip_u / max(hw, 1e-6)) ** 2, 0, 1))
        rest = self.lip_gap * (1 - self.normalization)
        target = rest + get("jaw") * MAX_JAW_GAP * iod * profile
        target = target * (1 - get("press"))  # p, b, m: lips meet whatever the jaw does
        delta_cols = np.maximum(target, MIN_LIP_GAP * iod) - self.lip_gap
        delta = np.interp(self.u, self.lip_u, delta_cols)
        centre_delta = float(delta_cols[len(delta_cols) // 2])
        lip_delta = np.where(self.is_lower_lip | self.is_upper_lip, delta, centre_delta)
        dv += (1 - UPPER_LIP_SHARE) * lip_delta * self.w_jaw - UPPER_LIP_SHARE * lip_delta * self.w_upper
        u_in = np.clip(self.u, -hw, hw)
        width = get("width")
        du += width * (0.14 if width > 0 else 0.3) * u_in * self.w_mouth
        corner = (u_in / max(hw, 1e-6)) ** 2 * self.w_mouth
        smile = get("smile")
        du += smile * 0.06 * iod * np.sign(self.u) * corner
        dv -= smile * 0.07 * iod * corner

    def _eyes(self, get, dv: np.ndarray) -> None:
        blink, wide, smile = get("blink"), get("eye_wide"), get("smile")
        open_scale = (1 + 0.25 * wide - 0.15 * max(smile, 0.0)) * (1 - blink)
        for eye in self.eyes:
            for key, share in (("upper", -0.85), ("lower", 0.15)):
                gap = eye["gap_" + key]
                delta = np.maximum(gap * open_scale, MIN_LID_GAP * self.iod) - gap
                dv[eye[key]] += share * delta
            lid = np.concatenate([[0.0], dv[eye["upper"]], [0.0]])
            share = CREASE_SHARE_GLASSES if self.glasses else CREASE_SHARE
            dv[eye["crease"]] += share * np.interp(eye["crease_along"], eye["lid_along"], lid)
        dv -= get("brow") * 0.09 * self.iod * self.w_brow

    def head_matrix(self, pose: dict[str, float], depth: float) -> np.ndarray:
        """The 2×3 affine map by which the head moves a rigid point at `depth` (teeth, eyeballs)."""
        get = lambda key: float(pose.get(key, 0.0))  # noqa: E731
        shift_u, shift_v, angle = self._head_motion(get, np.ones(1), np.array([depth]))
        shift = shift_u[0] * self.axis_u + shift_v[0] * self.axis_v
        cos, sin = np.cos(angle[0]), np.sin(angle[0])
        rotation = np.array([[cos, -sin], [sin, cos]])
        pivot = self._pivot()
        return np.hstack([rotation, (pivot + rotation @ (shift - pivot))[:, None]])

    def _head(self, points: np.ndarray, get) -> np.ndarray:
        shift_u, shift_v, angle = self._head_motion(get, self.w_head, self.depth)
        points = points + np.outer(shift_u, self.axis_u) + np.outer(shift_v, self.axis_v)
        pivot = self._pivot()
        rel = points - pivot
        cos, sin = np.cos(angle), np.sin(angle)
        points = pivot + np.stack([cos * rel[:, 0] - sin * rel[:, 1], sin * rel[:, 0] + cos * rel[:, 1]], axis=1)
        # Rings near the image's edge must not cross it: the fixed border points' thin triangles would fold.
        points[self._rings] = np.clip(points[self._rings], *self._ring_bounds)
        return points

    def _head_motion(self, get, w: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(shift along u, shift along v, roll angle) of points weighted `w` at `depth`."""
        depth_lever = (self.depth.max() + HEAD_CENTRE_DEPTH * self.iod - depth) * PARALLAX
        shift_u = get("yaw") * depth_lever * w + get("dx") * w
        shift_v = get("pitch") * depth_lever * w + get("dy") * w
        return shift_u, shift_v, get("roll") * w

    def _pivot(self) -> np.ndarray:
        return self.mouth_centre + self.axis_v * 1.3 * self.iod


def _border_points(width: int, height: int, per_side: int = 8) -> np.ndarray:
    xs = np.linspace(0, width - 1, per_side + 1)
    ys = np.linspace(0, height - 1, per_side + 1)
    top = np.stack([xs, np.zeros_like(xs)], 1)
    bottom = np.stack([xs, np.full_like(xs, height - 1)], 1)
    left = np.stack([np.zeros_like(ys[1:-1]), ys[1:-1]], 1)
    right = np.stack([np.full_like(ys[1:-1], width - 1), ys[1:-1]], 1)
    return np.vstack([top, bottom, left, right])


def _unique_mask(points: np.ndarray, min_distance: float) -> np.ndarray:
    """Drop points closer than `min_distance` to an earlier one (rings clipped at the border pile up)."""
    keep = np.ones(len(points), bool)
    for i in range(468, len(points)):
        earlier = points[:i][keep[:i]]
        if np.min(np.linalg.norm(earlier - points[i], axis=1)) < min_distance:
            keep[i] = False
    return keep


def triangulate(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Delaunay triangles (T, 3) of point indices, covering the whole image."""
    width, height = size
    subdiv = cv2.Subdiv2D((-1, -1, width + 2, height + 2))
    subdiv.insert([(float(x), float(y)) for x, y in points])
    corners = subdiv.getTriangleList().reshape(-1, 3, 2)
    # Subdiv2D returns coordinates (float32), not indices: match each corner to its nearest point.
    distance = np.linalg.norm(corners[:, :, None, :] - points[None, None, :, :], axis=3)
    index = distance.argmin(axis=2)
    exact = np.take_along_axis(distance, index[:, :, None], axis=2)[..., 0] < 0.01
    return index[exact.all(axis=1)].astype(np.int32)
