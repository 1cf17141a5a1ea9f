"""Engine speed: one 60-second text talk rendered the way a worker renders it, end to end.

Prints processing_fps (frames / seconds from text to finished MP4: TTS, landmarks, animation, encode),
each stage's time, model loading apart, and the peak RSS of the process. Speech is streamed into the
frames as a worker streams it: sentences are spoken while the first ones are animated and encoded;
"waited for speech" is the renderer's time spent waiting for the next sentence.
Targets on a 2-core machine (issue 11): 100 fps and 400 MB with joe, 50 fps and 600 MB with a Kokoro voice.

    .venv/bin/python -m bench.engine_speed [--seconds 60] [--portrait grace_hopper] [--voice en-US-joe]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from talkmill_engine.render.talk import Renderer
from talkmill_engine.speech.catalogue import resolve_voice, voice_by_id
from talkmill_engine.speech.synthesizer import Synthesizer

from bench.common import PORTRAITS, Timer, peak_rss_mb, render, text_of_seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--portrait", choices=sorted(PORTRAITS), default="grace_hopper")
    parser.add_argument("--voice", help="a voice id (default: the engine's default voice, Kokoro af_heart)")
    args = parser.parse_args()
    voice = voice_by_id(args.voice) if args.voice else resolve_voice(None)
    with Timer() as loading:  # what a worker serving this voice loads: its speech engine and the renderer
        synthesizer, renderer = Synthesizer(), Renderer()
        synthesizer.warm(voice)
    text = text_of_seconds(args.seconds)
    cpu = time.process_time()
    with tempfile.TemporaryDirectory() as tmp, Timer() as total:
        result = render(args.portrait, synthesizer.stream(text, voice), Path(tmp) / "talk.mp4", renderer)
    cpu = time.process_time() - cpu
    speech = result.speech
    fps = result.num_frames / total.seconds
    print(f"voice: {speech.voice_id}")
    print(f"talk: {speech.duration:.1f} s of speech, {result.num_frames} frames, {result.size_kib:.0f} KiB")
    print(f"model loading (apart): {loading.seconds:.2f} s")
    for stage, seconds in result.stage_seconds.items():
        print(f"stage {stage.replace('_', ' ') + ':':<21} {seconds:.2f} s")
    print(f"CPU:                  {cpu:.2f} s  ({cpu / total.seconds:.2f} cores busy)")
    print(f"end to end:           {total.seconds:.2f} s")
    print(f"processing_fps:       {fps:.1f}   (target >= 100 joe, >= 50 Kokoro)")
    print(f"peak RSS:             {peak_rss_mb():.0f} MB   (target < 400 joe, < 600 Kokoro)")


if __name__ == "__main__":
    main()
