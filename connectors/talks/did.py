"""D-ID's `/talks` wire format (TALKS_API.md), in two flavours picked by `backend.kind`:

- `d-id` (DidTalks), D-ID's cloud: a create sends only what D-ID's OpenAPI (4.2.1) lists for
  POST /talks: source_url, script {type, input, provider}, config, user_data, name, webhook. Where a
  script asks for more:
    dropped, with one warning per run and field: `driver_url` (D-ID's create has none, and bank://… is
    our engine's grammar: D-ID picks its driver) and the look's tuning keys of `config` D-ID lacks
    (align_driver, align_expand_factor, auto_match, normalization_factor, motion_factor, sharpen): the
    video is still the one asked for, only tuned differently;
    refused, before anything is sent: `config.result_format: gif` (D-ID makes mp4 and mov). The video
    was planned under a .gif name; silently storing an mp4 there would be a lie, so the row fails
    (ContractViolation naming the field and what is allowed). Webhook URLs must be https (D-ID's
    SecuredUrl): the run checks that when it opens (`webhook_schemes`).
  Voices pass as given (provider type, voice_id, voice_config): D-ID knows its voices; a 400 fails the
  row with D-ID's own description. D-ID does not sign callbacks: webhook mode against it needs a signing
  proxy, or it falls back to polling (connectors/talks/backend.py).
- `talkmill` (TalkmillTalks), our engine: the same format plus its extensions (driver_url, every
  config key of TALKS_API.md, gif results).

Both send `script.subtitles: true` unless the script's config says `captions: false` (D-ID's spec has the
field). Only our engine answers with files beside the video (`subtitles: {vtt_url, srt_url}`,
`poster_url`); D-ID's cloud sends none: the pipeline then stores no captions and makes the poster itself.

A create is never blindly repeated: the script id travels in `user_data`, and a POST /talks that may
have reached the server without us seeing the answer (5xx, a connection lost after sending) is looked up
by it first. Listings stop at the last page, at a page token seen before, or after a page budget.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import time
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import aclosing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import httpx

from connectors.talks.base import (
    FINAL_STATUSES,
    TalkFailure,
    TalkRef,
    TalkResult,
    WebhookRejected,
    read_image,
)
from connectors.talks.http import ApiClient, Retry, json_object
from connectors.talks.polling import poll_until_ended
from talkmill.content.images import IMAGE_ADVICE, image_problem
from talkmill.errors import TalksBadAnswer, TalksConnectionError, TalksError
from talkmill.models import Script
from talks_contract.errors import ContractViolation
from talks_contract.formats import DEFAULT_RESULT_FORMAT, RESULT_FORMATS
from talks_contract.signatures import SIGNATURE_HEADER, SignatureError, verify

log = logging.getLogger("talkmill.talks")
PAGE_SIZE = 100
LOOKUP_CLOCK_SKEW = 600.0  # seconds: talks created this long before the backend was opened still count
DID_CONFIG_KEYS = frozenset({"logo", "stitch", "result_format", "fluent", "pad_audio", "driver_expressions"})
CAPTIONS_KEY = "captions"  # the pipeline's switch in a script's config: sent as `script.subtitles`


def wants_captions(config: Mapping[str, Any]) -> bool:
    """Captions are asked for unless the script's config says `captions: false`."""
    return config.get(CAPTIONS_KEY) is not False


