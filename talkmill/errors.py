"""The pipeline's one exception tree. Every error a user can cause or a connector can meet is one of these.

    TalkmillError
    ├── InputError                      bad input: the CLI prints the message (no traceback) and exits 2
    │   ├── ContentError                a source, CSV row or plan the pipeline cannot use
    │   │   ├── UnsupportedSourceError  a kind or URI scheme talkmill does not read
    │   │   ├── SourceReadError         could not be read (missing, HTTP error, too large, S3 failure)
    │   │   ├── EmptyContentError       read and parsed, but nothing to read aloud
    │   │   └── CsvRowsError            every bad row of a CSV at once
    │   ├── ConfigError                 a config (file, option, environment variable) that cannot be used
    │   └── TalksRefusedError           the Talks API refused the key at the start of a run
    ├── TalksError                      anything from a Talks backend
    │   ├── TalksHTTPError              the API answered with an error body {kind, description, details}
    │   │   └── TalksNotFound           404: the talk (or upload) does not exist
    │   ├── TalksConnectionError        no usable answer: refused, reset, request timeout
    │   ├── TalksTimeout                a talk did not finish within the caller's overall deadline
    │   └── TalksBadAnswer              the API answered, but not with what its contract promises
    └── StorageError                    anything from an object store
        ├── ObjectNotFound              the key does not exist
        └── UnsafeKeyError              a key that could escape the store ("..", absolute, empty segments)

`transient` (a constructor argument) says whether the same call may succeed later (429, 5xx, connection
trouble, timeouts). Clients have already retried those as far as their budget allows, so a caller seeing
one gives up on that item (or re-queues it); it does not spin. Prefect's retry conditions read it too.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class TalkmillError(Exception):
    """Base of every error the pipeline raises on purpose."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class InputError(TalkmillError, ValueError):
    """Input a user gave that cannot be used. The message names the input, what was wrong and what is
    allowed; callers print it, never a traceback."""


# -- content ----------------------------------------------------------------------------------------------


class ContentError(InputError):
    """A source, a CSV row or a plan the pipeline cannot use."""


class UnsupportedSourceError(ContentError):
    """A source whose kind or URI scheme talkmill does not read."""


class SourceReadError(ContentError):
    """A source that could not be read: missing file, HTTP error, too large, S3 failure."""


class EmptyContentError(ContentError):
    """A source that was read and parsed but holds nothing to read aloud."""


class ConfigError(InputError):
    """A pipeline config that cannot be used: unreadable YAML, an unknown key, a bad value, a bad option."""


class RowProblem(BaseModel):
    """One thing wrong with one CSV row."""

    line: int  # the row's first physical line in the file; the header is line 1
    column: str
    problem: str  # what is wrong and what is allowed

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column!r}: {self.problem}"


class CsvRowsError(ContentError):
    """Every bad row of a CSV at once, so a spreadsheet is fixed in one pass, not one error per run."""

    def __init__(self, uri: str, problems: list[RowProblem], *, transient: bool = False) -> None:
        self.uri = uri
        self.problems = problems
        listed = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{uri}: {len(problems)} problem(s), nothing was planned:\n{listed}", transient=transient)


class RowsFailedError(TalkmillError):
    """Some scripts of a run failed. Raised after the manifest and summary are written, so that the run
    ends Failed in Prefect (and an inbox file goes to failed/); `summary` is the run's RunSummary."""

    def __init__(self, summary: Any) -> None:
        self.summary = summary
        total = sum(summary.counts.values())
        where = summary.manifest.get("manifest.jsonl", "")
        super().__init__(f"{summary.failed} of {total} videos failed; the manifest says why: {where}")


# -- talks ------------------------------------------------------------------------------------------------


class TalksError(TalkmillError):
    """Base of the Talks backends' errors."""


class TalksRefusedError(InputError):
    """The Talks API refused the key (401/403) before any talk was created: a refusal of the run."""


class TalksHTTPError(TalksError):
    """The API answered `status` with the Talks error body; `kind` is e.g. "ValidationError"."""

    def __init__(
        self, status: int, kind: str, description: str, details: Any = None, *, retry_after: float | None = None
    ) -> None:
        super().__init__(f"HTTP {status} {kind}: {description}", transient=status == 429 or status >= 500)
        self.status = status
        self.kind = kind
        self.description = description
        self.details = details
        self.retry_after = retry_after


class TalksNotFound(TalksHTTPError):
    """404 NotFoundError."""


class TalksConnectionError(TalksError):
    """The request got no answer (refused, reset, timed out). `uncertain`: it may have reached the server."""

    def __init__(self, message: str, *, uncertain: bool) -> None:
        super().__init__(message, transient=True)
        self.uncertain = uncertain


class TalksTimeout(TalksError):
    """A talk was not done or failed within the overall deadline; the caller ends it as failed."""

    def __init__(self, talk_id: str, waited: float, last_status: str | None) -> None:
        super().__init__(f"talk {talk_id} not finished after {waited:.1f} s (last status: {last_status})")
        self.talk_id = talk_id
        self.waited = waited
        self.last_status = last_status


class TalksBadAnswer(TalksError):
    """The API answered 2xx with something its contract does not allow (not JSON, a field missing)."""


# -- storage ----------------------------------------------------------------------------------------------


class StorageError(TalkmillError):
    """Base of the object stores' errors (local directory or S3)."""


class ObjectNotFound(StorageError, KeyError):
    """The key does not exist in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "object not found"


class UnsafeKeyError(StorageError, ValueError):
    """A key that is empty, absolute, or has "..", "." or empty segments."""
