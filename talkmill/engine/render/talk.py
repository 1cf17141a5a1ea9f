"""One talk, rendered: portrait + speech → video file. Models load once per worker (`Renderer()`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from talkmill.engine.render.drivers import Driver
from talkmill.engine.render.speech import Speech


@dataclass
class RenderResult:
    path: Path
    num_frames: int
    duration: float  # seconds, of the written video
    resolution: tuple[int, int]  # (width, height)
    size_kib: float
    num_faces: int
    mouth_open: bool  # whether the portrait's mouth was open
    face: dict[str, Any]  # the talk's `face` object (detection, top_left, size, ...)
    stage_seconds: dict[str, float] = field(default_factory=dict)


class Renderer:
    """Holds the face model; `render` is called once per talk, in a worker process."""

    def render(
        self,
        image: np.ndarray,
        speech: Speech,
        config: dict[str, Any],
        driver: Driver,
        out_path: Path,
        logo: np.ndarray | None = None,
    ) -> RenderResult:
        """Render `speech` spoken by the largest face in `image` (RGB uint8) to `out_path`.

        `config` is the talk's config with defaults filled (TALKS_API.md). `logo` is an RGBA image.
        Raises FaceError when no face is found, LogoError for an unusable logo.
        """
        raise NotImplementedError  # being written (issue 2)