class DidTalks:
    """D-ID's cloud. Options past the URL and key go to ApiClient (retries, timeouts, a test transport)."""

    kind: ClassVar[str] = "d-id"
    default_url: ClassVar[str | None] = "https://api.d-id.com"
    local_engine: ClassVar[bool] = False
    webhook_schemes: ClassVar[tuple[str, ...]] = ("https",)
    result_formats: ClassVar[tuple[str, ...]] = ("mp4", "mov")  # D-ID's ResultFormat

    def __init__(
        self,
        url: str,
        key: str | None = None,
        *,
        webhook_secret: str | None = None,
        lookup_pages: int = 10,
        index_pages: int = 20,
        **http_options: Any,
    ) -> None:
        self.http = ApiClient(url, key, **http_options)
        self._webhook_secret = webhook_secret
        self.lookup_pages, self.index_pages = lookup_pages, index_pages
        self._opened_at = time.time()  # the lookup of uncertain creates stops at talks older than this
        self._dropped: set[str] = set()  # fields already warned about

    async def __aenter__(self) -> DidTalks:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- the request body: the flavour point -------------------------------------------------------------

    def request_body(self, script: Script, source_url: str, webhook: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "source_url": source_url,
            "script": {"type": "text", "input": script.text, "subtitles": wants_captions(script.config),
                       "provider": script.voice.provider.model_dump(exclude_none=True)},
            "config": self._config(script.config),
            "user_data": script.id,  # lets a create whose answer was lost be found again
            "name": script.output_name or f"{script.source.id}-{script.id}",
            **self._extensions(script),
        }
        if webhook:
            body["webhook"] = webhook
        return body

    def _config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        self._check_result_format(config)
        self._drop([f"config.{key}" for key in config if key not in DID_CONFIG_KEYS | {CAPTIONS_KEY}])
        return {key: value for key, value in config.items() if key in DID_CONFIG_KEYS}

    def _extensions(self, script: Script) -> dict[str, Any]:
        self._drop(["driver_url"] if script.driver_url else [])
        return {}

    def _check_result_format(self, config: Mapping[str, Any]) -> None:
        wanted = config.get("result_format") or DEFAULT_RESULT_FORMAT
        if wanted not in self.result_formats:
            problem = f"the {self.kind} backend does not make {wanted!r}"
            raise ContractViolation("config.result_format", problem, list(self.result_formats))

    def _drop(self, fields: list[str]) -> None:
        for name in fields:
            if name not in self._dropped:
                self._dropped.add(name)
                log.warning("%s is not part of the %s API: left out of its requests", name, self.kind)

    # -- talks -------------------------------------------------------------------------------------------

    async def create(self, script: Script, source_url: str, webhook: str | None) -> TalkRef:
        """POST /talks; an uncertain attempt is resolved by looking the talk up before posting again."""
        body = self.request_body(script, source_url, webhook)
        since = self._opened_at - LOOKUP_CLOCK_SKEW
        for attempt in range(self.http.max_retries + 1):
            outcome = await self.http.attempt("POST", "talks", json=body)
            if isinstance(outcome, httpx.Response):
                return talk_ref(json_object(outcome), "POST /talks")
            if outcome.uncertain or attempt < self.http.max_retries:
                await self.http.pause(outcome, attempt)  # before a lookup: the server may still be committing
            if outcome.uncertain and (found := await self._lookup_after(outcome, script.id, since)):
                return found
        raise outcome.error from outcome.cause

    async def find_existing(self, script_ids: Collection[str]) -> dict[str, TalkRef]:
        wanted, found = set(script_ids), {}
        async with aclosing(self._pages(self.index_pages)) as pages:
            async for talks in pages:
                for talk in talks:
                    script_id = talk.get("user_data")
                    if isinstance(script_id, str) and script_id in wanted and script_id not in found:
                        if (ref := _ref_or_none(talk)) is not None:
                            found[script_id] = ref
                if len(found) == len(wanted):
                    break
        return found

    async def find_by_script(
        self, script_id: str, *, created_after: float | None = None, max_pages: int | None = None
    ) -> TalkRef | None:
        """The newest talk whose user_data is `script_id`, newest first within `max_pages` pages. With
        `created_after` (unix seconds) older talks neither match nor are paged past: an earlier run's
        talk for the same script is not this create's."""
        async with aclosing(self._pages(max_pages or self.lookup_pages)) as pages:
            async for talks in pages:
                for talk in talks:
                    if talk.get("user_data") == script_id and not _older(talk, created_after):
                        return _ref_or_none(talk)
                if created_after is not None and talks and all(_older(t, created_after) for t in talks):
                    return None
        return None

    async def check(self, talk_id: str) -> TalkRef | TalkResult:
        """GET /talks/{id}: a TalkResult once it has ended, else its TalkRef."""
        talk = await self.http.call_json("GET", f"talks/{talk_id}")
        ref = talk_ref(talk, f"GET /talks/{talk_id}")
        return talk_result(talk) if ref.status in FINAL_STATUSES else ref

    async def delete(self, talk_id: str) -> TalkRef:
        """DELETE /talks/{id}; 409 NotReadyError (a TalksHTTPError) while it is still processing."""
        return talk_ref(await self.http.call_json("DELETE", f"talks/{talk_id}"), f"DELETE /talks/{talk_id}")

    async def wait(
        self, talk_id: str, *, poll_interval: float = 1.0, max_interval: float = 15.0, timeout: float = 900.0,
        wake: asyncio.Event | None = None,
    ) -> TalkResult:
        return await poll_until_ended(
            lambda: self.check(talk_id), talk_id, poll_interval=poll_interval, max_interval=max_interval,
            timeout=timeout, sleep=self.http.sleep, clock=self.http.clock, wake=wake,
        )  # fmt: skip

    def stream_result(self, result: TalkResult) -> AsyncIterator[bytes]:
        if not result.result_url:
            raise TalksBadAnswer(f"talk {result.id} has no result_url to fetch (status {result.status})")
        return self.http.stream(result.result_url)

    # -- uploads and callbacks ---------------------------------------------------------------------------

    async def upload_image(self, path: Path) -> str:
        """POST /images, of a file that reads as an image within the size limit (nothing else leaves the
        machine). A repeated upload only orphans a file, so uncertain attempts are simply retried."""
        data = await asyncio.to_thread(read_image, path)
        if problem := image_problem(data):
            raise ContractViolation("source_url", f"{path}: {problem}", IMAGE_ADVICE)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        answer = await self.http.call_json("POST", "images", files={"image": (path.name, data, content_type)})
        url = answer.get("url")
        if not isinstance(url, str) or not url:
            raise TalksBadAnswer(f"POST /images answered without a url for {path.name}: {answer!r:.200}")
        return url

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> TalkRef:
        """Talks-Signature (talks_contract.signatures) over the raw body, then the talk in it."""
        if not self._webhook_secret:
            raise WebhookRejected(401, "no webhook secret is set: unsigned callbacks are refused")
        try:
            verify(self._webhook_secret, headers.get(SIGNATURE_HEADER), body)
        except SignatureError as e:
            raise WebhookRejected(401, str(e)) from e
        try:
            return talk_ref(json.loads(body), "the callback")
        except (ValueError, TalksBadAnswer) as e:  # json's errors are ValueErrors
            raise WebhookRejected(400, f"the body is not a talk: {e}") from e

    # -- helpers -----------------------------------------------------------------------------------------

    async def _pages(self, max_pages: int) -> AsyncIterator[list[Mapping[str, Any]]]:
        """GET /talks pages, newest first; ends at the last page, at a repeated token, or after max_pages."""
        token: str | None = None
        seen: set[str] = set()
        for _ in range(max_pages):
            params = {"limit": PAGE_SIZE, **({"token": token} if token else {})}
            page = await self.http.call_json("GET", "talks", params=params)
            talks = page.get("talks", [])
            if not isinstance(talks, list):
                raise TalksBadAnswer(f"GET /talks answered `talks` = {talks!r:.100}, not a list")
            yield [talk for talk in talks if isinstance(talk, Mapping)]
            token = str(page["token"]) if page.get("token") else None
            if token is None:
                return
            if token in seen:
                log.warning("GET /talks gave page token %r again: the listing stops here", token)
                return
            seen.add(token)

    async def _lookup_after(self, outcome: Retry, script_id: str, since: float) -> TalkRef | None:
        try:
            return await self.find_by_script(script_id, created_after=since)
        except TalksError as e:
            # we cannot tell whether the create happened: refuse to guess (a duplicate costs a render)
            raise TalksConnectionError(
                f"create of {script_id} is uncertain ({outcome.error}) and the lookup failed: {e}",
                uncertain=True,
            ) from e


