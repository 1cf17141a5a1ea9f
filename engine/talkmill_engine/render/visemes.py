"""Mouth shapes over time, from phoneme timings (text scripts) or from the sound itself (audio scripts).

Pure numpy. Each frame gets `jaw` (0 closed .. 1 wide), `width` (-1 rounded .. 1 spread) and `press`
(1 = lips together for p, b, m). Shapes are keyed at phoneme centres, the mouth leading the sound by
~30 ms, interpolated and lightly smoothed, and scaled by the loudness of the moment: the same vowel is
opened wider when it is spoken louder.
"""

from __future__ import annotations

import numpy as np

from talkmill_engine.speech.timing import Phone, Speech

LEAD_SECONDS = 0.03
# (jaw, width, press) per IPA symbol; unknown symbols fall back by class.
_SHAPES: dict[str, tuple[float, float, float]] = {
    **dict.fromkeys("aɑɒæ", (1.0, 0.15, 0.0)),
    **dict.fromkeys("ʌɐ", (0.8, 0.1, 0.0)),
    **dict.fromkeys("eɛ", (0.65, 0.45, 0.0)),
    **dict.fromkeys("iɪy", (0.3, 0.75, 0.0)),
    **dict.fromkeys("əɚɜɝ", (0.45, 0.05, 0.0)),
    **dict.fromkeys("oɔ", (0.6, -0.7, 0.0)),
    **dict.fromkeys("uʊwɯ", (0.25, -1.0, 0.0)),
    **dict.fromkeys("pbm", (0.0, 0.0, 1.0)),
    **dict.fromkeys("fv", (0.1, 0.2, 0.5)),
    **dict.fromkeys("θð", (0.2, 0.2, 0.0)),
    **dict.fromkeys("szʃʒɕʑ", (0.14, 0.5, 0.0)),
    **dict.fromkeys("tdnlɾ", (0.25, 0.25, 0.0)),
    **dict.fromkeys("kgŋxɡq", (0.3, 0.1, 0.0)),
    **dict.fromkeys("ɹrʁɻ", (0.2, -0.4, 0.0)),
    **dict.fromkeys("jç", (0.2, 0.5, 0.0)),
    "h": (0.35, 0.0, 0.0),
    " ": (0.0, 0.0, 0.0),
}
_ROUNDED = set("ʃʒ")


def shape_of(symbol: str) -> tuple[float, float, float]:
    """The mouth shape of one phoneme (IPA); diphthongs and affricates take their first sound."""
    for char in symbol:
        if char in _SHAPES:
            jaw, width, press = _SHAPES[char]
            return jaw, (-0.4 if char in _ROUNDED else width), press
    return 0.3, 0.0, 0.0  # an unknown sound: a neutral half-open mouth


def frame_count(duration: float, fps: int) -> int:
    return max(1, int(round(duration * fps)))


def loudness(samples: np.ndarray, sample_rate: int, n_frames: int, fps: int) -> np.ndarray:
    """RMS per video frame (40 ms window centred on the frame), normalised to 0..1 by its 95th percentile."""
    hop = sample_rate / fps
    centres = (np.arange(n_frames) + 0.5) * hop
    half = int(hop / 2)
    squared = np.concatenate([[0.0], np.cumsum(samples.astype(np.float64) ** 2)])
    lo = np.clip((centres - half).astype(int), 0, len(samples))
    hi = np.clip((centres + half).astype(int), 0, len(samples))
    rms = np.sqrt((squared[hi] - squared[lo]) / np.maximum(hi - lo, 1))
    scale = np.percentile(rms, 95) if rms.size else 0.0
    return np.clip(rms / scale, 0, 1.2) if scale > 1e-6 else np.zeros(n_frames)


def tracks_from_phones(speech: Speech, fps: int, energy: np.ndarray) -> dict[str, np.ndarray]:
    """`energy` is the speech's `loudness` per frame (one value per video frame)."""
    times = np.arange(len(energy)) / fps + LEAD_SECONDS
    keys_t, keys = _keyframes(speech.phones)
    tracks = {name: np.interp(times, keys_t, keys[:, i]) for i, name in enumerate(("jaw", "width", "press"))}
    tracks["jaw"] = tracks["jaw"] * (0.5 + 0.5 * np.clip(energy, 0, 1))
    return {name: _smooth(values) for name, values in tracks.items()}


def _keyframes(phones: list[Phone]) -> tuple[np.ndarray, np.ndarray]:
    """One key per phoneme at its centre; closures (p, b, m) also hold shut at both edges."""
    times, shapes = [0.0], [(0.0, 0.0, 0.0)]
    for phone in phones:
        shape = shape_of(phone.symbol)
        if shape[2] >= 1.0 and phone.end - phone.start > 0.04:
            times += [phone.start + 0.01, phone.end - 0.01]
            shapes += [shape, shape]
        else:
            times.append((phone.start + phone.end) / 2)
            shapes.append(shape)
    end = phones[-1].end if phones else 0.0
    times.append(end + 0.2)
    shapes.append((0.0, 0.0, 0.0))
    order = np.argsort(times, kind="stable")
    return np.asarray(times)[order], np.asarray(shapes, dtype=np.float64)[order]


def tracks_from_audio(speech: Speech, fps: int, energy: np.ndarray) -> dict[str, np.ndarray]:
    """Audio scripts have no phonemes: the jaw follows loudness, width follows brightness (spectral
    centroid: "ee" and "s" are bright, "oo" is dark), and the lips close in pauses."""
    brightness = _brightness(speech.samples, speech.sample_rate, len(energy), fps)
    jaw = np.clip((energy - 0.08) / 0.8, 0, 1) ** 0.8
    width = np.clip((brightness - 0.5) * 2.2, -1, 1) * (jaw > 0.05)
    press = (energy < 0.04).astype(np.float64) * 0.6
    return {"jaw": _smooth(jaw), "width": _smooth(width), "press": _smooth(press)}


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
