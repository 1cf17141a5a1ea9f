"""Lip-sync of AUDIO scripts: the engine's own TTS speaks ~15 s of English into a WAV, which is then decoded
the way a worker decodes an audio script (speech/audio.py decode_audio) with its transcript (forced
alignment), without (the phone loop), and with no phones at all (loudness).

Prints, per mode:
- alignment time per audio second and peak RSS, in a fresh process that only decodes and aligns;
- r between the mouth tracks (jaw, width, press) from the found phones and from the TTS's own phone timings
  (the truth for this audio);
- rendered on each portrait, the output-frame r of bench/lipsync.py (inner-lip opening vs audio RMS).
Target (issue 9): r >= 0.7 at lag 0 or ±1 with the transcript.

    .venv/bin/python -m bench.lipsync_audio [--seconds 15] [--voice en-US-espeak] [--no-render]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from talkmill_engine.render.face import FaceFinder
from talkmill_engine.render.talk import FPS, Renderer
from talkmill_engine.render.visemes import frame_count, loudness, tracks_from_audio, tracks_from_phones
from talkmill_engine.speech.audio import decode_audio, write_wav
from talkmill_engine.speech.catalogue import voice_by_id
from talkmill_engine.speech.synthesizer import Synthesizer
from talkmill_engine.speech.timing import Speech

from bench.common import PORTRAITS, render, sound_level, text_of_seconds
from bench.lipsync import LAGS, lagged_r, lip_openings, shifted_baseline

MODES = ("transcript", "phone loop", "loudness")
TARGET = 0.7


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--voice", default="en-US-joe", help="the engine voice that speaks the audio script")
    parser.add_argument("--no-render", action="store_true", help="alignment figures and mouth tracks only")
    args = parser.parse_args()
    text = text_of_seconds(args.seconds)
    truth = Synthesizer().synthesize(text, voice_by_id(args.voice))
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "script.wav"
        write_wav(truth, wav)
        print(f"audio script: {truth.duration:.1f} s of {args.voice}, {len(truth.phones)} phones of its own")
        for mode in MODES[:2]:
            figures = _time_alignment(wav, text if mode == "transcript" else None)
            per_second = figures["cpu"] / truth.duration
            print(f"alignment, {mode:<10}: {per_second:.3f} CPU s per audio second; wall "
                  f"{figures['warm']:.2f} s warm, {figures['cold']:.2f} s first; "
                  f"peak RSS {figures['rss_mb']:.0f} MB")
        speeches = _speeches(wav.read_bytes(), text)
        _print_tracks(truth, speeches)
        if not args.no_render:
            _print_rendered(speeches, Path(tmp))


def _speeches(data: bytes, text: str) -> dict[str, Speech]:
    with_text, without = decode_audio(data, transcript=text), decode_audio(data)
    no_phones = Speech(without.samples, without.sample_rate)
    return {"transcript": with_text, "phone loop": without, "loudness": no_phones}


# Times decode_audio in a fresh process that imports nothing else: its peak RSS is the aligner's.
_TIMED_DECODE = """
import json, sys, time
from talkmill_engine.speech.audio import decode_audio
data, transcript = open(sys.argv[1], "rb").read(), json.loads(sys.argv[2])
times = []
for _ in range(2):  # the first call loads the decoder
    wall, cpu = time.perf_counter(), time.process_time()
    decode_audio(data, transcript=transcript)
    times.append((time.perf_counter() - wall, time.process_time() - cpu))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (large) parent
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
rss_mb = int(hwm.split()[1]) / 1024
print(json.dumps({"cold": times[0][0], "warm": times[1][0], "cpu": times[1][1], "rss_mb": rss_mb}))
"""


def _time_alignment(wav: Path, transcript: str | None) -> dict[str, float]:
    """decode_audio's wall seconds, first and second call, the second's CPU seconds (decoding the WAV itself
    is milliseconds of it), and peak RSS."""
    command = [sys.executable, "-c", _TIMED_DECODE, str(wav), json.dumps(transcript)]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def _print_tracks(truth: Speech, speeches: dict[str, Speech]) -> None:
    n_frames = frame_count(truth.duration, FPS)
    energy = loudness(truth.samples, truth.sample_rate, n_frames, FPS)
    reference = tracks_from_phones(truth, FPS, energy)
    print("\nmouth tracks vs the TTS's own phones (Pearson r)")
    print(f"{'mode':<12}{'jaw':>8}{'width':>8}{'press':>8}")
    for mode, speech in speeches.items():
        tracks = (tracks_from_phones if speech.phones else tracks_from_audio)(speech, FPS, energy)
        rs = [np.corrcoef(reference[name], tracks[name])[0, 1] for name in ("jaw", "width", "press")]
        print(f"{mode:<12}" + "".join(f"{r:8.3f}" for r in rs))


def _print_rendered(speeches: dict[str, Speech], tmp: Path) -> None:
    faces, renderer = FaceFinder(), Renderer()
    print("\nrendered: inner-lip opening vs audio RMS (Pearson r by lag in frames)")
    lags = "".join(f"{'lag ' + str(lag):>8}" for lag in LAGS)
    print(f"{'portrait':<14}{'mode':<12}{lags}{'base95':>8}  verdict")
    for name in PORTRAITS:
        for mode, speech in speeches.items():
            result = render(name, speech, tmp / f"{name}-{mode.replace(' ', '_')}.mp4", renderer)
            mouth = lip_openings(result.path, faces)
            rms = sound_level(speech, len(mouth), FPS)
            rs = {lag: lagged_r(mouth, rms, lag) for lag in LAGS}
            best = max(rs[-1], rs[0], rs[1])
            verdict = ("PASS" if best >= TARGET else "FAIL") if mode == "transcript" else ""
            base = shifted_baseline(mouth, rms, FPS)
            row = f"{name:<14}{mode:<12}" + "".join(f"{rs[lag]:8.3f}" for lag in LAGS)
            print(row + f"{base:8.3f}  {verdict} (best {best:.3f})")


if __name__ == "__main__":
    main()
