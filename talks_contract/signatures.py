"""Webhook signatures, signed the way Stripe signs: `Talks-Signature: t=<unix seconds>,v1=<hex HMAC>`.

The MAC covers "<t>.<raw body>", so a receiver must verify the bytes it received, before parsing them.
Shared by the engine (which signs) and the pipeline's webhook receiver (which verifies).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

SIGNATURE_HEADER = "Talks-Signature"
DEFAULT_TOLERANCE = 300  # seconds; older (or further in the future) timestamps are refused as replays

_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")  # ASCII only: str.isdigit() would accept "²"


class SignatureError(ValueError):
    """A webhook signature that is missing, malformed, stale or does not match the body."""


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The Talks-Signature header value for `body`, stamped now unless `timestamp` is given."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={_mac(secret, t, body)}"


def verify(
    secret: str, header: str | None, body: bytes, tolerance: int = DEFAULT_TOLERANCE, now: float | None = None
) -> None:
    """Raise SignatureError unless `header` signs `body` with `secret` within `tolerance` seconds of now.

    Several v1= values are accepted (a sender rotating secrets signs with each); any one matching is enough.
    """
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp, candidates = _parse(header)
    expected = _mac(secret, timestamp, body)
    # compare_digest on every candidate: the time taken must not reveal how much of a guess matched
    if not any([hmac.compare_digest(expected, candidate) for candidate in candidates]):
        raise SignatureError("signature mismatch: the body or the secret differs from what was signed")
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance:
        raise SignatureError(f"stale signature: timestamp {age:.0f} s off, at most {tolerance} s allowed")


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _parse(header: str) -> tuple[int, list[str]]:
    """(t, [v1, ...]) from "t=...,v1=...[,v1=...]"; other schemes (v0=...) are ignored, as Stripe does."""
    timestamps: list[str] = []
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed {SIGNATURE_HEADER} header: {part.strip()!r} is not key=value")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            candidates.append(value.lower())
    if len(timestamps) != 1 or not _UNIX_SECONDS.fullmatch(timestamps[0]):
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header: expected exactly one t=<unix seconds>")
    if not candidates or not all(_HEX_SHA256.fullmatch(c) for c in candidates):
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header: expected v1=<64 hex digits>")
    return int(timestamps[0]), candidates
