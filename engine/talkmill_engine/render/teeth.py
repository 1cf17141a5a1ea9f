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
LIGHT_SHARE = np.array([1.0, 0.5, 0.5], np.float32)
IN_MOUTH = 0.93  # and the lips shade the teeth a little more than the skin around them
CROWN_UP = 0.07  # × iod: a photo's own teeth continued up under the lip (the rising lip bares them)
UPPER_SHOW = 0.015  # × iod: the upper incisal edge sits this far below the closed lips
LOWER_WIDTH = 0.85  # lower incisors are narrower
LOWER_TONE = 0.85  # and further in, in the upper row's shadow
# Tooth by tooth (see shaped): how dark the lines between teeth, how much darker a crown's sides, its gum end,
# and the row's ends toward the mouth's corners.
GAP_DARK, SIDE_DARK, GUM_DARK, END_DARK = 0.3, 0.12, 0.2, 0.3
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
    rgba = recoloured(shaped(rgba), source_skin, skin_lab(image, rig.base, rig.iod))
    rgba[..., :3] *= IN_MOUTH
    scale = rig.iod / TEXELS_PER_IOD
    upper = _sharpened(_scaled(rgba, scale, scale))
    lower = _scaled(_lower_row(rgba, shade), scale * LOWER_WIDTH, scale)
    show = UPPER_SHOW * rig.iod
    return (_bent(upper, rig, rows_above=INCISAL_ROW * scale, offset=show),
            _bent(lower, rig, rows_above=0.0, offset=0.0))


def _lower_row(rgba: np.ndarray, shade: np.ndarray) -> np.ndarray:
    """The upper row upside down, from just above its (see-through) incisal edge: a lower row's crowns,
    darker and in the mouth's reddish shade, the top edge softened."""
    lower = rgba[: INCISAL_ROW - 4][::-1].copy()
    lower[..., :3] *= LOWER_TONE * shade**0.75
    lower[:2, :, 3] *= np.array([0.45, 0.85])[:, None]
    return lower


def separations(rgba: np.ndarray) -> np.ndarray:
    """Columns of the texture where one tooth meets the next: minima of the crown's lightness, a few L deep."""
    alpha = rgba[..., 3]
    crown = slice(INCISAL_ROW - 18, INCISAL_ROW - 2)
    weight = alpha[crown]
    light = (to_lab(rgba[crown, :, :3])[..., 0] * weight).sum(axis=0) / np.maximum(weight.sum(axis=0), 1e-3)
    light = cv2.GaussianBlur(light[None].astype(np.float32), (0, 0), 1.0)[0]
    solid = weight.mean(axis=0) > 0.4
    found = []
    for j in range(3, len(light) - 3):
        near = light[max(j - 8, 0) : j + 9]
        if solid[j] and light[j] == light[j - 3 : j + 4].min() and near.max() - light[j] > 3:
            found.append(j)
    return np.array(found, np.float32)


