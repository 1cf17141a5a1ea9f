"""The Talks backend seam: what the pipeline asks of any service that turns a script into a talking video.

Tasks see only this module's types (TalkRef, TalkResult) and the TalksBackend protocol; each backend
(connectors/talks/did.py for D-ID's wire format, spoken by our engine too) turns them into its own
requests and reads its own answers. A new backend is one module with a class implementing TalksBackend
and one entry in connectors.talks.BACKENDS.

Errors are the pipeline's tree (talkmill.errors): TalksHTTPError for refusals, TalksBadAnswer for answers
outside the backend's contract, TalksConnectionError, TalksTimeout; a request the backend cannot express
(e.g. a result format it does not make, an image over the size limit) is a
talks_contract.errors.ContractViolation, raised before anything is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, get_args

from talkmill.models import Script
from talks_contract.errors import ContractViolation
from talks_contract.limits import MAX_IMAGE_BYTES

FinalStatus = Literal["done", "error", "rejected"]
FINAL_STATUSES: frozenset[str] = frozenset(get_args(FinalStatus))


@dataclass(frozen=True)
class TalkRef:
    """A talk the backend holds, in any state: created, started, done, error, rejected."""

    id: str
    status: str
    created_at: datetime | None = None  # None when the backend gave no readable stamp


@dataclass(frozen=True)
class TalkFailure:
    kind: str  # e.g. "FaceError"
    description: str


@dataclass(frozen=True)
class TalkResult:
    """A talk that has ended. A `done` result always has a `result_url` (a backend raises TalksBadAnswer
    rather than return one without), so the caller can fetch it without checking."""

    id: str
    status: FinalStatus
    result_url: str | None = None
    duration: float | None = None  # seconds of video
    error: TalkFailure | None = None  # why an error/rejected talk failed, when the backend said
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)  # for the sidecar only
    # files beside the video, when the backend makes them (our engine does; D-ID's cloud sends none)
    vtt_url: str | None = None  # WebVTT captions
    srt_url: str | None = None  # the same as SubRip
    poster_url: str | None = None  # a JPEG frame

    def to_record(self) -> dict[str, Any]:
        """The typed fields as JSON (the sidecar's "result"); `raw` is stored beside it, not in it."""
        error = self.error and {"kind": self.error.kind, "description": self.error.description}
        record = {"id": self.id, "status": self.status, "result_url": self.result_url,
                  "duration": self.duration, "error": error}  # fmt: skip
        return record | {f"{name}_url": url for name, url in self.beside().items()}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TalkResult:
        error = record.get("error")
        return cls(str(record["id"]), record["status"], record.get("result_url"), record.get("duration"),
                   TalkFailure(error["kind"], error["description"]) if error else None,
                   vtt_url=record.get("vtt_url"), srt_url=record.get("srt_url"),
                   poster_url=record.get("poster_url"))  # fmt: skip

    def beside(self) -> dict[str, str]:
        """The files beside the video the backend made: {"vtt" | "srt" | "poster": url}."""
        urls = {"vtt": self.vtt_url, "srt": self.srt_url, "poster": self.poster_url}
        return {name: url for name, url in urls.items() if url}


class WebhookRejected(ValueError):
    """A callback the backend does not vouch for; `status` is the answer: 401 unsigned, 400 not a talk."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class TalksBackend(Protocol):
    """One Talks service. Instances are made as `cls(url, key, webhook_secret=..., timeout=...)` and used
    in one event loop (HTTP pools are bound to the loop that opened them); `aclose()` when done."""

    kind: ClassVar[str]  # the `backend.kind` that picks it
    default_url: ClassVar[str | None]  # where it is when `backend.url` is unset (None: it must be given)
    local_engine: ClassVar[bool]  # with `backend.url` unset, the run starts our engine on 127.0.0.1
    webhook_schemes: ClassVar[tuple[str, ...]]  # the URL schemes it will call back on

    async def find_existing(self, script_ids: Collection[str]) -> dict[str, TalkRef]:
        """The newest talk for each script id that has one (a re-run picks them up): one listing for the
        whole batch, bounded in pages. The first call of a run: a refused key shows here."""
        ...

    async def create(self, script: Script, source_url: str, webhook: str | None) -> TalkRef:
        """Create the script's talk, its presenter at `source_url`, calling `webhook` when it ends. Never
        two talks for one call: a create whose answer was lost is looked up before it is sent again."""
        ...

    async def upload_image(self, path: Path) -> str:
        """Upload a local portrait; a URL usable as `source_url`. Reads at most the contract's
        MAX_IMAGE_BYTES: a larger file is refused (ContractViolation) without reading it whole."""
        ...

    async def wait(
        self, talk_id: str, *, poll_interval: float, max_interval: float, timeout: float,
        wake: asyncio.Event | None = None,
    ) -> TalkResult:
        """Poll until the talk ends; `wake` (set by the webhook receiver) cuts a pause short. TalksTimeout
        past `timeout` seconds overall."""
        ...

    def stream_result(self, result: TalkResult) -> AsyncIterator[bytes]:
        """The video of a done talk, in chunks (the files beside it: the same result with their URL as
        its `result_url`, so they are fetched as the video is)."""
        ...

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> TalkRef:
        """The talk a callback is about, or WebhookRejected. Runs in the receiver's thread: no I/O."""
        ...

    async def aclose(self) -> None: ...


def read_image(path: Path) -> bytes:
    """A local portrait's bytes for an upload: at most MAX_IMAGE_BYTES are read, and a larger (or
    unreadable) file is refused as the `source_url` the contract cannot take."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_IMAGE_BYTES + 1)
    except OSError as e:
        raise ContractViolation("source_url", f"cannot read {path}: {e.strerror or e}",
                                "a readable JPEG, PNG or WebP file") from e
    if len(data) > MAX_IMAGE_BYTES:
        raise ContractViolation("source_url", f"{path} is larger than {MAX_IMAGE_BYTES // 2**20} MB",
                                f"at most {MAX_IMAGE_BYTES} bytes")
    return data
