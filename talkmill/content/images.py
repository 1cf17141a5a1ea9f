"""Portraits: which local files may be one, and a check of an image's header with the standard library.

The engine decodes portraits (with Pillow, an engine dependency); the pipeline only refuses, before any
talk is created, what cannot be a portrait: a file that is not JPEG, PNG or WebP by its magic bytes, whose
header gives no size, or that is larger than the contract allows (read no further than that limit).
Whether a face is in it, or whether it is large enough for one, is the backend's to say.
"""

from __future__ import annotations

import struct
from pathlib import Path

from talkmill.content.files import read_capped
from talkmill.errors import ContentError
from talks_contract.limits import MAX_IMAGE_BYTES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
IMAGE_ADVICE = f"use a {', '.join(IMAGE_SUFFIXES[:-1])} or {IMAGE_SUFFIXES[-1]} file, or an http(s)/s3 URL"

_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # SOFn
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI: markers without a length


def has_image_suffix(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def image_file_problem(path: Path) -> str | None:
    """Why this local file cannot be a portrait, or None; OSError when it cannot be read (or is not a
    regular file: /dev/zero, a FIFO). No more than the limit is read."""
    return image_problem(read_capped(path, MAX_IMAGE_BYTES))


def image_problem(data: bytes) -> str | None:
    """Why these bytes cannot be a portrait, or None."""
    if len(data) > MAX_IMAGE_BYTES:
        return f"larger than {MAX_IMAGE_BYTES // 2**20} MB; at most {MAX_IMAGE_BYTES:,} bytes are allowed"
    try:
        kind, width, height = image_header(data)
    except ContentError as error:
        return str(error)
    if width < 1 or height < 1:
        return f"the {kind} header gives a size of {width}x{height} pixels"
    return None


def image_header(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) read from the header; ContentError when the bytes are not JPEG/PNG/WebP
    or the size cannot be read."""
    try:
        if data.startswith(_PNG):
            return ("PNG", *_png_size(data))
        if data.startswith(_JPEG):
            return ("JPEG", *_jpeg_size(data))
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return ("WebP", *_webp_size(data))
    except (struct.error, IndexError) as error:
        raise ContentError("the image header is cut short: not a readable image") from error
    raise ContentError("not a JPEG, PNG or WebP image")


def _png_size(data: bytes) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise ContentError("a PNG without its IHDR header: not a readable image")
    return struct.unpack(">II", data[16:24])


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Walks the segments up to the first frame header (SOFn), which holds the size."""
    at = 2
    while at < len(data):
        if data[at] != 0xFF:
            raise ContentError("a JPEG with a broken segment structure: not a readable image")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _JPEG_STANDALONE:
            at += 2
            continue
        if marker == 0xDA:  # start of scan: no frame header came before the image data
            break
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if marker in _JPEG_FRAMES:
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        at += 2 + length
    raise ContentError("a JPEG without a frame header: not a readable image")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: a key frame's start code, then 14-bit sizes
        if data[23:26] != b"\x9d\x01\x2a":
            raise ContentError("a lossy WebP without its frame start code: not a readable image")
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: a signature byte, then 14-bit sizes minus one
        if data[20] != 0x2F:
            raise ContentError("a lossless WebP without its signature: not a readable image")
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: the canvas size, 24-bit sizes minus one
        if len(data) < 30:
            raise ContentError("the image header is cut short: not a readable image")
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise ContentError(f"a WebP with an unknown first chunk {chunk!r}: not a readable image")
