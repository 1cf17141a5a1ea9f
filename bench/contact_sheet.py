"""A contact sheet to look at: both portraits in the mouth shapes that matter and in a blink.

Per portrait, a row of faces at 1× (the renderer's 512² crop, as a viewer sees it) and a row of close-ups
at 2× (nearest-neighbour, so every pixel shows): the mouth, and in the blink column one eye. The shapes
are the renderer's own (visemes.pose_of at full loudness), rendered by the same FaceAnimator as a talk.

    .venv/bin/python -m bench.contact_sheet [--out docs/contact-sheet.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from talkmill_engine.render import landmarks as L
from talkmill_engine.render.animate import FaceAnimator
from talkmill_engine.render.image import load_image
from talkmill_engine.render.rig import Rig
from talkmill_engine.render.talk import Renderer
from talkmill_engine.render.visemes import pose_of

from bench.common import DEFAULT_CONFIG, PORTRAITS, ROOT

SHAPES = {
    "closed": pose_of(" "),
    "open (eh)": pose_of("ɛ"),
    "wide (aa)": pose_of("a"),
    "round (oh)": pose_of("o"),
    "th": pose_of("θ"),
    "blink": pose_of(" ") | {"blink": 1.0},
}
FACE = (0.95, 1.05, 1.25)  # × iod: half width; above the eyes; below the eyes (past the chin)
CLOSE_UP = (0.5, 0.25)  # × iod: half width, half height, shown at 2×
LABEL_HEIGHT = 18
CELL, GUTTER = 256, 2  # px


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs/contact-sheet.png")
    args = parser.parse_args()
    renderer = Renderer()
    blocks = [label_strip(list(SHAPES), len(SHAPES) * (CELL + 2 * GUTTER))]
    for name, path in PORTRAITS.items():
        _, framing, rig = renderer.prepare(load_image(path.read_bytes()), DEFAULT_CONFIG)
        animator = FaceAnimator(framing.work, rig)
        frames = [animator.frame(pose) for pose in SHAPES.values()]
        blocks += [label_strip([name], blocks[0].shape[1]), faces_row(frames, rig), close_ups_row(frames, rig)]
    sheet = np.vstack(blocks)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(args.out, optimize=True)
    print(f"{args.out}: {sheet.shape[1]}x{sheet.shape[0]}, {args.out.stat().st_size / 1e6:.2f} MB")


def faces_row(frames: list[np.ndarray], rig: Rig) -> np.ndarray:
    eyes = rig.base[[i for eye in L.EYES for i in eye["upper"]]].mean(axis=0)
    half, above, below = (f * rig.iod for f in FACE)
    box = (eyes[0] - half, eyes[1] - above, 2 * half, above + below)
    return np.hstack([_cell(_crop(frame, box, 1)) for frame in frames])


def close_ups_row(frames: list[np.ndarray], rig: Rig) -> np.ndarray:
    half_w, half_h = (f * rig.iod for f in CLOSE_UP)
    mouth = rig.mouth_centre + [0, 0.05 * rig.iod]
    eye = rig.base[L.EYES[0]["upper"] + L.EYES[0]["lower"]].mean(axis=0)
    cells = []
    for name, frame in zip(SHAPES, frames):
        centre = eye if name == "blink" else mouth
        box = (centre[0] - half_w, centre[1] - half_h, 2 * half_w, 2 * half_h)
        cells.append(_cell(_crop(frame, box, 2)))
    return np.hstack(cells)


def _crop(frame: np.ndarray, box: tuple[float, ...], scale: int) -> np.ndarray:
    """(left, top, width, height), the size rounded once so every cell of a row is as tall."""
    x, y, w, h = (int(round(v)) for v in box)
    x = int(np.clip(x, 0, frame.shape[1] - w))
    y = int(np.clip(y, 0, frame.shape[0] - h))
    crop = frame[y : y + h, x : x + w]
    return cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) if scale > 1 else crop


def _cell(image: np.ndarray, width: int = CELL, pad: int = GUTTER) -> np.ndarray:
    """`image` centred on a dark cell `width` wide (cropped if wider), with a thin gutter."""
    h, w = image.shape[:2]
    if w > width:
        image = image[:, (w - width) // 2 : (w - width) // 2 + width]
        w = width
    cell = np.full((h + 2 * pad, width + 2 * pad, 3), 24, np.uint8)
    left = pad + (width - w) // 2
    cell[pad : pad + h, left : left + w] = image
    return cell


def label_strip(labels: list[str], width: int) -> np.ndarray:
    strip = np.full((LABEL_HEIGHT, width, 3), 24, np.uint8)
    step = width // len(labels) if len(labels) > 1 else width
    for i, text in enumerate(labels):
        cv2.putText(strip, text, (i * step + 6, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (230, 230, 230), 1, cv2.LINE_AA)
    return strip


if __name__ == "__main__":
    main()
