"""Cut the engine's upper-teeth texture from the astronaut portrait (public domain; she smiles, teeth showing).

Run once; the result ships in the engine package (render/assets/teeth_upper.png, a few KB):

    .venv/bin/python scripts/make_teeth_texture.py

The band under her upper inner lip is resampled straight along the lip (render/teeth.py describes the
layout: TEXELS_PER_IOD, the incisal edge at INCISAL_ROW), alpha is "lighter and greyer than her lips",
the crown is continued upward where her lip hides it, and her skin tone is stored beside it, so the engine
can recolour the teeth for other portraits. Deterministic: the same photo gives the same file.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, PngImagePlugin
from talkmill_engine.render import landmarks as L
from talkmill_engine.render.compose import Framing
from talkmill_engine.render.face import FaceFinder
from talkmill_engine.render.image import load_image
from talkmill_engine.render.teeth import (
    BELOW_ROWS,
    INCISAL_ROW,
    SKIN_KEY,
    TEXELS_PER_IOD,
    TEXTURE,
    skin_lab,
    to_lab,
)

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "examples/presenters/astronaut.png"
OUT = ROOT / "engine/talkmill_engine/render/assets" / TEXTURE
HALF_WIDTH = 0.5  # × iod each side of the mouth's centre
BAND = 0.2  # × iod below her upper inner lip: past her teeth


def main() -> None:
    photo = load_image(SOURCE.read_bytes())
    faces = FaceFinder()
    fit = faces.find(photo, 0.3)
    work = Framing(photo, fit, stitch=False, sharpen=True).work
    marks = faces.landmarks(work)
    scale = fit.size / work.shape[0]
    native = marks[:, :2] * scale + np.array(fit.top_left)  # sample the photo itself: one resampling only
    inside = np.zeros(photo.shape[:2], np.uint8)
    cv2.fillPoly(inside, [np.round(native[L.INNER_LOOP]).astype(np.int32)], 255)
    band = straightened_band(np.dstack([photo, inside]), native)
    alpha = tooth_alpha(band[..., :3], lip_colour_lab(photo, native)) * (band[..., 3] / 255)
    rgba = centred(laid_out(*crown_continued(band[..., :3].astype(np.float32), alpha)))
    info = PngImagePlugin.PngInfo()
    info.add_text(SKIN_KEY, ",".join(f"{v:.2f}" for v in skin_lab(work, marks, _iod(marks))))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba).save(OUT, pnginfo=info, optimize=True)
    print(f"{OUT.relative_to(ROOT)}: {rgba.shape[1]}x{rgba.shape[0]}, {OUT.stat().st_size} bytes")


def _iod(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[473, :2] - points[468, :2]))


def straightened_band(photo: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The photo under the upper inner lip, resampled so the lip line is row 0 and columns run along it."""
    iod = _iod(points)
    axis_u = (points[473] - points[468]) / iod
    axis_v = np.array([-axis_u[1], axis_u[0]])
    centre = (points[13] + points[14]) / 2
    lip = points[L.LIP_INNER_UPPER] - centre
    lip_u, lip_v = lip @ axis_u, lip @ axis_v
    order = np.argsort(lip_u)
    width = round(2 * HALF_WIDTH * TEXELS_PER_IOD)
    rows = round(BAND * TEXELS_PER_IOD)
    u = ((np.arange(width) + 0.5) / TEXELS_PER_IOD - HALF_WIDTH) * iod
    v = np.interp(u, lip_u[order], lip_v[order])[None, :] + (np.arange(rows)[:, None] + 0.5) / TEXELS_PER_IOD * iod
    xy = centre + u[None, :, None] * axis_u + v[..., None] * axis_v
    map_x, map_y = (xy[..., 0] - 0.5).astype(np.float32), (xy[..., 1] - 0.5).astype(np.float32)
    return cv2.remap(photo, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def lip_colour_lab(photo: np.ndarray, points: np.ndarray) -> np.ndarray:
    mask = np.zeros(photo.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(points[L.LIP_OUTER_UPPER + L.LIP_OUTER_LOWER[::-1]]).astype(np.int32)], 255)
    cv2.fillPoly(mask, [np.round(points[L.INNER_LOOP]).astype(np.int32)], 0)
    return np.median(to_lab(photo[mask > 0]), axis=0)


