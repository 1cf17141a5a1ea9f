"""Every pose parameter of the rig, per frame, from the speech known so far, and how many leading frames
of them are settled: they stay the same however much more speech comes (so they can be rendered while the
rest is spoken). Nothing here looks at the whole talk: loudness is measured against what came before
(visemes.running_scale), blinks and head motion follow the driver's seed, not the talk's length.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from talkmill_engine.render.drivers import Driver
from talkmill_engine.render.motion import FLUENT_SECONDS, blink_track, expression_tracks, head_tracks
from talkmill_engine.render.visemes import (
    LEAD_SECONDS,
    NORMALISER_SECONDS,
    frame_count,
    heard_frames,
    loudness,
    tracks_from_audio,
    tracks_from_phones,
)
from talkmill_engine.speech.timing import Speech

FPS = 25
# The furthest any track looks ahead of a frame: emphasis smoothing (0.3 s), a fluent clip's closing
# ramp (FLUENT_SECONDS), and the mouth's smoothing and brightness windows (2-3 frames), with one to spare.
LOOKAHEAD_FRAMES = max(int(0.3 * FPS), int(FLUENT_SECONDS * FPS), 3) + 2


def build_tracks(speech: Speech, config: dict[str, Any], driver: Driver) -> dict[str, np.ndarray]:
    """The tracks of `speech`, one value per frame of it."""
    n_frames = frame_count(speech.duration, FPS)
    energy = loudness(speech.samples, speech.sample_rate, n_frames, FPS)
    mouth = tracks_from_phones if speech.phones else tracks_from_audio
    tracks = mouth(speech, FPS, energy)
    fluent = bool(config.get("fluent"))
    tracks |= head_tracks(n_frames, FPS, driver, float(config.get("motion_factor", 1)), energy, fluent)
    tracks |= expression_tracks(n_frames, FPS, config, driver, energy)
    tracks["blink"] = blink_track(n_frames, FPS, np.random.default_rng([driver.seed, 1]))
    return tracks


def settled_frames(speech: Speech, whole: bool) -> int:
    """How many leading frames of build_tracks(speech) stay as they are when more speech follows `speech`
    (all of them when it is `whole`)."""
    n_frames = frame_count(speech.duration, FPS)
    if whole:
        return n_frames
    limit = heard_frames(len(speech.samples), speech.sample_rate, FPS)
    if limit < NORMALISER_SECONDS * FPS:
        return 0  # loudness's scale is not set yet
    if speech.phones:
        # The last phone (a pause, or a cut word) may still grow: keys before the one ahead of it are final.
        start = speech.phones[-2].start if len(speech.phones) > 1 else 0.0
        limit = min(limit, int((start - LEAD_SECONDS) * FPS))
    return max(0, min(limit, n_frames) - LOOKAHEAD_FRAMES)
