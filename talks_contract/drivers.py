"""The driver-URL grammar: `bank://natural|lively|subtle[/driver-NN][/flipped]` (a trailing "/" allowed).

The bank's drivers are listed here so that a pipeline can refuse a typo before any talk is created; what
each driver moves like is the engine's business."""

from __future__ import annotations

import re
from typing import NamedTuple

from talks_contract.errors import ContractViolation

BANKS = {
    "natural": tuple(f"driver-{n}" for n in range(1, 9)),
    "lively": tuple(f"driver-{n:02d}" for n in range(1, 7)),
    "subtle": tuple(f"driver-{n:02d}" for n in range(1, 5)),
}
GRAMMAR = "bank://natural|lively|subtle[/driver-NN][/flipped]"
_URL = re.compile(r"^bank://(?P<bank>[a-z]+)/?(?P<name>driver-\d+)?/?(?P<flipped>flipped)?/?$")


class DriverRef(NamedTuple):
    bank: str
    name: str | None  # None: the engine picks one of the bank's drivers for the portrait
    flipped: bool


def parse_driver_url(url: str, field: str = "driver_url") -> DriverRef:
    """The bank, driver and mirroring a driver URL names; ContractViolation naming what is allowed."""
    match = _URL.match(url.strip())
    if not match or match["bank"] not in BANKS:
        raise ContractViolation(field, f"unknown driver {url!r}", GRAMMAR)
    bank, name = match["bank"], match["name"]
    if name is not None and name not in BANKS[bank]:
        raise ContractViolation(field, f"unknown driver {url!r}: bank {bank!r} has {', '.join(BANKS[bank])}",
                                [f"bank://{bank}/{n}" for n in BANKS[bank]])
    return DriverRef(bank, name, bool(match["flipped"]))


def all_drivers() -> list[str]:
    return [f"bank://{bank}/{name}" for bank, names in BANKS.items() for name in names]
