"""Reading a local file that content or a config names: a regular file only, and never more than a cap.

A name can point at /dev/zero (endless), a FIFO (opening it waits for a writer), a folder, or a sparse
file of terabytes: reading "the whole file" is not a size limit. So the file is opened without waiting,
checked to be a regular file on the descriptor that is read (not by its name, which could be swapped in
between), and read up to one byte past the cap.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_NO_WAIT = getattr(os, "O_NONBLOCK", 0)  # a FIFO opens at once instead of waiting for a writer


class NotARegularFile(OSError):
    """A device, FIFO, socket or folder where a file was expected."""


def read_capped(path: Path, max_bytes: int) -> bytes:
    """At most `max_bytes` + 1 bytes of the regular file at `path`: more than `max_bytes` means the file is
    too large (the rest is never read). OSError when it cannot be read; NotARegularFile for a device,
    FIFO or folder."""
    fd = os.open(path, os.O_RDONLY | _NO_WAIT)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotARegularFile(f"{path} is not a regular file (a device, pipe or folder)")
        chunks, left = [], max_bytes + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
