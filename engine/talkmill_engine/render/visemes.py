"""Mouth shapes over time, from phoneme timings (text scripts) or from the sound itself (audio scripts).

Pure numpy. Each frame gets `jaw` (0 closed .. 1 wide), `width` (-1 rounded .. 1 spread), `press`
(1 = lips together for p, b, m) and `tongue` (how far the tip rises: 0.7 to behind the upper teeth for l,
1 forward between the teeth for th).
Shapes are keyed at phoneme centres, the mouth leading the sound, interpolated and lightly smoothed; the
lips close for p, b, m and part again within CLOSURE_SECONDS of the sound's edges. How far the jaw opens
is the shape's opening, plus a share any loud sound gets (EFFORT_OPENING), times the loudness of the
moment: a reduced, quiet vowel barely parts the lips and a stressed one opens fully, as speakers do (and
the output's lip opening follows the sound: bench/lipsync.py).
"""

from __future__ import annotations

import bisect
from typing import NamedTuple

import numpy as np

from talkmill_engine.speech.timing import Phone, Speech

# Frame i is sampled at i/fps + LEAD: 25 ms after the frame's centre (the loudness of frame i is centred
# there), so the mouth leads the sound by ~25 ms, as lips lead the voice in speech.
LEAD_SECONDS = 0.045
QUIET_OPENING = 0.05  # of a shape's opening left at silence-level loudness (0.15 held lips apart in silence)
# Speakers open the jaw wider the louder they speak, whatever the sound: this share of the full opening
# comes with loudness alone (the shape sets the rest). Without it a voice whose loudness stays up through
# close vowels, l, n and r (Kokoro's af_heart: its energy is in its fundamental) moved the mouth against
# the sound: r 0.67 on the tracks, where joe's loudness falls on those sounds (0.81).
EFFORT_OPENING = 0.3
# The lips close for p, b, m and part again this fast; the neighbours keep their own shape up to it (from
# centre to centre the closure took half of each neighbour's time: shut lips over loud vowels).
CLOSURE_SECONDS = 0.02
TRACKS = ("jaw", "width", "press", "tongue")
# Loudness is measured against the first 2 s of speech, then against all of it so far: never the whole
# talk, which the renderer does not have yet while later sentences are spoken.
NORMALISER_SECONDS = 2.0
_RMS_BLOCK_FRAMES = 250  # 10 s


class Shape(NamedTuple):
    jaw: float
    width: float
    press: float = 0.0
    tongue: float = 0.0


# Per IPA symbol; unknown symbols fall back by class.
_SHAPES: dict[str, Shape] = {
    **dict.fromkeys("aɑɒæ", Shape(1.0, 0.15)),
    **dict.fromkeys("ʌ", Shape(0.8, 0.1)),
    **dict.fromkeys("ɐ", Shape(0.55, 0.1)),
    **dict.fromkeys("eɛ", Shape(0.65, 0.45)),
    **dict.fromkeys("iɪy", Shape(0.3, 0.75)),
    **dict.fromkeys("ɜɝ", Shape(0.45, 0.05)),
    **dict.fromkeys("ə", Shape(0.35, 0.05)),
    **dict.fromkeys("ɚ", Shape(0.3, -0.2)),
    **dict.fromkeys("oɔ", Shape(0.6, -0.7)),
    **dict.fromkeys("uʊwɯ", Shape(0.25, -1.0)),
    **dict.fromkeys("pbm", Shape(0.0, 0.0, press=1.0)),
    **dict.fromkeys("fv", Shape(0.1, 0.2, press=0.5)),
    **dict.fromkeys("θð", Shape(0.22, 0.2, tongue=1.0)),  # the tip forward, between the teeth
    **dict.fromkeys("l", Shape(0.25, 0.25, tongue=0.7)),  # the tip up, behind the upper teeth
    **dict.fromkeys("szʃʒɕʑ", Shape(0.14, 0.5)),
    **dict.fromkeys("tdnɾ", Shape(0.18, 0.25, tongue=0.4)),
    **dict.fromkeys("kgŋxɡq", Shape(0.22, 0.1)),
    **dict.fromkeys("ɹrʁɻ", Shape(0.2, -0.4)),
    **dict.fromkeys("jç", Shape(0.2, 0.5)),
    "h": Shape(0.35, 0.0),
    " ": Shape(0.0, 0.0),
}
_ROUNDED = set("ʃʒ")
_NEUTRAL = Shape(0.3, 0.0)  # an unknown sound: a neutral half-open mouth
REST = Shape(0.0, 0.0)


