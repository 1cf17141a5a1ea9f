"""The pipeline's data: what ingest produces (Document, Section) and what split plans (Script). No wire
format lives here: each Talks backend (connectors/talks) writes a Script as its own request.

Pydantic v2 throughout, like the config, so every object crosses Prefect task boundaries and JSON files
(manifest, sidecars) with `model_dump(mode="json")` / `model_validate` and nothing lost.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from talkmill.content.formats import KINDS

SourceType = Literal[KINDS]  # type: ignore[valid-type]  # the kinds the format registry knows

# Speech rate used for estimates: the joe voice (en) speaks about 15 characters a second, 900 a minute.
CHARS_PER_SECOND = 15.0


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
    metadata: dict[str, str] = Field(default_factory=dict)  # CSV: unknown columns, "source"; "slide", "page"


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
