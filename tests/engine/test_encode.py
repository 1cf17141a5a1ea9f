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
    """Audio comes in pieces as it is spoken, ahead of the frames: each lands where it belongs."""
    path = tmp_path / "talk.mp4"
    tone = np.sin(np.linspace(0, 2000, 16000)).astype(np.float32)  # 1 s at 16 kHz
    cuts, levels = (0, 5000, 9001, 16000), (0.1, 0.3, 0.6)
    added_before = {0: 0, 6: 1, 11: 2}  # frame → the piece added just before it (frame 6 starts at 3840)
    with VideoWriter(path, "mp4", SIZE, 25, 16000) as writer:
        for i, frame in enumerate(frames(25)):
            if i in added_before:
                k = added_before[i]
                writer.add_audio(tone[cuts[k] : cuts[k + 1]] * levels[k])
            writer.write(frame)
    with av.open(str(path)) as container:
        grey = [float(f.to_ndarray(format="rgb24").mean()) for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        sound = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert len(grey) == 25
    assert np.all(np.abs(np.array(grey) - 8 * np.arange(25)) < 3)
    assert len(sound) / 16000 == pytest.approx(1.0, abs=0.07)
    for k, level in enumerate(levels):  # the middle of each piece (AAC's priming delay is ~1024 samples)
        middle = sound[cuts[k] + 1500 : cuts[k + 1] - 500]
        assert np.sqrt(np.mean(middle**2)) == pytest.approx(level / np.sqrt(2), rel=0.15)


def test_an_encoder_failure_reaches_the_caller(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="video encoder failed"):
        with VideoWriter(tmp_path / "bad.mp4", "mp4", SIZE, 25, 16000) as writer:
            for _ in range(QUEUED_FRAMES * 4):  # more than the queue holds: must not block
                writer.write(np.zeros((7, 7), np.uint8))  # not an RGB frame: the conversion fails
