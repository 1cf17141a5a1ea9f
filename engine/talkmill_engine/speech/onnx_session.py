"""An onnxruntime CPU session for a speech model, set up so that a worker's memory comes back between
sentences. Shared by the neural engines (piper joe, Kokoro); onnxruntime is imported on first use."""

from __future__ import annotations

from typing import Any

from talkmill_engine.memory import release_freed_memory, tune_malloc


def cpu_session(model: bytes | str, threads: int = 0, arena: bool = False) -> Any:
    """An InferenceSession of `model` (its bytes or path) on the CPU; `threads` intra-op (0: onnxruntime's
    choice, one per physical core). Without the CPU `arena` (piper): onnxruntime's arena keeps the peak of
    the longest sentence ever spoken (~350 MB more for piper); glibc then has to hand large buffers back
    (memory.tune_malloc), at the cost of page faults on every run."""
    import onnxruntime

    tune_malloc()
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
