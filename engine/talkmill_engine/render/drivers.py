"""The driver bank: named head-motion styles, addressed as D-ID addresses its drivers.

`bank://natural|lively|subtle[/driver-NN][/flipped]`. We have no filmed driver videos; each bank driver
is a deterministic motion profile (amplitude, tempo, a seed for its phases) that `motion.py` turns into
head movement, so the same driver always moves the same way, and `flipped` mirrors it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from talkmill_engine.errors import ValidationError

BANKS = {
    "natural": [f"driver-{n}" for n in range(1, 9)],
    "lively": [f"driver-{n:02d}" for n in range(1, 7)],
    "subtle": [f"driver-{n:02d}" for n in range(1, 5)],
}
# How much each bank moves: (head amplitude scale, tempo scale, brow activity).
BANK_STYLE = {"natural": (1.0, 1.0, 1.0), "lively": (1.45, 1.3, 1.5), "subtle": (0.55, 0.8, 0.6)}

_URL = re.compile(r"^bank://(?P<bank>[a-z]+)/?(?P<name>driver-\d+)?/?(?P<flipped>flipped)?/?$")


@dataclass(frozen=True)
class Driver:
    bank: str
    name: str
    flipped: bool = False

    @property
    def url(self) -> str:
        return f"bank://{self.bank}/{self.name}" + ("/flipped" if self.flipped else "")

    @property
    def seed(self) -> int:
        return int.from_bytes(hashlib.sha256(f"{self.bank}/{self.name}".encode()).digest()[:4], "big")

    @property
    def style(self) -> tuple[float, float, float]:
        return BANK_STYLE[self.bank]


def allowed_drivers() -> list[str]:
    return [f"bank://{bank}/{name}" for bank, names in BANKS.items() for name in names]


def parse_driver_url(url: str, field: str = "driver_url") -> tuple[str, str | None, bool]:
    """(bank, name or None, flipped) of a driver URL; raises ValidationError naming what is allowed."""
    match = _URL.match(url.strip())
    if not match or match["bank"] not in BANKS:
        raise ValidationError(
            f"Unknown driver {url!r}.",
            {"field": field, "allowed": "bank://natural|lively|subtle[/driver-NN][/flipped]"},
        )
    bank, name = match["bank"], match["name"]
    if name is not None and name not in BANKS[bank]:
        raise ValidationError(
            f"Unknown driver {url!r}: bank {bank!r} has {', '.join(BANKS[bank])}.",
            {"field": field, "allowed": [f"bank://{bank}/{n}" for n in BANKS[bank]]},
        )
    return bank, name, bool(match["flipped"])


def choose_driver(url: str | None, key: bytes) -> Driver:
    """The concrete driver for a talk: the one named, or one picked deterministically from `key`
    (the portrait's bytes) when the URL is absent or names only a bank (auto-match)."""
    bank, name, flipped = parse_driver_url(url) if url else ("natural", None, False)
    if name is None:
        digest = hashlib.sha256(key).digest()
        name = BANKS[bank][digest[0] % len(BANKS[bank])]
    return Driver(bank, name, flipped)
