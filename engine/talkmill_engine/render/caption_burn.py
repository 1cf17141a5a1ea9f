"""Captions burned into the frames (config.subtitles_burn): white text on a dark translucent box, in the
lower third. Each cue's text is drawn once (Pillow's built-in scalable font, no font file to ship); a
frame only blends the box of the cue it shows."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from talkmill_engine.captions import Cue

BOX_ALPHA = 0.62  # how dark the box is: text stays readable on a white shirt, the face still shows through
BOX_COLOUR = np.array([16, 16, 20], dtype=np.float32)
TEXT_COLOUR = np.float32(255)
BOTTOM_MARGIN = 0.06  # of the height, below the box
MAX_TEXT_WIDTH = 0.92  # of the width, for the widest line of any cue
LINE_SPACING = 1.18  # of the font size


@dataclass(frozen=True)
class _Plate:
    """One cue drawn: where its box goes and how much text covers each of its pixels (0..1)."""

    start: float
    end: float
    top: int
    left: int
    text: np.ndarray  # float32, (h, w): text coverage


class CaptionBurner:
    def __init__(self, cues: list[Cue], size: tuple[int, int]) -> None:
        """`size` is the frames' (width, height)."""
        self.width, self.height = size
        font = _font_fitting(cues, self.width, self.height)
        self.plates = [self._plate(cue, font) for cue in cues]
        self.starts = [plate.start for plate in self.plates]

    def apply(self, frame: np.ndarray, t: float) -> None:
        """Draws the cue shown at `t` seconds (if any) into the RGB uint8 `frame`, in place."""
        index = bisect.bisect_right(self.starts, t) - 1
        if index < 0 or t >= self.plates[index].end:
            return
        plate = self.plates[index]
        h, w = plate.text.shape
        region = frame[plate.top : plate.top + h, plate.left : plate.left + w]
        coverage = plate.text[: region.shape[0], : region.shape[1], None]
        boxed = region.astype(np.float32) * (1 - BOX_ALPHA) + BOX_COLOUR * BOX_ALPHA
        region[:] = (boxed * (1 - coverage) + TEXT_COLOUR * coverage).astype(np.uint8)

    def _plate(self, cue: Cue, font: object) -> _Plate:
        text = _draw_lines(cue.lines, font)
        h, w = text.shape
        top = max(int(self.height * (1 - BOTTOM_MARGIN)) - h, 0)
        left = max((self.width - w) // 2, 0)
        return _Plate(cue.start, cue.end, top, left, text[: self.height - top, : self.width - left])


def _font_fitting(cues: list[Cue], width: int, height: int):  # type: ignore[no-untyped-def]
    """The built-in font at the size that fits the widest line in MAX_TEXT_WIDTH, at most 1/22 of the height
    (22 px at 512 px: readable, and two lines stay within the lower third)."""
    from PIL import ImageFont

    size = max(int(height / 22), 10)
    lines = [line for cue in cues for line in cue.lines] or [""]
    widest = max(lines, key=len)
    while size > 10 and ImageFont.load_default(size=size).getlength(widest) > MAX_TEXT_WIDTH * width:
        size -= 1
    return ImageFont.load_default(size=size)


def _draw_lines(lines: tuple[str, ...], font) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The lines centred on a box with a padding of half a line: text coverage in 0..1, float32."""
    from PIL import Image, ImageDraw

    size = font.size
    pad = size // 2
    step = int(round(size * LINE_SPACING))
    text_width = int(max(font.getlength(line) for line in lines))
    canvas = Image.new("L", (text_width + 2 * pad, step * len(lines) + 2 * pad - (step - size) + pad // 2), 0)
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        x = pad + (text_width - font.getlength(line)) / 2
        draw.text((x, pad + i * step), line, fill=255, font=font)
    return np.asarray(canvas, dtype=np.float32) / 255.0
