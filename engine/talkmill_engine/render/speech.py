"""What the renderer needs from a script: the audio, and (for text) when each phoneme is spoken."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Phone:
    """One phoneme, in IPA, spoken from `start` to `end` seconds. A pause has the symbol " "."""

    symbol: str
    start: float
    end: float


@dataclass
class Speech:
    samples: np.ndarray  # float32, mono, in [-1, 1]
    sample_rate: int
    phones: list[Phone] = field(default_factory=list)  # empty when the script is audio
    voice_id: str | None = None  # the voice actually used (text scripts)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    def padded(self, seconds: float) -> "Speech":
        """The same speech followed by `seconds` of silence (config.pad_audio)."""
        extra = np.zeros(int(round(seconds * self.sample_rate)), dtype=np.float32)
        return Speech(np.concatenate([self.samples, extra]), self.sample_rate, self.phones, self.voice_id)
