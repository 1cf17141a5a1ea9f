"""Decoding a portrait: only real JPEG/PNG/WebP images, never a decompression bomb."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from talkmill_engine.errors import SourceError

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
MAX_PIXELS = 40_000_000  # checked from the header, before any pixel is decoded
MAX_SIDE = 2048  # larger portraits are scaled down: no gain in a talking-head video, much slower


def load_image(data: bytes) -> np.ndarray:
    """RGB uint8 array of an image file's bytes; raises SourceError saying what is wrong with it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_header(image)
            image.load()
    except SourceError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise SourceError("The image is too large to decode (decompression bomb).", str(e)) from e
    except Exception as e:  # Pillow raises many types for corrupt data
        raise SourceError(
            "The source is not a readable image.", f"allowed formats: {', '.join(ALLOWED_FORMATS)}"
        ) from e
    return _to_rgb(image)


def _check_header(image: Image.Image) -> None:
    if image.format not in ALLOWED_FORMATS:
        raise SourceError(
            f"Unsupported image format {image.format!r}.", f"allowed formats: {', '.join(ALLOWED_FORMATS)}"
        )
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise SourceError(
            f"The image is {width}x{height} pixels: too large to decode (decompression bomb).",
            f"at most {MAX_PIXELS} pixels",
        )
    if min(width, height) < 64:
        raise SourceError(f"The image is {width}x{height} pixels: too small for a face.", "at least 64x64")


def _to_rgb(image: Image.Image) -> np.ndarray:
    image = image.convert("RGB")
    scale = MAX_SIDE / max(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    return np.asarray(image, dtype=np.uint8).copy()
