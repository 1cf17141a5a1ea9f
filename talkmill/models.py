"""The pipeline's data: what ingest produces (Document, Section), what split plans (Script), and the
one exception tree for bad input (ContentError and its subclasses).

Pydantic v2 throughout, like the config, so every object crosses Prefect task boundaries and JSON files
(manifest, sidecars) with `model_dump(mode="json")` / `model_validate` and nothing lost.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SourceType = Literal["html", "markdown", "csv", "text"]

# Speech rate used for estimates: the joe voice (en) speaks about 15 characters a second, 900 a minute.
CHARS_PER_SECOND = 15.0


# --- errors -----------------------------------------------------------------------------------------


class ContentError(ValueError):
    """Bad input the pipeline cannot use: a source, a CSV row, a config key. The message names the input,
    what was wrong and what is allowed; callers print it, never a traceback."""


class UnsupportedSourceError(ContentError):
    """A source whose kind or URI scheme talkmill does not read."""


class SourceReadError(ContentError):
    """A source that could not be read: missing file, HTTP error, too large, S3 failure.

    `transient` is True when trying again may help (timeouts, connection errors, 429/5xx)."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class EmptyContentError(ContentError):
    """A source that was read and parsed but holds nothing to read aloud."""


class ConfigError(ContentError):
    """A pipeline config that cannot be loaded: unreadable YAML, an unknown key, a bad value."""


class RowProblem(BaseModel):
    """One thing wrong with one CSV row."""

    line: int  # the row's first physical line in the file; the header is line 1
    column: str
    problem: str  # what is wrong and what is allowed

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column!r}: {self.problem}"


class CsvRowsError(ContentError):
    """Every bad row of a CSV at once, so a spreadsheet is fixed in one pass, not one error per run."""

    def __init__(self, uri: str, problems: list[RowProblem]) -> None:
        self.uri = uri
        self.problems = problems
        listed = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{uri}: {len(problems)} problem(s), nothing was planned:\n{listed}")


# --- content ----------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceRef(_Model):
    type: SourceType
    uri: str
    id: str  # slug of the file name: "remote-onboarding"
    checksum: str  # sha256 hex of the bytes read


class Section(_Model):
    title: str | None = None
    text: str = ""  # what is read aloud; empty only for a CSV row whose `source` is still to be fetched
    line: int | None = None  # CSV: the row's line number
    overrides: dict[str, str] = Field(default_factory=dict)  # CSV: per-row settings, non-empty cells only
    metadata: dict[str, str] = Field(default_factory=dict)  # CSV: unknown columns; "source" for source rows


class Document(_Model):
    id: str
    title: str
    source: SourceRef
    sections: list[Section]


class VoiceProvider(_Model):
    type: str = "microsoft"
    voice_id: str = "en-US-JennyNeural"
    voice_config: dict[str, Any] | None = None  # {style, rate, pitch}; left out of requests when None


class Voice(_Model):
    provider: VoiceProvider = Field(default_factory=VoiceProvider)


class Script(_Model):
    """One talk to create: the text and everything that shapes its video."""

    id: str  # "scr_" + 16 hex; see tasks/scripts.py for what the hash covers
    text: str
    source: SourceRef
    document_title: str
    section_title: str | None
    section_index: int
    chunk_index: int
    chunk_count: int
    presenter: str  # absolute local path or URL of the portrait
    voice: Voice
    driver_url: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)  # the talk's config
    output_name: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    @property
    def estimated_seconds(self) -> float:
        """Speech length at about 15 characters a second (English); a plan-time estimate only."""
        return round(len(self.text) / CHARS_PER_SECOND, 1)

    def to_talk_request(self, source_url: str, webhook: str | None = None) -> dict[str, Any]:
        """The body of POST /talks. `source_url` is the presenter as the backend can fetch it (a local
        portrait must be uploaded first, e.g. with POST /images)."""
        provider = self.voice.provider.model_dump(exclude_none=True)
        body: dict[str, Any] = {
            "source_url": source_url,
            "script": {"type": "text", "input": self.text, "provider": provider},
            "config": self.config,
            "user_data": self.id,  # lets a create whose answer was lost be found again
            "name": self.output_name or f"{self.source.id}-{self.id}",
        }
        if self.driver_url:
            body["driver_url"] = self.driver_url
        if webhook:
            body["webhook"] = webhook
        return body
