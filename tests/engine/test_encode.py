"""The video writer encodes on its own thread: frames come out whole and in order, and a failure there
reaches the renderer instead of hanging it."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from talkmill_engine.render.encode import QUEUED_FRAMES, VideoWriter

SIZE = (64, 48)


def frames(n: int) -> list[np.ndarray]:
    """Frame i is grey level 8 * i: its order can be read back after lossy coding."""
    return [np.full((SIZE[1], SIZE[0], 3), 8 * i, np.uint8) for i in range(n)]


def test_frames_and_audio_come_out_in_order(tmp_path: Path) -> None:
    path = tmp_path / "talk.mp4"
    audio = np.sin(np.linspace(0, 2000, 16000)).astype(np.float32) * 0.3  # 1 s at 16 kHz
    with VideoWriter(path, "mp4", SIZE, 25, audio, 16000) as writer:
        for frame in frames(25):
            writer.write(frame)
    with av.open(str(path)) as container:
        levels = [float(f.to_ndarray(format="rgb24").mean()) for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        seconds = sum(f.samples for f in container.decode(audio=0)) / 16000
    assert len(levels) == 25
    assert np.all(np.abs(np.array(levels) - 8 * np.arange(25)) < 3)
    assert seconds == pytest.approx(1.0, abs=0.07)


def test_an_encoder_failure_reaches_the_caller(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="video encoder failed"):
        with VideoWriter(tmp_path / "bad.mp4", "mp4", SIZE, 25, np.zeros(0, np.float32), 16000) as writer:
            for _ in range(QUEUED_FRAMES * 4):  # more than the queue holds: must not block
                writer.write(np.zeros((7, 7), np.uint8))  # not an RGB frame: the conversion fails
