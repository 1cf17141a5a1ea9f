"""Whose an upload is. POST /images and /audios name the file `<id>.<owner tag>.<ext>`, so any replica
can tell an upload's owner from its URL alone (upload://… or, with results in S3, s3://…/uploads/…).
A talk may name only its creator's uploads: another's is refused exactly as one that does not exist.

Uploads made before owners existed (`<id>.<ext>`) belong to the first configured key's tenant.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from talkmill_engine.errors import ValidationError
from talkmill_engine.results import Results

TAG_LENGTH = 16
# What the fetcher calls an upload it cannot find (fetch.py): a foreign one is answered the same.
_ALLOWED = "upload://images/<name> or upload://audios/<name> as returned by POST /images or /audios"


def owner_tag(owner: str) -> str:
    """A stable tag of an owner (an identity, never a key); it says nothing that is not in created_by."""
    return hashlib.sha256(f"talkmill upload owner\n{owner}".encode()).hexdigest()[:TAG_LENGTH]


def upload_filename(upload_id: str, owner: str, extension: str) -> str:
    return f"{upload_id}.{owner_tag(owner)}.{extension}"


def tag_of(filename: str) -> str | None:
    """The owner tag in an upload's file name; None for the untagged names of older engines."""
    parts = filename.split(".")
    return parts[1] if len(parts) == 3 and len(parts[1]) == TAG_LENGTH else None


@dataclass(frozen=True)
class UploadOwners:
    results: Results  # knows which URLs are this engine's uploads
    legacy_owner: str  # who owns untagged uploads: the first configured key's identity

    def check(self, url: str, field: str, caller: str) -> None:
        """Raises the not-found refusal when `url` names an upload that is not `caller`'s."""
        upload = self.results.upload_of(url)
        if upload is None:
            return
        kind, name = upload
        if (tag_of(name) or owner_tag(self.legacy_owner)) != owner_tag(caller):
            raise not_found(field, kind, name)


def not_found(field: str, kind: str, name: str) -> ValidationError:
    what = f"no uploaded file {kind}/{name} (expired or never uploaded)"
    return ValidationError(f"{field}: {what}. Allowed: {_ALLOWED}.", {"field": field, "allowed": _ALLOWED})
