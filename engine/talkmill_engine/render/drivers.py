"""The driver bank: named head-motion styles, addressed as D-ID addresses its drivers.

The URL grammar and the bank's driver names are the contract's (talks_contract.drivers). We have no filmed
driver videos; each bank driver is a deterministic motion profile (amplitude, tempo, a seed for its phases)
that `motion.py` turns into head movement, so the same driver always moves the same way, and `flipped`
mirrors it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from talks_contract.drivers import BANKS, parse_driver_url

# How much each bank moves: (head amplitude scale, tempo scale, brow activity).
BANK_STYLE = {"natural": (1.0, 1.0, 1.0), "lively": (1.45, 1.3, 1.5), "subtle": (0.55, 0.8, 0.6)}
DEFAULT_BANK = "natural"  # when the talk names no driver (auto-match)


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


def choose_driver(url: str | None, key: bytes) -> Driver:
    """The concrete driver for a talk: the one named, or one picked deterministically from `key`
    (the portrait's bytes) when the URL is absent or names only a bank (auto-match). Raises the contract's
    ContractViolation for a URL outside its grammar."""
    bank, name, flipped = parse_driver_url(url) if url else (DEFAULT_BANK, None, False)
    if name is None:
        digest = hashlib.sha256(key).digest()
        name = BANKS[bank][digest[0] % len(BANKS[bank])]
    return Driver(bank, name, flipped)
