"""The pipeline's settings: a YAML file (see configs/default.yaml) loaded into pydantic models, with
overrides from the CLI or flow parameters deep-merged on top.

Relative paths (presenter, fetch.local_roots): in a config file they are relative to that file's folder
(so a config and its images move together); in overrides they are relative to the current directory
(they were typed in a shell). The built-in default presenter is talkmill/assets/grace_hopper.jpg (inside
the package), as an absolute path.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from talkmill.content.images import IMAGE_ADVICE, has_image_suffix
from talkmill.errors import ConfigError
from talkmill.models import Voice
from talks_contract.formats import RESULT_FORMATS
from talks_contract.limits import TEXT_MAX_CHARS
from talks_contract.urlpolicy import UrlPolicy

DEFAULT_PRESENTER = Path(__file__).resolve().parent / "assets" / "grace_hopper.jpg"  # ships in the wheel
URL_SCHEMES = ("http://", "https://", "s3://", "upload://")
ALLOWED_NETWORKS_ENV = "TALKMILL_ALLOWED_NETWORKS"
# backend.url / backend.wait when neither the config file nor the run says: `talkmill serve` points its
# runs at its engine this way, so the UI's run form shows no internal URL
TALKS_URL_ENV, TALKS_WAIT_ENV = "TALKMILL_TALKS_URL", "TALKMILL_TALKS_WAIT"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TalkConfig(_Section):
    """The talk's `config` (TALKS_API.md). Unset keys are left out, so the backend's defaults apply."""

    stitch: bool | None = None
    result_format: Literal[RESULT_FORMATS] | None = None  # type: ignore[valid-type]  # a tuple: mp4, mov, gif
    fluent: bool | None = None
    pad_audio: float | None = Field(None, ge=0, le=60)
    align_driver: bool | None = None
    align_expand_factor: float | None = Field(None, ge=0)
    auto_match: bool | None = None
    normalization_factor: float | None = Field(None, ge=0, le=1)
    motion_factor: float | None = Field(None, ge=0)
    sharpen: bool | None = None
    logo: dict[str, Any] | None = None
    driver_expressions: dict[str, Any] | None = None
    # ours: captions (.vtt, .srt beside each video) are asked for unless this is false (sent as
    # `script.subtitles`, never as config); only `false` is recorded, so default scripts keep their ids
    captions: bool | None = None
    subtitles_burn: bool | None = None  # ours (the talkmill engine only): captions drawn into the video

    def as_request(self) -> dict[str, Any]:
        request = self.model_dump(exclude_none=True)
        if request.get("captions") is True:
            del request["captions"]  # the default: asked for either way
        return request


class SplitConfig(_Section):
    max_chars: int = Field(900, ge=50, le=TEXT_MAX_CHARS)  # ~1 minute of the joe voice at ~15 characters/s
    language: str = Field("en", pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]+)*$")  # BCP 47: en, en-US, pt_BR


class BackendConfig(_Section):
    # None: the kind's own (talkmill: the flow starts the local engine on 127.0.0.1)
    url: str | None = Field(default_factory=lambda: os.environ.get(TALKS_URL_ENV) or None)
    key_env: str = "TALKMILL_TALKS_KEY"  # the environment variable that holds the key, never the key
    concurrency: int = Field(2, ge=1, le=256)
    request_timeout: float = Field(30, gt=0)
    poll_interval: float = Field(2, gt=0)
    poll_max_interval: float = Field(15, gt=0)
    talk_timeout: float = Field(1800, gt=0)
    wait: Literal["webhook", "poll"] = Field(
        default_factory=lambda: os.environ.get(TALKS_WAIT_ENV) or "webhook", validate_default=True)
    webhook_timeout: float = Field(60, gt=0)  # no callback by then: fall back to polling
    kind: str = "talkmill"  # the Talks backend (wire format): a key of connectors.talks.BACKENDS

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        """Checked at load, so a typo fails before any work. The kinds are the registry's keys (a new
        backend is one module and one registry entry, nothing here); imported only when a kind is given."""
        from connectors.talks import BACKENDS

        if value not in BACKENDS:
            raise ValueError(f"unknown Talks backend; allowed: {', '.join(BACKENDS)}")
        return value

    @model_validator(mode="after")
    def _poll_bounds(self) -> BackendConfig:
        if self.poll_max_interval < self.poll_interval:
            raise ValueError("poll_max_interval must be at least poll_interval")
        return self


class S3Config(_Section):
    """Where S3 is, for every S3 client of the pipeline: s3:// sources, the output, the inbox."""

    endpoint_url: str | None = None  # None: AWS itself; set for SeaweedFS, MinIO, R2
    region: str | None = None  # None: boto3's own chain (AWS_REGION, AWS_DEFAULT_REGION, the profile)