def shape_of(symbol: str) -> Shape:
    """The mouth shape of one phoneme (IPA); diphthongs and affricates take their first sound."""
    for char in symbol:
        if char in _SHAPES:
            shape = _SHAPES[char]
            return shape._replace(width=-0.4) if char in _ROUNDED else shape
    return _NEUTRAL


def spoken_shape(symbol: str) -> Shape:
    """The shape a phoneme is keyed with: its opening plus the effort share (closures, pauses stay shut)."""
    shape = shape_of(symbol)
    if shape.jaw <= 0:
        return shape
    return shape._replace(jaw=EFFORT_OPENING + (1 - EFFORT_OPENING) * shape.jaw)


def pose_of(symbol: str, energy: float = 1.0) -> dict[str, float]:
    """The mouth pose of one phoneme spoken at `energy` (0..1 loudness), as tracks_from_phones makes it."""
    shape = spoken_shape(symbol)
    return dict(zip(TRACKS, shape._replace(jaw=shape.jaw * opening_scale(energy))))


def opening_scale(energy):
    """How much of a shape's opening a sound at `energy` (loudness 0..1, scalar or per frame) gets."""
    return QUIET_OPENING + (1 - QUIET_OPENING) * np.clip(energy, 0, 1)


def frame_count(duration: float, fps: int) -> int:
    return max(1, int(round(duration * fps)))


def loudness(samples: np.ndarray, sample_rate: int, n_frames: int, fps: int) -> np.ndarray:
    """RMS per video frame (40 ms window centred on the frame), normalised to 0..1 by a running 95th
    percentile (running_scale): a frame's loudness never changes as more speech comes."""
    rms = frame_rms(samples, sample_rate, n_frames, fps)
    scale = running_scale(rms, int(NORMALISER_SECONDS * fps))
    return np.where(scale > 1e-6, np.clip(rms / np.maximum(scale, 1e-6), 0, 1.2), 0.0)


def frame_rms(samples: np.ndarray, sample_rate: int, n_frames: int, fps: int) -> np.ndarray:
    """RMS of each frame's 40 ms window, summed a block of frames at a time: a whole talk's squares in
    float64 (~40 MB for a minute, at every sentence while it streams) would sit beside the speech engine's
    peak. Blocks start at fixed frames, so a frame's value does not depend on how much audio follows."""
    hop = sample_rate / fps
    half = int(hop / 2)
    centres = (np.arange(n_frames) + 0.5) * hop
    lo = np.clip((centres - half).astype(int), 0, len(samples))
    hi = np.clip((centres + half).astype(int), 0, len(samples))
    rms = np.zeros(n_frames)
    for first in range(0, n_frames, _RMS_BLOCK_FRAMES):
        block = slice(first, first + _RMS_BLOCK_FRAMES)
        start, end = lo[block][0], hi[block][-1]
        squared = np.concatenate([[0.0], np.cumsum(samples[start:end].astype(np.float64) ** 2)])
        sums = squared[hi[block] - start] - squared[lo[block] - start]
        rms[block] = np.sqrt(sums / np.maximum(hi[block] - lo[block], 1))
    return rms


def heard_frames(n_samples: int, sample_rate: int, fps: int) -> int:
    """How many leading frames have their whole loudness window inside `n_samples` of audio."""
    hop = sample_rate / fps
    return max(0, int((n_samples - int(hop / 2)) / hop + 0.5))


def running_scale(rms: np.ndarray, first: int) -> np.ndarray:
    """Per frame, the 95th percentile (np.percentile's) of every frame up to it; the first `first` frames
    all take that of the first `first` (one syllable alone is no measure of a voice)."""
    scale = np.empty(len(rms))
    ordered = sorted(rms[:first].tolist())
    if ordered:
        scale[: len(ordered)] = _percentile95(ordered)
    for i in range(len(ordered), len(rms)):
        bisect.insort(ordered, float(rms[i]))
        scale[i] = _percentile95(ordered)
    return scale


