"""Lip-sync quality: does the mouth on the OUTPUT video open when the audio is loud?

Renders a talk per wheel-shipped portrait, re-detects the face mesh on every output frame, measures the
inner-lip opening (mean of landmark pairs 13-14, 82-87, 312-317, over the iris distance) and prints
Pearson r against the audio's RMS (40 ms window) at lags -3..+3 frames, beside a baseline from the same
signals circularly shifted by at least a second (95th percentile of |r|). Target (issue 9): r >= 0.75 at
lag 0 or ±1, with joe (the default here) and with a Kokoro voice (--voice en-US-af_heart).

    .venv/bin/python -m bench.lipsync [--seconds 20] [--voice en-US-joe]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import av
import numpy as np
from talkmill_engine.render.face import FaceFinder
from talkmill_engine.speech.catalogue import voice_by_id
from talkmill_engine.speech.synthesizer import Synthesizer
from talkmill_engine.speech.timing import Speech

from bench.common import PORTRAITS, render, sound_level, text_of_seconds

LIP_PAIRS = [(13, 14), (82, 87), (312, 317)]
LAGS = range(-3, 4)
TARGET = 0.75


def lip_openings(video: Path, faces: FaceFinder) -> np.ndarray:
    openings = []
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            points = faces.landmarks(frame.to_ndarray(format="rgb24"))
            iris = np.linalg.norm(points[468, :2] - points[473, :2])
            openings.append(np.mean([points[b, 1] - points[a, 1] for a, b in LIP_PAIRS]) / iris)
    return np.array(openings)


def lagged_r(mouth: np.ndarray, rms: np.ndarray, lag: int) -> float:
    """r between mouth[t] and rms[t + lag]."""
    if lag > 0:
        mouth, rms = mouth[:-lag], rms[lag:]
    elif lag < 0:
        mouth, rms = mouth[-lag:], rms[:lag]
    return float(np.corrcoef(mouth, rms)[0, 1])


def shifted_baseline(mouth: np.ndarray, rms: np.ndarray, fps: int, trials: int = 200) -> float:
    rng = np.random.default_rng(0)
    shifts = rng.integers(fps, len(rms) - fps, trials)
    return float(np.percentile([abs(np.corrcoef(mouth, np.roll(rms, s))[0, 1]) for s in shifts], 95))


def speak(text: str, voice_id: str) -> Speech:
    return Synthesizer().synthesize(text, voice_by_id(voice_id))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--voice", default="en-US-joe", help="a voice id: en-US-joe (piper), en-US-af_heart (Kokoro)")
    args = parser.parse_args()
    speech = speak(text_of_seconds(args.seconds), args.voice)
    faces = FaceFinder()
    print(f"speech: {args.voice}, {speech.duration:.1f} s, {len(speech.phones)} phones")
    print(f"{'portrait':<14}" + "".join(f"{'lag ' + str(lag):>9}" for lag in LAGS) + f"{'baseline95':>12}  verdict")
    with tempfile.TemporaryDirectory() as tmp:
        for name in PORTRAITS:
            result = render(name, speech, Path(tmp) / f"{name}.mp4")
            mouth = lip_openings(result.path, faces)
            rms = sound_level(speech, len(mouth))
            rs = {lag: lagged_r(mouth, rms, lag) for lag in LAGS}
            best = max(rs[-1], rs[0], rs[1])
            verdict = "PASS" if best >= TARGET else "FAIL"
            base = shifted_baseline(mouth, rms, 25)
            print(f"{name:<14}" + "".join(f"{rs[lag]:9.3f}" for lag in LAGS) + f"{base:12.3f}  {verdict} (best {best:.3f})")


if __name__ == "__main__":
    main()
