"""The connectors' one exception tree: what the pipeline's edges (talks API, object stores) can raise.

    ConnectorError
    ├── TalksError                      anything from the Talks API client
    │   ├── TalksHTTPError              the API answered with an error body {kind, description, details}
    │   │   └── TalksNotFound           404: the talk (or upload) does not exist
    │   ├── TalksConnectionError        no usable answer: connection refused/reset, request timeout
    │   └── TalksTimeout                a talk did not finish within the caller's overall deadline
    └── StorageError                    anything from an object store
        ├── ObjectNotFound              the key does not exist
        └── UnsafeKeyError              a key that could escape the store ("..", absolute, empty segments)

`retryable` says whether trying the same call again later may succeed (429, 5xx, connection trouble);
the client has already retried those as far as its budget allows, so a caller seeing one gives up on
that item (or re-queues it), it does not spin.
"""

from __future__ import annotations

from typing import Any


class ConnectorError(Exception):
    """Base of every error raised by talkmill.connectors."""

    retryable: bool = False


class TalksError(ConnectorError):
    """Base of the Talks API client's errors."""


class TalksHTTPError(TalksError):
    """The API answered `status` with the Talks error body; `kind` is e.g. "ValidationError"."""

    def __init__(
        self,
        status: int,
        kind: str,
        description: str,
        details: Any = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"HTTP {status} {kind}: {description}")
        self.status = status
        self.kind = kind
        self.description = description
        self.details = details
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status == 429 or self.status >= 500


class TalksNotFound(TalksHTTPError):
    """404 NotFoundError."""


class TalksConnectionError(TalksError):
    """The request got no answer (refused, reset, timed out). `uncertain`: it may have reached the server."""

    retryable = True

    def __init__(self, message: str, *, uncertain: bool) -> None:
        super().__init__(message)
        self.uncertain = uncertain


class TalksTimeout(TalksError):
    """A talk was not done or failed within the overall deadline; the caller ends it as failed."""

    def __init__(self, talk_id: str, waited: float, last_status: str | None) -> None:
        super().__init__(f"talk {talk_id} not finished after {waited:.1f} s (last status: {last_status})")
        self.talk_id = talk_id
        self.waited = waited
        self.last_status = last_status


class StorageError(ConnectorError):
    """Base of the object stores' errors (local directory or S3)."""


class ObjectNotFound(StorageError, KeyError):
    """The key does not exist in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "object not found"


class UnsafeKeyError(StorageError, ValueError):
    """A key that is empty, absolute, or has "..", "." or empty segments."""
