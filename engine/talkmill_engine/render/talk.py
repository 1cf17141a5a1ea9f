"""One talk, rendered: portrait + speech → video file. Models load once per worker (`Renderer()`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from talkmill_engine.memory import release_freed_memory, tune_malloc
from talkmill_engine.render.animate import FaceAnimator
from talkmill_engine.render.compose import Framing, LogoOverlay, Stopwatch
from talkmill_engine.render.drivers import Driver
from talkmill_engine.render.encode import VideoWriter
from talkmill_engine.render.face import FaceFinder, FaceFit
from talkmill_engine.render.glasses import wears_glasses
from talkmill_engine.render.poster import PosterPicker
from talkmill_engine.render.rig import Rig
from talkmill_engine.render.tracks import FPS, build_tracks, settled_frames
from talkmill_engine.speech.stream import SpeechStream
from talkmill_engine.speech.timing import Speech
from talks_contract.formats import DEFAULT_RESULT_FORMAT


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
    speech: Speech  # what was spoken, whole
    poster: np.ndarray | None = None  # RGB: a frame with open eyes and a closed mouth, logo on, captions off
    stage_seconds: dict[str, float] = field(default_factory=dict)


class Renderer:
    """`render` is called once per talk, in a worker process. The face models open for each talk's first
    moments only (60 ms once mediapipe is loaded): held through the render, their ~45 MB added to the speech
    engine's peak while a talk streams (joe's worker went over 400 MB)."""

    def __init__(self) -> None:
        tune_malloc()  # before the renderer's threads start
        FaceFinder().close()  # mediapipe's libraries load here, once per worker

    def render(
        self,
        image: np.ndarray,
        speech: Speech | SpeechStream,
        config: dict[str, Any],
        driver: Driver,
        out_path: Path,
        logo: np.ndarray | None = None,
        cues: list[Any] | None = None,
    ) -> RenderResult:
        """Render `speech` spoken by the largest face in `image` (RGB uint8) to `out_path`. A stream is
        spoken while the frames of its first sentences are drawn and encoded.

        `config` is the talk's config with defaults filled (TALKS_API.md). `logo` is an RGBA image. `cues`
        (talkmill_engine.captions.Cue) are burned in when given. Raises FaceError when no face is found.
        """
        stream = speech if isinstance(speech, SpeechStream) else SpeechStream.of(speech)
        clock = Stopwatch()
        with stream.arrivals() as arrivals:  # speaking starts now, beside the face search
            fit, frame, rig = self.prepare(image, config)
            clock.lap("landmarks")
            talk = _TalkFrames(frame, rig, config, logo, cues)
            with VideoWriter(out_path, _result_format(config), frame.out_size, FPS, stream.sample_rate) as writer:
                for known, whole in arrivals:
                    writer.add_audio(known.samples[writer.audio_added :])
                    talk.draw(build_tracks(known, config, driver), settled_frames(known, whole), writer)
        clock.lap("speak_animate_encode")
        clock.laps["waited_for_speech"] = arrivals.waited
        return RenderResult(
            path=out_path,
            num_frames=talk.drawn,
            duration=round(known.duration, 3),
            resolution=frame.out_size,
            size_kib=out_path.stat().st_size / 1024,
            num_faces=fit.num_faces,
            mouth_open=rig.mouth_open,
            face=_face_object(fit),
            speech=known,
            poster=talk.poster.frame,
            stage_seconds=clock.laps,
        )

    def prepare(self, image: np.ndarray, config: dict[str, Any]) -> tuple[FaceFit, Framing, Rig]:
        """The face found in `image`, the crop it is animated in, and its rig."""
        with FaceFinder() as faces:
            fit = faces.find(image, float(config.get("align_expand_factor", 0.3)))
            frame = Framing(image, fit, stitch=bool(config.get("stitch")), sharpen=bool(config.get("sharpen", True)))
            landmarks = faces.landmarks(frame.work)
        release_freed_memory()
        glasses = wears_glasses(frame.work, landmarks)
        rig = Rig(landmarks, frame.work_size, float(config.get("normalization_factor", 1)), glasses=glasses)
        return fit, frame, rig


class _TalkFrames:
    """The frames of one talk, drawn in order as their tracks settle."""

    def __init__(self, frame: Framing, rig: Rig, config: dict[str, Any], logo: Any, cues: Any) -> None:
        self.frame = frame
        self.animator = FaceAnimator(frame.work, rig)
        self.overlay = LogoOverlay(logo, frame.out_size, config.get("logo")) if logo is not None else None
        self.burner = _burner(cues, frame.out_size)
        self.poster = PosterPicker(FPS)
        self.drawn = 0

    def draw(self, tracks: dict[str, np.ndarray], until: int, writer: VideoWriter) -> None:
        """Frames from the last one drawn up to `until`, into `writer`."""
        for i in range(self.drawn, until):
            pose = {name: float(values[i]) for name, values in tracks.items()}
            out = self.frame.compose(self.animator.frame(pose))
            if self.overlay is not None:
                self.overlay.apply(out)
            self.poster.offer(i, pose, out)
            if self.burner is not None:
                self.burner.apply(out, i / FPS)
            writer.write(out)
        self.drawn = max(self.drawn, until)


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