class TalkmillTalks(DidTalks):
    """Our engine (local or remote): D-ID's format with its extensions."""

    kind: ClassVar[str] = "talkmill"
    default_url: ClassVar[str | None] = None
    local_engine: ClassVar[bool] = True
    webhook_schemes: ClassVar[tuple[str, ...]] = ("http", "https")
    result_formats: ClassVar[tuple[str, ...]] = RESULT_FORMATS

    def _config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        self._check_result_format(config)
        return {key: value for key, value in config.items() if key != CAPTIONS_KEY}

    def _extensions(self, script: Script) -> dict[str, Any]:
        return {"driver_url": script.driver_url} if script.driver_url else {}


# -- reading talks ---------------------------------------------------------------------------------------


def talk_ref(talk: Any, where: str = "the API") -> TalkRef:
    """A talk's id, status and creation time; TalksBadAnswer if it has no string id and status."""
    if not (isinstance(talk, Mapping) and all(isinstance(talk.get(name), str) for name in ("id", "status"))):
        raise TalksBadAnswer(f"{where} answered {talk!r:.200}: not a talk (no string id and status)")
    return TalkRef(talk["id"], talk["status"], _stamp(talk.get("created_at")))


def talk_result(talk: Mapping[str, Any]) -> TalkResult:
    """An ended talk; TalksBadAnswer for a done talk without a result_url (nothing to fetch)."""
    ref = talk_ref(talk)
    if ref.status not in FINAL_STATUSES:
        raise TalksBadAnswer(f"talk {ref.id} has not ended (status {ref.status})")
    result_url = talk.get("result_url")
    if ref.status == "done" and not (isinstance(result_url, str) and result_url):
        raise TalksBadAnswer(f"talk {ref.id} is done but the API gave no result_url to fetch it from")
    subtitles = talk.get("subtitles") if isinstance(talk.get("subtitles"), Mapping) else {}
    return TalkResult(
        ref.id, ref.status, result_url if isinstance(result_url, str) else None,  # type: ignore[arg-type]
        _seconds(talk.get("duration")), _failure(talk.get("error")), raw=dict(talk),
        vtt_url=_url(subtitles.get("vtt_url")), srt_url=_url(subtitles.get("srt_url")),
        poster_url=_url(talk.get("poster_url")),
    )


def _url(value: Any) -> str | None:
    """Our engine's extensions (`subtitles`, `poster_url`): D-ID's cloud sends none, so absent is normal."""
    return value if isinstance(value, str) and value else None


def _ref_or_none(talk: Mapping[str, Any]) -> TalkRef | None:
    """A listed talk, or None for a malformed entry (one bad entry must not sink the listing)."""
    try:
        return talk_ref(talk)
    except TalksBadAnswer as e:
        log.warning("skipping a listed talk: %s", e)
        return None


def _failure(error: Any) -> TalkFailure | None:
    if not isinstance(error, Mapping):
        return None
    return TalkFailure(str(error.get("kind") or "UnknownError"), str(error.get("description") or ""))


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _stamp(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _older(talk: Mapping[str, Any], created_after: float | None) -> bool:
    """True only when the talk is known to predate `created_after` (an unreadable stamp is not)."""
    stamp = _stamp(talk.get("created_at"))
    return created_after is not None and stamp is not None and stamp.timestamp() < created_after