def _percentile95(ordered: list[float]) -> float:
    position = 0.95 * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def tracks_from_phones(speech: Speech, fps: int, energy: np.ndarray) -> dict[str, np.ndarray]:
    """`energy` is the speech's `loudness` per frame (one value per video frame)."""
    times = np.arange(len(energy)) / fps + LEAD_SECONDS
    keys_t, keys = _keyframes(speech.phones)
    tracks = {name: np.interp(times, keys_t, keys[:, i]) for i, name in enumerate(TRACKS)}
    tracks["jaw"] = tracks["jaw"] * opening_scale(energy)
    tracks = {name: _smooth(values) for name, values in tracks.items()}
    tracks["press"][_closure_frames(speech.phones, fps, len(energy))] = 1.0
    return tracks


def _closure_frames(phones: list[Phone], fps: int, n_frames: int) -> np.ndarray:
    """The frame nearest each p, b, m: the lips meet there, however short the sound (smoothing alone left
    a 40-ms m three quarters shut)."""
    centres = [(p.start + p.end) / 2 for p in phones if shape_of(p.symbol).press >= 1.0]
    frames = np.round((np.asarray(centres) - LEAD_SECONDS) * fps).astype(int)
    return frames[(frames >= 0) & (frames < n_frames)]


def _keyframes(phones: list[Phone]) -> tuple[np.ndarray, np.ndarray]:
    """One key per phoneme at its centre; closures (p, b, m) hold shut at both edges, and their neighbours
    keep their own shape until CLOSURE_SECONDS from them."""
    times, shapes = [0.0], [REST]
    spoken = [spoken_shape(phone.symbol) for phone in phones]
    closes = [shape.press >= 1.0 for shape in spoken] + [False]  # closes[-1]: none before the first phone
    for i, (phone, shape) in enumerate(zip(phones, spoken)):
        if closes[i] and phone.end - phone.start > 0.04:
            keys = [phone.start + 0.01, phone.end - 0.01]
        elif closes[i]:
            keys = [(phone.start + phone.end) / 2]
        else:
            keys = _keys_beside_closures(phone, closes[i - 1], closes[i + 1])
        times += keys
        shapes += [shape] * len(keys)
    end = phones[-1].end if phones else 0.0
    times.append(end + 0.2)
    shapes.append(REST)
    order = np.argsort(times, kind="stable")
    return np.asarray(times)[order], np.asarray(shapes, dtype=np.float64)[order]


def _keys_beside_closures(phone: Phone, after_closure: bool, before_closure: bool) -> list[float]:
    """The centre, and the times next to a closure up to which the phone keeps its own shape."""
    keys = [(phone.start + phone.end) / 2]
    if phone.end - phone.start <= 2 * CLOSURE_SECONDS:
        return keys
    if after_closure:
        keys.insert(0, phone.start + CLOSURE_SECONDS)
    if before_closure:
        keys.append(phone.end - CLOSURE_SECONDS)
    return keys


def tracks_from_audio(speech: Speech, fps: int, energy: np.ndarray) -> dict[str, np.ndarray]:
    """Audio scripts have no phonemes: the jaw follows loudness, width follows brightness (spectral
    centroid: "ee" and "s" are bright, "oo" is dark), and the lips close in pauses."""
    brightness = _brightness(speech.samples, speech.sample_rate, len(energy), fps)
    jaw = np.clip((energy - 0.08) / 0.8, 0, 1) ** 0.8
    width = np.clip((brightness - 0.5) * 2.2, -1, 1) * (jaw > 0.05)
    press = (energy < 0.04).astype(np.float64) * 0.6
    return {"jaw": _smooth(jaw), "width": _smooth(width), "press": _smooth(press), "tongue": np.zeros_like(jaw)}


def _brightness(samples: np.ndarray, sample_rate: int, n_frames: int, fps: int) -> np.ndarray:
    """Spectral centroid per frame mapped to 0..1 (500 Hz .. 3 kHz)."""
    hop = sample_rate / fps
    size = 1024
    window = np.hanning(size)
    freqs = np.fft.rfftfreq(size, 1 / sample_rate)
    out = np.zeros(n_frames)
    padded = np.concatenate([np.zeros(size // 2), samples, np.zeros(size)])
    for i in range(n_frames):
        start = int(i * hop + hop / 2)
        spectrum = np.abs(np.fft.rfft(padded[start : start + size] * window))
        total = spectrum.sum()
        if total > 1e-6:
            out[i] = (spectrum @ freqs) / total
    return np.clip((out - 500) / 2500, 0, 1)


def _smooth(values: np.ndarray, sigma_frames: float = 0.8) -> np.ndarray:
    radius = 2
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    kernel /= kernel.sum()
    return np.convolve(np.pad(values, radius, mode="edge"), kernel, mode="valid")
