"""Shared by the benchmarks: sample text, portraits, and rendering one talk the way a worker does."""

from __future__ import annotations

import csv
import os
import resource
import time
from pathlib import Path

import numpy as np
from talkmill_engine.render.drivers import choose_driver
from talkmill_engine.render.image import load_image
from talkmill_engine.render.talk import Renderer, RenderResult
from talkmill_engine.render.visemes import frame_rms
from talkmill_engine.speech.catalogue import resolve_voice, voice_by_id
from talkmill_engine.speech.stream import SpeechStream
from talkmill_engine.speech.synthesizer import Synthesizer
from talkmill_engine.speech.timing import Speech

ROOT = Path(__file__).resolve().parents[1]
PORTRAITS = {
    "astronaut": ROOT / "examples/presenters/astronaut.png",
    "grace_hopper": ROOT / "talkmill/assets/grace_hopper.jpg",
}
DEFAULT_CONFIG = {"stitch": False, "result_format": "mp4", "align_expand_factor": 0.3, "sharpen": True,
                  "normalization_factor": 1, "motion_factor": 1, "fluent": False}
PARAGRAPH = (
    "Good morning, and welcome to the quarterly product briefing. Over the past three months our team "
    "shipped four major features, fixed more than two hundred bugs, and cut the average page load time "
    "by almost a third. Today I will walk you through what changed, why it matters for your daily work, "
    "and what comes next. First, the new search. It now understands whole questions, not just keywords, "
    "so you can type what you mean and find the right document on the first try. "
)


def text_of_seconds(seconds: float) -> str:
    """About `seconds` of speech for the joe voice (~15 characters a second)."""
    chars = int(seconds * 19)
    return (PARAGRAPH * (chars // len(PARAGRAPH) + 1))[:chars].rsplit(" ", 1)[0] + "."


def synthesize(text: str, synthesizer: Synthesizer | None = None, voice_id: str | None = None) -> Speech:
    """`text` spoken by `voice_id` (the engine's default voice when None)."""
    synthesizer = synthesizer or Synthesizer()
    return synthesizer.synthesize(text, voice_by_id(voice_id) if voice_id else resolve_voice(None))


def render(portrait: str, speech: Speech | SpeechStream, out: Path, renderer: Renderer | None = None) -> RenderResult:
    data = PORTRAITS[portrait].read_bytes()
    renderer = renderer or Renderer()
    return renderer.render(load_image(data), speech, DEFAULT_CONFIG, choose_driver(None, data), out)


def sound_level(speech: Speech, n_frames: int, fps: int = 25) -> np.ndarray:
    """The reference the lip-sync benchmarks measure the mouth against: each frame's RMS (40 ms window) by
    the whole talk's 95th percentile, clipped at 1.2 (the renderer's own loudness is causal: it cannot
    know the whole talk; these figures were measured this way before it streamed)."""
    rms = frame_rms(speech.samples, speech.sample_rate, n_frames, fps)
    scale = np.percentile(rms, 95) if rms.size else 0.0
    return np.clip(rms / scale, 0, 1.2) if scale > 1e-6 else np.zeros(n_frames)


def write_rows_csv(path: Path, count: int, text: str) -> Path:
    """A CSV of `count` rows (id, text), `text` formatted with the row's number `i`."""
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "text"])
        for i in range(count):
            writer.writerow([f"{i:05d}", text.format(i=i)])
    return path


def quiet_prefect_env() -> None:
    """Prefect's settings for a benchmark, before Prefect is imported: called by a benchmark's main(), never
    at import: tests import the benchmarks' helpers, and later test subprocesses would inherit these."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # a loaded 2-core machine


def start_prefect_api() -> float:
    """Starts Prefect's temporary API server (once per process, when PREFECT_API_URL is unset); seconds."""
    from prefect import flow

    @flow
    def warm_up() -> None:
        pass

    began = time.perf_counter()
    warm_up()
    return time.perf_counter() - began


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
