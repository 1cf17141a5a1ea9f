"""Teeth from a real photograph, fitted to each portrait once, as layers laid on the face at rest.

The texture (assets/teeth_upper.png, cut by scripts/make_teeth_texture.py from the public-domain
astronaut portrait) is straightened along the upper lip: its columns run along the lip, TEXELS_PER_IOD of
them per inter-iris distance, centred on the mouth; its incisal edge lies INCISAL_ROW rows from the top;
alpha marks tooth. Per portrait it is recoloured by the difference between the astronaut's skin tone and
this portrait's (in Lab, LIGHT_SHARE of it), then bent along the portrait's closed-lip line. mouth.py moves the layers per frame: the upper row with the head (upper teeth belong to
the skull, the upper lip slides over them), the lower row, a darker mirror of the upper one, with the jaw.
A portrait that shows its own teeth keeps them: their pixels (told from lips and shadow by colour) become
the upper layer instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np
from PIL import Image

from talkmill_engine.render import landmarks as L
from talkmill_engine.render.rig import UPPER_LIP_SHARE, Rig, smoothstep

TEXTURE = "teeth_upper.png"
TEXELS_PER_IOD = 160
INCISAL_ROW = 26  # the texture's rows above the incisal edge: the crown, up under the lip
BELOW_ROWS = 6  # rows below it (alpha 0), so the soft edge is whole
SKIN_KEY = "skin_lab"  # PNG text chunk: the astronaut's skin tone (Lab) where the texture was cut
# How much of a portrait's difference in skin tone from the astronaut's is light (the rest is the person):
# lightness mostly (a darker photo has darker teeth), colour half (a warm photo, warmer teeth).
LIGHT_SHARE = np.array([0.75, 0.5, 0.5], np.float32)
UPPER_SHOW = 0.015  # × iod: the upper incisal edge sits this far below the closed lips
LOWER_WIDTH = 0.85  # lower incisors are narrower
LOWER_TONE = 0.72  # and further in, in the upper row's shadow
# Upper lip, lip corners, chin: skin beside the mouth, in the mouth's light (mediapipe indices).
SKIN_SAMPLES = (164, 167, 393, 18, 200, 199, 206, 426)


@dataclass
class Layer:
    """Straight RGBA (float32, RGB 0..255, alpha 0..1) whose corner is at `origin` (x, y) in the face at rest."""

    rgba: np.ndarray
    origin: tuple[int, int]


@lru_cache(maxsize=1)
def texture() -> tuple[np.ndarray, np.ndarray]:
    """(RGBA float32, the astronaut's skin Lab) of the shipped texture."""
    with resources.files("talkmill_engine.render").joinpath("assets", TEXTURE).open("rb") as file:
        image = Image.open(file)
        image.load()
    skin = np.array([float(v) for v in image.info[SKIN_KEY].split(",")], np.float32)
    rgba = np.asarray(image.convert("RGBA"), np.float32)
    rgba[..., 3] /= 255
    return rgba, skin


def skin_lab(image: np.ndarray, landmarks: np.ndarray, iod: float) -> np.ndarray:
    """Median Lab colour of small patches of skin around the mouth."""
    half = max(int(0.03 * iod), 1)
    patches = []
    for i in SKIN_SAMPLES:
        x, y = np.round(landmarks[i, :2]).astype(int)
        patches.append(image[max(y - half, 0) : y + half + 1, max(x - half, 0) : x + half + 1].reshape(-1, 3))
    return np.median(to_lab(np.vstack(patches)), axis=0)


def to_lab(rgb: np.ndarray) -> np.ndarray:
    pixels = np.asarray(rgb, np.float32).reshape(-1, 1, 3) / 255
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2Lab).reshape(np.shape(rgb))


def from_lab(lab: np.ndarray) -> np.ndarray:
    pixels = np.asarray(lab, np.float32).reshape(-1, 1, 3)
    return np.clip(cv2.cvtColor(pixels, cv2.COLOR_Lab2RGB).reshape(np.shape(lab)) * 255, 0, 255)


def recoloured(rgba: np.ndarray, source_skin: np.ndarray, target_skin: np.ndarray) -> np.ndarray:
    lab = to_lab(rgba[..., :3]) + LIGHT_SHARE * (target_skin - source_skin)
    lab[..., 0] = np.clip(lab[..., 0], 0, 94)  # never whiter than paper
    return np.dstack([from_lab(lab), rgba[..., 3]])


def closed_lip_line(rig: Rig, u: np.ndarray) -> np.ndarray:
    """v (rig axes) where the lips meet when the rig closes them: the upper inner lip plus its share of the
    photo's own gap."""
    upper = np.array(L.LIP_INNER_UPPER)
    order = np.argsort(rig.u[upper])
    line = rig.v[upper] + UPPER_LIP_SHARE * rig.lip_gap
    return np.interp(u, rig.u[upper][order], line[order])


