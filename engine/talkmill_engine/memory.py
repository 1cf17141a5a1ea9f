"""glibc's allocator, set up for a worker: memory comes back to the OS between sentences and talks.
(ctypes; a no-op where libc.so.6 is not glibc's.)"""

from __future__ import annotations

import ctypes

_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_M_ARENA_MAX = -8


def tune_malloc() -> None:
    """Fix the mmap threshold at 1 MB: by default it rises after each large free, so a vocoder's per-sentence
    buffers end up on a heap that is never returned (a talk's peak grew by ~150 MB). And one heap for all
    threads: while a talk streams, the speech thread's own heap held ~30 MB the renderer could not reuse
    (joe's worker peaked at 402-424 MB, 384-386 MB with one)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
        libc.mallopt(_M_ARENA_MAX, 1)
    except (OSError, AttributeError):
        pass


def release_freed_memory() -> None:
    """Hand freed memory back to the OS (glibc keeps freed heap otherwise): after a model loads or closes."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
