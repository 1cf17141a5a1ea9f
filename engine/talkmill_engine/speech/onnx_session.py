"""An onnxruntime CPU session for a speech model, set up so that a worker's memory comes back between
sentences. Shared by the neural engines (piper joe, Kokoro); onnxruntime is imported on first use."""

from __future__ import annotations

import ctypes
from typing import Any


def cpu_session(model: bytes | str, threads: int = 0, arena: bool = False) -> Any:
    """An InferenceSession of `model` (its bytes or path) on the CPU; `threads` intra-op (0: onnxruntime's
    choice, one per physical core). Without the CPU `arena` (piper): onnxruntime's arena keeps the peak of
    the longest sentence ever spoken (~350 MB more for piper); glibc then has to hand large buffers back
    (return_large_buffers_to_os), at the cost of page faults on every run."""
    import onnxruntime

    return_large_buffers_to_os()
    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = arena
    options.enable_mem_pattern = arena  # a plan of buffers sized by earlier runs: only of use with the arena
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle threads sleep instead of spinning: workers share the cores with the renderer and each other.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    release_freed_memory()
    return session


def return_large_buffers_to_os() -> None:
    """Fix glibc's mmap threshold at 1 MB for this process. By default it rises after each large free, so
    the vocoder's per-sentence buffers end up on a heap that is never returned: a talk's peak memory then
    grows by ~150 MB. (M_MMAP_THRESHOLD is -3 in glibc's malloc.h.)"""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)
    except (OSError, AttributeError):
        pass


def release_freed_memory() -> None:
    """Hand freed copies of a model back to the OS (glibc keeps freed heap otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