class FetchConfig(_Section):
    """What content may make the pipeline read (README: Security). URLs (sources, CSV cells, presenters
    checked by a dry run) reach public addresses, plus `allowed_networks` (CIDR or host names); cloud
    metadata never. Files a CSV names lie in its own folder, or in `local_roots`."""

    allowed_networks: list[str] = Field(default_factory=lambda: _env_list(ALLOWED_NETWORKS_ENV),
                                        validate_default=True)
    local_roots: list[str] = Field(default_factory=list)  # folders, made absolute at load

    @field_validator("allowed_networks")
    @classmethod
    def _parses(cls, value: list[str]) -> list[str]:
        try:
            return UrlPolicy.from_entries(value).entries
        except ValueError as error:
            where = f"from the config, or ${ALLOWED_NETWORKS_ENV} when it sets none"
            raise ValueError(f"{error} ({where})") from error

    @property
    def url_policy(self) -> UrlPolicy:
        return UrlPolicy.from_entries(self.allowed_networks)

    @property
    def roots(self) -> tuple[Path, ...]:
        return tuple(Path(root) for root in self.local_roots)


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


class PipelineConfig(_Section):
    presenter: str = str(DEFAULT_PRESENTER)
    voice: Voice = Field(default_factory=Voice)
    driver_url: str | None = None
    talk_config: TalkConfig = Field(default_factory=TalkConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    backend: BackendConfig = Field(default_factory=BackendConfig)
    output: str = "./output"  # a path (relative to the current directory), file://, or s3://bucket/prefix
    s3: S3Config = Field(default_factory=S3Config)
    fetch: FetchConfig = Field(default_factory=FetchConfig)

    @field_validator("presenter")
    @classmethod
    def _presenter_is_image(cls, value: str) -> str:
        if not is_url(value) and not has_image_suffix(value):
            raise ValueError(f"{value!r} is not an image; {IMAGE_ADVICE}")  # pydantic makes it a ConfigError
        return value


def is_url(value: str) -> bool:
    return value.lower().startswith(URL_SCHEMES)


def resolve_presenter(value: str, base: Path) -> str:
    """A local path made absolute against `base`; URLs and file:// unchanged apart from file:// → path."""
    if is_url(value):
        return value
    path = Path(unquote(urlparse(value).path) if value.startswith("file://") else value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


# --- loading ----------------------------------------------------------------------------------------


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Defaults, then the YAML file at `path`, then `overrides` deep-merged on top.

    Overrides may be nested ({"backend": {"url": ...}}) or dotted ({"backend.url": ...}); a None value
    means "not given" and leaves the key as it was, so a CLI can pass its unset options as they are.
    """
    data = _read_yaml(path) if path else {}
    if path:
        _absolute_paths(data, path.resolve().parent)
    extra = _expand_dotted(overrides or {})
    _absolute_paths(extra, Path.cwd())
    merged = deep_merge(data, extra)
    where = str(path) if path else "config"
    try:
        return PipelineConfig.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(_describe(error, where)) from error


def _absolute_paths(data: dict[str, Any], base: Path) -> None:
    """The relative paths in `data` (presenter, fetch.local_roots) made absolute against `base`, in place."""
    if isinstance(data.get("presenter"), str):
        data["presenter"] = resolve_presenter(data["presenter"], base)
    fetch = data.get("fetch")
    if isinstance(fetch, dict) and isinstance(fetch.get("local_roots"), list):
        fetch["local_roots"] = [str((base / Path(root).expanduser()).resolve()) if isinstance(root, str)
                                else root for root in fetch["local_roots"]]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file ({error.strerror})") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(error, 'problem', error)}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys (presenter, voice, ...), "
                          "not a list or a value")
    return data


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` over `base`, recursing into mappings; None in `extra` leaves `base` alone."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key, {}), dict):
            merged[key] = deep_merge(merged.get(key, {}), value)  # a missing section too: its Nones drop
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _expand_dotted(overrides: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        target = nested
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"override {key!r}: {part!r} is set both as a value and as a section")
        if isinstance(value, dict) and isinstance(target.get(leaf), dict):
            target[leaf] = deep_merge(target[leaf], value)
        else:
            target[leaf] = value
    return nested


def _describe(error: ValidationError, where: str) -> str:
    lines = [f"{where}: {error.error_count()} problem(s)"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(item["loc"][:-1]))
            lines.append(f"  {key}: unknown key; allowed here: {allowed}")
        else:
            lines.append(f"  {key}: {item['msg'].removeprefix('Value error, ')} (got {item.get('input')!r})")
    return "\n".join(lines)


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = PipelineConfig
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ["(see configs/default.yaml)"]
        model = annotation
    return list(model.model_fields)