def texture_teeth(image: np.ndarray, rig: Rig, shade: np.ndarray) -> tuple[Layer, Layer]:
    """(upper, lower) layers of the shipped texture, fitted to this portrait; `shade` (RGB, 0..1) tints
    what lies in the mouth's shadow."""
    rgba, source_skin = texture()
    rgba = recoloured(rgba, source_skin, skin_lab(image, rig.base, rig.iod))
    scale = rig.iod / TEXELS_PER_IOD
    upper = _scaled(rgba, scale, scale)
    lower = _scaled(_lower_row(rgba, shade), scale * LOWER_WIDTH, scale)
    show = UPPER_SHOW * rig.iod
    return (_bent(upper, rig, rows_above=INCISAL_ROW * scale, offset=show),
            _bent(lower, rig, rows_above=0.0, offset=0.0))


def _lower_row(rgba: np.ndarray, shade: np.ndarray) -> np.ndarray:
    """The upper row upside down, from just above its (see-through) incisal edge: a lower row's crowns,
    darker and in the mouth's reddish shade, the top edge softened."""
    lower = rgba[: INCISAL_ROW - 4][::-1].copy()
    lower[..., :3] *= LOWER_TONE * shade
    lower[:2, :, 3] *= np.array([0.45, 0.85])[:, None]
    return lower


def _scaled(rgba: np.ndarray, fx: float, fy: float) -> np.ndarray:
    interpolation = cv2.INTER_AREA if fx < 1 and fy < 1 else cv2.INTER_CUBIC
    out = cv2.resize(np.ascontiguousarray(rgba), None, fx=fx, fy=fy, interpolation=interpolation)
    out[..., 3] = np.clip(out[..., 3], 0, 1)
    return out


def _bent(rgba: np.ndarray, rig: Rig, rows_above: float, offset: float) -> Layer:
    """`rgba` laid along the closed-lip line: its row `rows_above` runs `offset` below the line."""
    h, w = rgba.shape[:2]
    line = closed_lip_line(rig, np.linspace(-w / 2, w / 2, 9)) + offset
    us = np.array([-w / 2, w / 2])
    vs = np.array([line.min() - rows_above, line.max() - rows_above + h])
    corners = rig.mouth_centre + us[:, None, None] * rig.axis_u + vs[None, :, None] * rig.axis_v
    x1, y1 = np.floor(corners.reshape(-1, 2).min(axis=0)).astype(int) - 1
    x2, y2 = np.ceil(corners.reshape(-1, 2).max(axis=0)).astype(int) + 2
    ys, xs = np.mgrid[y1:y2, x1:x2].astype(np.float32)
    rel_x, rel_y = xs - rig.mouth_centre[0], ys - rig.mouth_centre[1]
    u = rel_x * rig.axis_u[0] + rel_y * rig.axis_u[1]
    v = rel_x * rig.axis_v[0] + rel_y * rig.axis_v[1]
    line = closed_lip_line(rig, u.ravel()).reshape(u.shape) + offset
    map_x = (u + w / 2 - 0.5).astype(np.float32)
    map_y = (v - line + rows_above - 0.5).astype(np.float32)
    bent = cv2.remap(rgba, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return Layer(bent, (int(x1), int(y1)))


def photo_teeth(image: np.ndarray, rig: Rig, lip: np.ndarray) -> Layer:
    """The portrait's own teeth, shading and all: inside its open lips, each column from the upper lip down
    to its lowest tooth pixel (lighter and greyer than the lips)."""
    loop = rig.base[L.INNER_LOOP]
    x1, y1 = np.floor(loop.min(axis=0)).astype(int) - 1
    x2, y2 = np.ceil(loop.max(axis=0)).astype(int) + 2
    x1, y1 = max(x1, 0), max(y1, 0)
    patch = image[y1:y2, x1:x2].astype(np.float32)
    inside = np.zeros(patch.shape[:2], np.uint8)
    cv2.fillPoly(inside, [np.round(loop - [x1, y1]).astype(np.int32)], 255)
    inside = cv2.erode(inside, np.ones((3, 3), np.uint8)).astype(np.float32) / 255  # the lips' own edge stays out
    lab, lip_lab = to_lab(patch), to_lab(lip)
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    lip_chroma = float(np.hypot(lip_lab[1], lip_lab[2]))
    tooth = smoothstep(lip_lab[0] + 2, lip_lab[0] + 10, lab[..., 0]) * (
        1 - smoothstep(0.55 * lip_chroma, 0.85 * lip_chroma, chroma)) * inside
    gaps = np.ones((1, max(int(0.04 * rig.iod), 3)), np.uint8)  # the dark lines between teeth are tooth too
    tooth = cv2.morphologyEx(tooth.astype(np.float32), cv2.MORPH_CLOSE, gaps)
    rows = np.arange(tooth.shape[0])[:, None]
    edge = np.where(tooth > 0.5, rows, -1).max(axis=0)  # each column's lowest tooth pixel
    strength = np.clip(tooth.max(axis=0), 0, 1)
    alpha = (rows <= edge) * strength * inside
    alpha = cv2.GaussianBlur(alpha.astype(np.float32), (3, 3), 0)
    return Layer(np.dstack([patch, alpha]).astype(np.float32), (int(x1), int(y1)))
