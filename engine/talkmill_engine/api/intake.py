"""Checks a new talk needs before it is accepted (driver, voice, URLs), and the document it starts as.

Everything that can be refused without rendering is refused here, at POST time, with a 400 naming the
field (the contract's refusals, ContractViolation, are answered as such by the API's handler); what can
only be found while rendering (an unreadable image, no face) ends the talk with an error.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from talkmill_engine.api.ownership import UploadOwners
from talkmill_engine.api.schemas import AudioScript, TalkCreate, TextScript
from talkmill_engine.errors import ValidationError
from talkmill_engine.fetch import check_url
from talkmill_engine.jobs.store import utc_now_iso
from talkmill_engine.speech.catalogue import resolve_voice
from talks_contract.drivers import parse_driver_url
from talks_contract.formats import PLACEHOLDER_LOGO_URL


TALK_ID = re.compile(r"^tlk_[A-Za-z0-9_-]{8,64}$")  # what new_id("tlk") makes, with room


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(16)}"


def check_inputs(body: TalkCreate, policy: Any, caller: str, uploads: UploadOwners) -> None:
    """Raises ValidationError (or ContractViolation) for the first unusable driver, voice or URL; an
    upload of another tenant is refused as if it did not exist."""
    if body.driver_url is not None:
        parse_driver_url(body.driver_url)
    if isinstance(body.script, TextScript):
        resolve_provider(body.script)
    urls: list[tuple[str, str | None]] = [("source_url", body.source_url), ("webhook", body.webhook)]
    if isinstance(body.script, AudioScript):
        urls.append(("script.audio_url", body.script.audio_url))
    logo = body.config.logo
    if logo is not None and logo.url != PLACEHOLDER_LOGO_URL:
        urls.append(("config.logo.url", logo.url))
    for field, url in urls:
        if url is not None:
            if field != "webhook":
                uploads.check(url, field, caller)
            check_one_url(url, field, policy)
    if body.result_url is not None and not body.result_url.startswith("s3://"):
        raise ValidationError(
            "result_url must be an s3:// URL (results are always served by the engine as well).",
            {"field": "result_url", "allowed": "s3://bucket/key or s3://bucket/prefix/"},
        )
    if body.result_url is not None and uploads.results.holds(body.result_url):
        # there, a copy could overwrite or plant another tenant's results and uploads
        raise ValidationError(
            "result_url names a place inside the engine's own results.",
            {"field": "result_url", "allowed": "an s3:// place outside the engine's results"},
        )


def resolve_provider(script: TextScript) -> Any:
    """The local voice serving a script's provider (refuses a provider no local voice serves)."""
    provider = script.provider.model_dump(exclude_none=True) if script.provider else None
    return resolve_voice(provider)


def check_one_url(url: str, field: str, policy: Any) -> None:
    if field == "webhook" and not url.startswith(("http://", "https://")):
        details = {"field": field, "allowed": "http(s) URLs"}
        raise ValidationError(f"webhook: {url!r} is not an http(s) URL.", details)
    check_url(url, field, policy)


def new_talk(body: TalkCreate, created_by: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the public talk document, our job notes) of a talk just accepted."""
    now = utc_now_iso()
    doc: dict[str, Any] = {
        "id": new_id("tlk"),
        "object": "talk",
        "status": "created",
        "created_at": now,
        "created_by": created_by,
        "user_id": created_by,
        "modified_at": now,
        "source_url": body.source_url,
        "script": body.script.model_dump(mode="json", exclude_none=True),
        "config": body.config.applied(),
    }
    optional = {"driver_url": body.driver_url, "webhook": body.webhook, "user_data": body.user_data}
    optional |= {"name": body.name}
    doc.update({key: value for key, value in optional.items() if value is not None})
    if body.persist:
        doc["persist"] = True
    job = {"result_destination": body.result_url} if body.result_url else {}
    return doc, job
