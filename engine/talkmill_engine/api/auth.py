"""API keys: `Authorization: Basic <key>` (raw, or base64 as D-ID clients send it) or `Bearer <key>`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from fastapi import Request

from talkmill_engine.errors import AuthorizationError


def candidates(header: str) -> list[str]:
    """The strings a header may carry as the key; empty when the scheme is not Basic or Bearer."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if not value:
        return []
    if scheme.lower() == "bearer":
        return [value]
    if scheme.lower() != "basic":
        return []
    found = [value]
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return found
    # "key:" is how clients that take (username, password) send a bare token.
    found += [decoded, decoded[:-1]] if decoded.endswith(":") else [decoded]
    return found


HASHED = "key|"  # the identity of a key without a user part: HASHED + 16 hex digits of its SHA-256


def identity(key: str) -> str:
    """The tenant a key speaks for, and owns talks and uploads as: the user part of a "user:pass" key
    (keys of one user share their talks), else a digest of the key (never the key). Never has a colon.
    A user part shaped like a digest ("key|…") counts as none: it could pose as another key's tenant."""
    user, sep, _ = key.partition(":")
    if sep and user and not user.startswith(HASHED):
        return user
    return HASHED + hashlib.sha256(key.encode()).hexdigest()[:16]


def authenticate(header: str | None, keys: list[str]) -> str:
    """The caller's identity; AuthorizationError for a missing, malformed or unknown key."""
    if not header:
        raise AuthorizationError("Missing Authorization header (Basic or Bearer API key).")
    for candidate in candidates(header):
        for key in keys:
            if hmac.compare_digest(candidate.encode(), key.encode()):
                return identity(key)
    raise AuthorizationError("Invalid API key.")


def require_key(request: Request) -> str:
    """FastAPI dependency: the caller's identity."""
    return authenticate(request.headers.get("authorization"), request.app.state.keys)
