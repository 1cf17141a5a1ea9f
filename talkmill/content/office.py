"""What .pptx and .docx share: both are Office Open XML zip packages, checked before a library opens them.

python-pptx and python-docx unpack every part into memory, so a package is looked at first: a zip at all
(a password-protected Office file is an OLE container, as is an old .ppt/.doc), a sane number of parts,
and an unpacked size that a zip bomb cannot inflate past the cap.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from typing import IO, Any

from talkmill.errors import ContentError

ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # encrypted Office files and pre-2007 .ppt/.doc
MAX_PARTS = 10_000
MAX_UNPACKED_BYTES = 512 * 1024 * 1024


def sniff_package(head: bytes, main_folder: bytes) -> bool:
    """A zip whose first entries name the package's main folder (b"ppt/", b"word/")."""
    return head.startswith(ZIP_MAGIC) and main_folder in head


def check_package(data: bytes, uri: str, what: str) -> None:
    """ContentError naming `uri` unless `data` is a zip package small enough to open; `what`: "PowerPoint
    (.pptx)" or "Word (.docx)", for the message."""
    if data.startswith(OLE_MAGIC):
        raise ContentError(f"{uri}: a password-protected or pre-2007 {what} file cannot be read; "
                           f"remove the password and save it as {what}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            parts = package.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as error:
        raise ContentError(
            f"{uri}: not a readable {what} file (damaged or not a zip package: {error})") from error
    if len(parts) > MAX_PARTS:
        raise ContentError(f"{uri}: {len(parts)} parts in this {what} package; at most {MAX_PARTS} are read")
    unpacked = sum(part.file_size for part in parts)
    if unpacked > MAX_UNPACKED_BYTES:
        raise ContentError(f"{uri}: this {what} package unpacks to {unpacked / 2**20:.1f} MB; "
                           f"at most {MAX_UNPACKED_BYTES / 2**20:.1f} MB are read")


def open_package(data: bytes, uri: str, what: str, opener: Callable[[IO[bytes]], Any]) -> Any:
    """`opener` (python-pptx's Presentation, python-docx's Document) on `data`, checked first; the
    libraries raise many kinds (KeyError, lxml, ValueError) on a damaged package: one ContentError."""
    check_package(data, uri, what)
    try:
        return opener(io.BytesIO(data))
    except Exception as error:
        raise unreadable(uri, what, error) from error


def unreadable(uri: str, what: str, error: Exception) -> ContentError:
    """The refusal for a package the library could not open (a missing part, broken XML)."""
    return ContentError(f"{uri}: not a readable {what} file ({type(error).__name__}: {error}); "
                        f"open it and save it again as {what}")