def shaped(rgba: np.ndarray) -> np.ndarray:
    """The photographed row made legible tooth by tooth: its faint separations deepened into thin dark lines
    that widen into small notches at the incisal edge, each crown lit in its middle and darker at its sides,
    darker up toward the gum and along the row toward the mouth's corners; the incisal edge a little
    translucent (greyer)."""
    rgba = rgba.copy()
    h, w = rgba.shape[:2]
    cuts = separations(rgba)
    if not len(cuts):
        return rgba
    cols = np.arange(w, dtype=np.float32)
    dist = np.abs(cols[:, None] - cuts[None, :])
    nearest = dist.argmin(axis=1)
    d = dist[np.arange(w), nearest]
    spacing = np.diff(cuts).mean() if len(cuts) > 1 else 16.0
    rows = np.arange(h, dtype=np.float32)[:, None]
    edge = smoothstep(INCISAL_ROW - 7, INCISAL_ROW, rows)  # toward the incisal edge
    width = 1.1 + 1.6 * edge
    gap = np.exp(-((d[None, :] / width) ** 2))
    side = 1 - SIDE_DARK * (1 - np.minimum(d / (0.5 * spacing), 1))[None, :] ** 2
    gum = 1 - GUM_DARK * (1 - smoothstep(0, INCISAL_ROW - 8, rows))
    teeth = np.flatnonzero(rgba[..., 3].max(axis=0) > 0.5)
    middle, half = (teeth[0] + teeth[-1]) / 2, max((teeth[-1] - teeth[0]) / 2, 1)
    ends = 1 - END_DARK * smoothstep(0.5, 1.0, np.abs(cols - middle) / half)[None, :]
    factor = (1 - GAP_DARK * gap) * side * gum * ends
    rgba[..., :3] *= factor[..., None]
    rgba[..., 0] *= 1 + 0.06 * gap  # the gaps show a little gum and mouth: warmer
    grey = 0.06 * edge
    mean = rgba[..., :3].mean(axis=2, keepdims=True)
    rgba[..., :3] += (mean - rgba[..., :3]) * grey[..., None]
    rgba[..., 3] *= 1 - 0.35 * gap * smoothstep(INCISAL_ROW - 3, INCISAL_ROW + 1, rows)
    return rgba


def _sharpened(rgba: np.ndarray, amount: float = 0.6) -> np.ndarray:
    """The texture is upsampled from a small face: a light unsharp mask on its colour brings the edges back."""
    rgb = rgba[..., :3]
    rgba = rgba.copy()
    rgba[..., :3] = np.clip(rgb + amount * (rgb - cv2.GaussianBlur(rgb, (0, 0), 1.2)), 0, 255)
    return rgba


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
    rgba, top = _crowns_up(np.dstack([patch, alpha]).astype(np.float32), max(int(round(CROWN_UP * rig.iod)), 1))
    return Layer(rgba, (int(x1), int(y1 - top)))


def _crowns_up(rgba: np.ndarray, rows: int) -> tuple[np.ndarray, int]:
    """The photo's teeth continued `rows` up under the upper lip, which uncovers them as it rises: per column
    the first solid tooth pixel (two rows down, out of the lip's shadow) repeated upward, darker toward the
    gum. Without it the rising lip would bare a dark line above the teeth."""
    h, w = rgba.shape[:2]
    out = np.zeros((h + rows, w, 4), np.float32)
    out[rows:] = rgba
    solid = rgba[..., 3] > 0.6
    has = solid.any(axis=0)
    first = np.where(has, solid.argmax(axis=0), 0)
    cols = np.flatnonzero(has)
    source = np.minimum(first[cols] + 2, h - 1)
    fill_to = rows + source  # up to (not including) the source pixel, in out's rows
    colour = rgba[source, cols]
    ramp = np.arange(h + rows, dtype=np.float32)[:, None]
    gum = 0.78 + 0.22 * np.clip(ramp / max(rows, 1), 0, 1)  # darker toward the top
    above = ramp < fill_to[None, :]
    for k in range(3):
        channel = out[:, cols, k]
        channel[above] = (colour[None, :, k] * gum)[above]
        out[:, cols, k] = channel
    alpha = out[:, cols, 3]
    alpha[above] = np.broadcast_to(colour[None, :, 3], alpha.shape)[above]
    out[:, cols, 3] = alpha
    # Toward the row's ends the teeth turn away into the mouth's shade, and fade rather than stop in a line.
    if cols.size > 2:
        middle, half = (cols[0] + cols[-1]) / 2, max((cols[-1] - cols[0]) / 2, 1)
        along = np.abs(np.arange(w) - middle) / half
        out[..., :3] *= (1 - END_DARK * smoothstep(0.6, 1.0, along))[None, :, None]
        out[..., 3] *= (1 - 0.6 * smoothstep(0.85, 1.0, along))[None, :]
    return out, rows
