"""Request and response bodies of the Talks API (TALKS_API.md), as pydantic models.

Requests forbid unknown fields, as D-ID does: a typo is a 400 naming the field, never silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from talks_contract.formats import DEFAULT_RESULT_FORMAT, EXPRESSIONS, RESULT_FORMATS
from talks_contract.limits import TEXT_MAX_CHARS, TEXT_MIN_CHARS, USER_DATA_MAX_CHARS, spoken_text_problem

Expression = Literal[EXPRESSIONS]  # type: ignore[valid-type]  # the contract's tuple, unpacked by Literal
ResultFormat = Literal[RESULT_FORMATS]  # type: ignore[valid-type]


SUBTITLES = "Captions (WebVTT and SRT) of the talk: their URLs are in the talk's `subtitles` at `done`."


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Provider(Strict):
    """One shape for every provider D-ID names; talks_contract.voices decides what is valid."""

    type: str
    voice_id: str | None = None
    voice_config: dict[str, Any] | None = None  # style/rate/pitch (elevenlabs: its own): the contract checks
    language: str | None = None
    model_id: str | None = None


class TextScript(Strict):
    type: Literal["text"]
    input: str = Field(min_length=TEXT_MIN_CHARS, max_length=TEXT_MAX_CHARS)
    ssml: bool = False
    subtitles: bool = Field(False, description=SUBTITLES)
    provider: Provider | None = None

    @field_validator("input")
    @classmethod
    def _speakable(cls, value: str) -> str:
        """Refused at POST, not at render: a NUL or a text of only punctuation would fail the talk later."""
        if problem := spoken_text_problem(value):
            raise ValueError(problem)
        return value


class AudioScript(Strict):
    type: Literal["audio"]
    audio_url: str = Field(min_length=1)
    reduce_noise: bool = False
    subtitles: bool = Field(False, description=SUBTITLES)
    # ours, not D-ID's: what the audio says, so the mouth follows its phones (forced alignment)
    input: str | None = Field(None, min_length=TEXT_MIN_CHARS, max_length=TEXT_MAX_CHARS)

    @field_validator("input")
    @classmethod
    def _speakable(cls, value: str | None) -> str | None:
        return None if value is None else TextScript._speakable(value)


Script = Annotated[Union[TextScript, AudioScript], Field(discriminator="type")]


class Logo(Strict):
    url: str
    position: tuple[int, int] = (0, 0)


class TimedExpression(Strict):
    start_frame: float = Field(ge=0)
    expression: Expression
    intensity: float = Field(ge=0, le=1)


class DriverExpressions(Strict):
    expressions: list[TimedExpression]
    transition_frames: float = Field(0, ge=0)


class TalkConfig(Strict):
    """Defaults are what GET echoes when the caller set nothing."""

    stitch: bool = False
    result_format: ResultFormat = DEFAULT_RESULT_FORMAT
    fluent: bool = False
    pad_audio: float = Field(0, ge=0, le=60)
    align_driver: bool = True
    align_expand_factor: float = Field(0.3, ge=0, le=2)
    auto_match: bool = True
    normalization_factor: float = Field(1, ge=0, le=1)
    motion_factor: float = Field(1, ge=0, le=2)
    sharpen: bool = True
    logo: Logo | None = None
    driver_expressions: DriverExpressions | None = None
    subtitles_burn: bool | None = Field(
        None,
        description="Ours, not D-ID's: burn the captions into the video (white text on a dark box, lower "
        "third). Works with or without `script.subtitles`; an audio script needs a transcript in "
        "`script.input`.",
    )

    @field_validator("result_format", mode="before")
    @classmethod
    def _strip_dot(cls, value: Any) -> Any:
        # D-ID echoes ".mp4"; clients copy it back.
        return value.lstrip(".") if isinstance(value, str) else value

    def applied(self) -> dict[str, Any]:
        """The config as the renderer gets it and GET echoes it: defaults filled, unset extras left out."""
        return self.model_dump(mode="json", exclude_none=True)


class TalkCreate(Strict):
    source_url: str = Field(min_length=1)
    driver_url: str | None = None
    script: Script
    config: TalkConfig = Field(default_factory=TalkConfig)
    webhook: str | None = None
    user_data: str | None = Field(None, min_length=1, max_length=USER_DATA_MAX_CHARS)
    name: str | None = Field(None, max_length=1000)
    result_url: str | None = None
    persist: bool = False


class TalkCreated(BaseModel):
    id: str
    object: Literal["talk"] = "talk"
    created_by: str
    created_at: str
    status: str


class Metadata(BaseModel):
    driver_url: str
    mouth_open: bool
    num_faces: int
    num_frames: int
    processing_fps: float
    resolution: tuple[int, int]
    size_kib: float
    voice_id: str | None = None


class Face(BaseModel):
    detection: list[float]
    top_left: list[float]
    size: int
    overlap: str
    face_id: int
    detect_confidence: float
    mask_confidence: float


class Subtitles(BaseModel):
    """Ours, not D-ID's (whose `script.subtitles` has no response field): the talk's captions, served beside
    the result, or why there are none."""

    vtt_url: str | None = Field(None, description="WebVTT captions, timed from the speech's phones.")
    srt_url: str | None = Field(None, description="The same captions as SubRip.")
    reason: str | None = Field(
        None, description="Why there are no captions (an audio script without a transcript)."
    )


class ErrorBody(BaseModel):
    kind: str
    description: str
    details: Any = None


class Talk(BaseModel):
    """The full talk, as GET /talks/{id} answers and the webhook posts it."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["talk"] = "talk"
    status: Literal["created", "started", "done", "error", "rejected"]
    created_at: str
    created_by: str
    user_id: str
    started_at: str | None = None
    modified_at: str | None = None
    source_url: str
    driver_url: str | None = None
    audio_url: str | None = None
    result_url: str | None = None
    duration: float | None = None
    config: dict[str, Any]
    script: dict[str, Any] | None = None
    user_data: str | None = None
    webhook: str | None = None
    name: str | None = None
    metadata: Metadata | None = None
    face: Face | None = None
    error: ErrorBody | None = None
    subtitles: Subtitles | None = Field(
        None, description="Ours: set at `done` when `script.subtitles` was true."
    )
    poster_url: str | None = Field(
        None, description="Ours: a JPEG frame of the result (eyes open, mouth closed), set at `done`."
    )


class TalkList(BaseModel):
    talks: list[Talk]
    token: str | None = None


class Upload(BaseModel):
    id: str
    url: str
