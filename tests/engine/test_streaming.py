"""Speech streamed into the renderer: frames drawn while later sentences are spoken are the frames the
whole speech would give, and the video is the same frame for frame."""

from __future__ import annotations

import threading
from pathlib import Path

import av
import numpy as np
import pytest
from talkmill_engine.errors import ValidationError
from talkmill_engine.render.drivers import choose_driver
from talkmill_engine.render.image import load_image
from talkmill_engine.render.talk import Renderer
from talkmill_engine.render.tracks import build_tracks, settled_frames
from talkmill_engine.speech.catalogue import voice_by_id
from talkmill_engine.speech.stream import SpeechStream
from talkmill_engine.speech.synthesizer import Synthesizer
from talkmill_engine.speech.timing import PAUSE, Phone, SpeechBuilder

ROOT = Path(__file__).resolve().parents[2]
GRACE = ROOT / "talkmill/assets/grace_hopper.jpg"
CONFIG = {"stitch": False, "result_format": "mp4", "align_expand_factor": 0.3, "sharpen": True,
          "normalization_factor": 1, "motion_factor": 1, "fluent": False}
RATE = 16000
SYMBOLS = ["h", "ɛ", "l", "oʊ", "m", "a", "p", "s", "i", "θ", "u", "b", "ə"]


def sentence(rng: np.random.Generator, seconds: float) -> tuple[np.ndarray, list[Phone]]:
    """A made-up sentence: phones of 50-150 ms with sounds as loud as their vowels, then a pause."""
    phones, t = [Phone(PAUSE, 0.0, 0.1)], 0.1
    while t < seconds - 0.3:
        length = rng.uniform(0.05, 0.15)
        phones.append(Phone(str(rng.choice(SYMBOLS)), t, t + length))
        t += length
    phones.append(Phone(PAUSE, t, seconds))
    envelope = np.concatenate([np.full(int(RATE * (p.end - p.start)), rng.uniform(0.05, 1)) for p in phones])
    samples = (rng.standard_normal(len(envelope)) * envelope * rng.uniform(0.2, 0.8)).astype(np.float32)
    return samples, phones


@pytest.mark.parametrize("config", [CONFIG, CONFIG | {"fluent": True, "motion_factor": 1.5}, CONFIG | {
    "driver_expressions": {"expressions": [{"start_frame": 0, "expression": "happy", "intensity": 0.6},
                                           {"start_frame": 120, "expression": "serious"}],
                           "transition_frames": 20}}])
@pytest.mark.parametrize("with_phones", [True, False])
def test_settled_frames_never_change_as_more_speech_comes(config: dict, with_phones: bool) -> None:
    rng = np.random.default_rng(7)
    pieces = [sentence(rng, seconds) for seconds in (0.7, 2.6, 1.2, 3.9, 0.9, 2.2)]
    if not with_phones:
        pieces = [(samples, []) for samples, _ in pieces]
    driver = choose_driver(None, GRACE.read_bytes())
    builder = SpeechBuilder(RATE)
    prefixes = []
    for samples, phones in pieces:  # the speech known after each piece, as the renderer sees it
        builder.add(samples, phones)
        prefixes.append(builder.speech())
    final = build_tracks(prefixes[-1], config, driver)
    assert settled_frames(prefixes[-1], True) == len(final["jaw"])
    settled = []
    for known in prefixes[:-1]:
        settled.append(settled_frames(known, False))
        tracks = build_tracks(known, config, driver)
        for name, values in final.items():
            np.testing.assert_array_equal(tracks[name][: settled[-1]], values[: settled[-1]], err_msg=name)
    assert settled == sorted(settled) and settled[-1] > 0.6 * len(final["jaw"])  # most frames drawn early


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_a_streamed_talk_is_the_whole_speech_rendered_frame_for_frame(tmp_path: Path) -> None:
    text = "Good morning, and welcome. Today we look at the new search. It understands whole questions."
    data = GRACE.read_bytes()
    image, driver, renderer = load_image(data), choose_driver(None, data), Renderer()
    streamed = renderer.render(image, Synthesizer().stream(text, voice_by_id("en-US-joe")), CONFIG, driver,
                               tmp_path / "streamed.mp4")  # fmt: skip
    whole = renderer.render(image, streamed.speech, CONFIG, driver, tmp_path / "whole.mp4")
    a, b = frames_of(streamed.path), frames_of(whole.path)
    assert len(a) == len(b) == streamed.num_frames == round(streamed.speech.duration * 25)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert streamed.poster is not None and np.array_equal(streamed.poster, whole.poster)
    assert streamed.speech.voice_id == "en-US-joe"


def test_a_failing_speech_engine_fails_the_render_and_stops(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    spoken = []

    def pieces():
        for i in range(50):
            spoken.append(i)
            if i == 3:
                raise RuntimeError("the model broke")
            yield sentence(rng, 1.5)

    data = GRACE.read_bytes()
    with pytest.raises(RuntimeError, match="the model broke"):
        Renderer().render(load_image(data), SpeechStream(RATE, pieces()), CONFIG, choose_driver(None, data),
                          tmp_path / "talk.mp4")  # fmt: skip
    assert spoken == [0, 1, 2, 3]
    assert [t.name for t in threading.enumerate() if t.name == "speech"] == []


def test_leaving_early_stops_the_speaker_after_its_piece() -> None:
    rng = np.random.default_rng(2)
    spoken = []

    def pieces():
        for i in range(100):
            spoken.append(i)
            yield sentence(rng, 1.0)

    with SpeechStream(RATE, pieces()).arrivals() as arrivals:
        next(iter(arrivals))
    assert len(spoken) < 100


def test_a_text_with_nothing_to_speak_is_refused_while_streaming(tmp_path: Path) -> None:
    data = GRACE.read_bytes()
    stream = Synthesizer().stream("...", voice_by_id("en-US-joe"))
    with pytest.raises(ValidationError, match="nothing to speak"):
        Renderer().render(load_image(data), stream, CONFIG, choose_driver(None, data), tmp_path / "talk.mp4")
