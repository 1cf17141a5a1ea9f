"""One talk, rendered: portrait + speech → video file. Models load once per worker (`Renderer()`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from talkmill_engine.render.animate import FaceAnimator
from talkmill_engine.render.compose import Framing, LogoOverlay, Stopwatch
from talkmill_engine.render.drivers import Driver
from talkmill_engine.render.encode import VideoWriter
from talkmill_engine.render.face import FaceFinder, FaceFit
from talkmill_engine.render.glasses import wears_glasses
from talkmill_engine.render.motion import blink_track, expression_tracks, head_tracks
from talkmill_engine.render.poster import poster_frame_index
from talkmill_engine.render.rig import Rig
from talkmill_engine.render.visemes import frame_count, loudness, tracks_from_audio, tracks_from_phones
from talkmill_engine.speech.timing import Speech
from talks_contract.formats import DEFAULT_RESULT_FORMAT

FPS = 25


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
    poster: np.ndarray | None = None  # RGB: a frame with open eyes and a closed mouth, logo on, captions off
    stage_seconds: dict[str, float] = field(default_factory=dict)


class Renderer:
    """Holds the face model; `render` is called once per talk, in a worker process."""

    def __init__(self) -> None:
        self.faces = FaceFinder()

    def render(
        self,
        image: np.ndarray,
        speech: Speech,
        config: dict[str, Any],
        driver: Driver,
        out_path: Path,
        logo: np.ndarray | None = None,
        cues: list[Any] | None = None,
    ) -> RenderResult:
        """Render `speech` spoken by the largest face in `image` (RGB uint8) to `out_path`.

        `config` is the talk's config with defaults filled (TALKS_API.md). `logo` is an RGBA image. `cues`
        (talkmill_engine.captions.Cue) are burned in when given. Raises FaceError when no face is found.
        """
        clock = Stopwatch()
        fit, frame, rig = self.prepare(image, config)
        clock.lap("landmarks")
        n_frames = frame_count(speech.duration, FPS)
        tracks = build_tracks(speech, n_frames, config, driver)
        animator = FaceAnimator(frame.work, rig)
        overlay = LogoOverlay(logo, frame.out_size, config.get("logo")) if logo is not None else None
        burner = _burner(cues, frame.out_size)
        poster_at, poster = poster_frame_index(tracks), None
        fmt = _result_format(config)
        with VideoWriter(out_path, fmt, frame.out_size, FPS, speech.samples, speech.sample_rate) as writer:
            for i in range(n_frames):
                face = animator.frame({name: values[i] for name, values in tracks.items()})
                out = frame.compose(face)
                if overlay is not None:
                    overlay.apply(out)
                if i == poster_at:
                    poster = out.copy()
                if burner is not None:
                    burner.apply(out, i / FPS)
                writer.write(out)
        clock.lap("animate_encode")
        return RenderResult(
            path=out_path,
            num_frames=n_frames,
            duration=round(speech.duration, 3),
            resolution=frame.out_size,
            size_kib=out_path.stat().st_size / 1024,
            num_faces=fit.num_faces,
            mouth_open=rig.mouth_open,
            face=_face_object(fit),
            poster=poster,
            stage_seconds=clock.laps,
        )

    def prepare(self, image: np.ndarray, config: dict[str, Any]) -> tuple[FaceFit, Framing, Rig]:
        """The face found in `image`, the crop it is animated in, and its rig."""
        fit = self.faces.find(image, float(config.get("align_expand_factor", 0.3)))
        frame = Framing(image, fit, stitch=bool(config.get("stitch")), sharpen=bool(config.get("sharpen", True)))
        landmarks = self.faces.landmarks(frame.work)
        glasses = wears_glasses(frame.work, landmarks)
        rig = Rig(landmarks, frame.work_size, float(config.get("normalization_factor", 1)), glasses=glasses)
        return fit, frame, rig


def build_tracks(speech: Speech, n_frames: int, config: dict[str, Any], driver: Driver) -> dict[str, np.ndarray]:
    """Every pose parameter of the rig, per frame."""
    energy = loudness(speech.samples, speech.sample_rate, n_frames, FPS)
    mouth = tracks_from_phones if speech.phones else tracks_from_audio
    tracks = mouth(speech, FPS, energy)
    fluent = bool(config.get("fluent"))
    tracks |= head_tracks(n_frames, FPS, driver, float(config.get("motion_factor", 1)), energy, fluent)
    tracks |= expression_tracks(n_frames, FPS, config, driver, energy)
    tracks["blink"] = blink_track(n_frames, FPS, np.random.default_rng(driver.seed + n_frames))
    return tracks


def _burner(cues: list[Any] | None, size: tuple[int, int]) -> Any:
    if not cues:
        return None
    from talkmill_engine.render.caption_burn import CaptionBurner

    return CaptionBurner(cues, size)


def _result_format(config: dict[str, Any]) -> str:
    return str(config.get("result_format", DEFAULT_RESULT_FORMAT)).lstrip(".").lower()


def _face_object(fit: FaceFit) -> dict[str, Any]:
    return {
        "detection": list(fit.detection),
        "top_left": list(fit.top_left),
        "size": fit.size,
        "overlap": "no",
        "face_id": 0,
        "detect_confidence": round(fit.confidence, 6),
        "mask_confidence": -1,
    }