def tooth_alpha(band: np.ndarray, lip_lab: np.ndarray) -> np.ndarray:
    """1 on teeth (lighter and greyer than the lips), 0 on lips, gums and the dark mouth; the dark lines
    between teeth count as tooth (they are the texture's detail, not holes)."""
    lab = to_lab(band)
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    light = np.clip((lab[..., 0] - lip_lab[0] - 2) / 10, 0, 1)
    grey = np.clip((0.9 * np.hypot(lip_lab[1], lip_lab[2]) - chroma) / 6, 0, 1)
    tooth = (light * grey * 255).astype(np.uint8)
    tooth = cv2.morphologyEx(tooth, cv2.MORPH_CLOSE, np.ones((1, 7), np.uint8))
    return cv2.GaussianBlur(tooth, (3, 3), 0).astype(np.float32) / 255


def crown_continued(rgb: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right under her lip the teeth are shadowed or hidden: per column, above its first clearly-tooth
    pixel (skipping two rows of the lip's shadow), repeat that pixel up to the top."""
    rgb, alpha = rgb.copy(), alpha.copy()
    half = alpha.shape[0] // 2
    for j in range(alpha.shape[1]):
        solid = np.flatnonzero(alpha[:half, j] > 0.6)
        if solid.size:
            first = min(solid[0] + 2, half)
            rgb[:first, j], alpha[:first, j] = rgb[first, j], alpha[first, j]
    return rgb, alpha


def laid_out(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGBA with the incisal edge at INCISAL_ROW: the crown continued upward (under the lip) by repeating
    its top row a shade darker toward the gum, and BELOW_ROWS under the edge."""
    width = rgb.shape[1]
    centre = slice(int(0.3 * width), int(0.7 * width))
    edge = int(np.median([np.flatnonzero(column > 0.5).max(initial=0) for column in alpha[:, centre].T]))
    pad = INCISAL_ROW - edge
    assert pad > 0, f"her teeth are {edge} rows tall: more than INCISAL_ROW ({INCISAL_ROW})"
    keep = edge + 1 + BELOW_ROWS
    rgb, alpha = rgb[:keep], alpha[:keep].copy()
    alpha[edge + 1 :] *= np.array([0.8, 0.4, 0.1, 0, 0, 0])[:BELOW_ROWS, None]  # not her lower lip's highlight
    shade = np.linspace(0.85, 1.0, pad)[:, None, None]
    rgb = np.vstack([np.repeat(rgb[:1], pad, axis=0) * shade, rgb])
    alpha = np.vstack([np.repeat(alpha[:1], pad, axis=0), alpha])
    hidden = (alpha < 0.3).astype(np.uint8)  # give see-through texels the nearest tooth's colour: no dark fringe
    rgb = cv2.inpaint(np.clip(rgb, 0, 255).astype(np.uint8), hidden, 3, cv2.INPAINT_TELEA)
    return np.dstack([rgb, np.round(alpha * 255).astype(np.uint8)])


def centred(rgba: np.ndarray) -> np.ndarray:
    """Her head is turned a little: centre the row of teeth itself, whose middle the engine puts on the
    mouth's centre."""
    columns = np.flatnonzero(rgba[..., 3].max(axis=0) > 128)
    shift = round(rgba.shape[1] / 2 - (columns[0] + columns[-1] + 1) / 2)
    out = np.zeros_like(rgba)
    if shift >= 0:
        out[:, shift:] = rgba[:, : rgba.shape[1] - shift]
    else:
        out[:, :shift] = rgba[:, -shift:]
    return out


if __name__ == "__main__":
    main()
