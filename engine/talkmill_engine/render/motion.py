"""Everything that moves besides the mouth: blinks, head motion from the driver, expressions.

Pure numpy, deterministic for a given driver and talk length (the same request renders the same video).
Head motion is a smooth sum of sines within about ±2°, plus small nods on stressed (loud) moments.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from talkmill_engine.render.drivers import Driver

# Expression → (smile, brow, eye_wide) at intensity 1. "serious" turns the corners down and the brows in.
EXPRESSIONS = {
    "neutral": (0.0, 0.0, 0.0),
    "happy": (1.0, 0.25, 0.0),
    "serious": (-0.45, -0.7, 0.0),
    "surprise": (0.0, 1.0, 1.0),
}
_BLINK_SHAPE = np.array([0.35, 0.85, 1.0, 0.75, 0.4, 0.12])  # ~6 frames: quick close, slower open
FLUENT_SECONDS = 0.4


def blink_track(n_frames: int, fps: int, rng: np.random.Generator) -> np.ndarray:
    """Blinks every 2–5 s, the first after 0.5–2 s."""
    track = np.zeros(n_frames)
    t = rng.uniform(0.5, 2.0)
    while (start := int(t * fps)) < n_frames:
        end = min(start + len(_BLINK_SHAPE), n_frames)
        track[start:end] = np.maximum(track[start:end], _BLINK_SHAPE[: end - start])
        t += rng.uniform(2.0, 5.0)
    return track


def head_tracks(
    n_frames: int, fps: int, driver: Driver, motion_factor: float, energy: np.ndarray, fluent: bool
) -> dict[str, np.ndarray]:
    """yaw, pitch, roll (radians) for each frame."""
    amplitude, tempo, _ = driver.style
    rng = np.random.default_rng(driver.seed)
    t = np.arange(n_frames) / fps

    def wander(scale: float) -> np.ndarray:
        freqs = rng.uniform(0.08, 0.35, 3) * tempo
        phases = rng.uniform(0, 2 * np.pi, 3)
        weights = np.array([1.0, 0.55, 0.3])
        return scale * sum(w * np.sin(2 * np.pi * f * t + p) for w, f, p in zip(weights, freqs, phases)) / 1.85

    nods = _emphasis(energy, fps)
    tracks = {
        "yaw": wander(0.03),
        "pitch": wander(0.018) + 0.012 * nods,
        "roll": wander(0.02),
    }
    sign = -1.0 if driver.flipped else 1.0
    tracks["yaw"] *= sign
    tracks["roll"] *= sign
    scale = amplitude * motion_factor * (_fluent_envelope(n_frames, fps) if fluent else 1.0)
    return {name: values * scale for name, values in tracks.items()}


def expression_tracks(
    n_frames: int, fps: int, config: dict[str, Any], driver: Driver, energy: np.ndarray
) -> dict[str, np.ndarray]:
    """smile, brow, eye_wide per frame from config.driver_expressions, plus brow lifts on emphasis."""
    spec = config.get("driver_expressions") or {}
    keys = sorted(spec.get("expressions") or [], key=lambda e: e["start_frame"])
    transition = max(int(spec.get("transition_frames") or 0), 0)
    values = np.zeros((n_frames, 3))
    current = np.zeros(3)
    for i, key in enumerate(keys):
        target = np.array(EXPRESSIONS[key["expression"]]) * float(key.get("intensity", 1.0))
        start = min(int(key["start_frame"]), n_frames)
        end = min(int(keys[i + 1]["start_frame"]), n_frames) if i + 1 < len(keys) else n_frames
        ramp = np.clip((np.arange(end - start) + 1) / max(transition, 1), 0, 1)[:, None]
        values[start:end] = current + (target - current) * ramp
        current = values[end - 1] if end > start else target
    values[:, 1] += 0.25 * driver.style[2] * _emphasis(energy, fps)
    return {"smile": values[:, 0], "brow": values[:, 1], "eye_wide": values[:, 2]}


def _emphasis(energy: np.ndarray, fps: int) -> np.ndarray:
    """0..1 bumps on loud moments (stressed syllables), smoothed over ~0.3 s."""
    if energy.size == 0:
        return energy
    width = max(int(0.3 * fps), 1)
    kernel = np.hanning(2 * width + 1)
    kernel /= kernel.sum()
    smooth = np.convolve(np.pad(energy, width, mode="edge"), kernel, mode="valid")
    return np.clip((smooth - 0.55) / 0.35, 0, 1)


def _fluent_envelope(n_frames: int, fps: int) -> np.ndarray:
    """0 at both ends, 1 in between: a fluent clip starts and ends on the rest pose."""
    ramp = max(int(FLUENT_SECONDS * fps), 1)
    position = np.arange(n_frames)
    rise = np.clip(position / ramp, 0, 1)
    fall = np.clip((n_frames - 1 - position) / ramp, 0, 1)
    envelope = np.minimum(rise, fall)
    return envelope * envelope * (3 - 2 * envelope)
