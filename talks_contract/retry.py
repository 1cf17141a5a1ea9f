"""Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP date. One reading for every client of ours."""

from __future__ import annotations

import email.utils
import math
import time


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait (never negative), or None when the header is absent or unreadable. Fractional
    seconds ("1.5") are read as such: the RFC says integers, but servers send both."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - (time.time() if now is None else now))
