"""The engine's settings, in one place: environment variables prefixed TALKMILL_ENGINE_, or arguments.

Secrets (API keys, the webhook signing secret) come from the environment or a file; when none is given
the engine generates one on first start and keeps it in its data dir (mode 0600), so a restart keeps it.
"""

from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from talks_contract.urlpolicy import UrlPolicy

KEY_FILE = "api_key"
WEBHOOK_SECRET_FILE = "webhook_secret"
EVERY_NETWORK = ("0.0.0.0/0", "::/0")  # what the deprecated allow_private_urls means (metadata still refused)


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TALKMILL_ENGINE_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8700, ge=0, le=65535)
    data_dir: Path = Path(".talkmill/engine")
    # API keys: TALKMILL_ENGINE_KEYS="k1,k2", or a file with one key per line; else generated.
    keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    keys_file: Path | None = None
    webhook_secret: SecretStr | None = None
    # Non-public networks (CIDR) or host names that inputs (source_url, audio_url, logo) and webhook
    # targets may reach, comma-separated; unset: public addresses only. Cloud metadata: never.
    allowed_input_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allowed_webhook_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allow_private_urls: bool = False  # deprecated: both lists above = every network, when they are unset
    # One per core, by measurement (bench/batch.py): on 2 cores 2 workers finished 8 talks 28 % sooner than 1.
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=0)  # 0: accept, never render
    max_queue: int = Field(100, ge=1)  # created + started talks; beyond it POST /talks answers 429
    public_base_url: str | None = None  # where results are served; default http://{host}:{port}
    s3_endpoint_url: str | None = None  # S3-compatible store (SeaweedFS, MinIO); None: AWS
    fetch_timeout: float = Field(20.0, gt=0)  # seconds, per fetched input
    webhook_timeout: float = Field(10.0, gt=0)
    webhook_schedule_scale: float = Field(1.0, gt=0)  # multiplies the retry schedule (jobs/dispatch.py)
    # Replicas: talks in PostgreSQL (postgresql://user:password@host:5432/db; unset: SQLite in the data
    # dir) and results in S3 (s3://bucket/prefix, served by presigned URLs; unset: from the data dir).
    database_url: SecretStr | None = None
    results_s3_url: str | None = Field(None, pattern=r"^s3://[^/]+(/.*)?$")
    lease_seconds: float = Field(30.0, gt=0)  # a replica killed mid-render frees its talk this late
    kokoro_dir: Path | None = None  # Kokoro's model and voices; None: <sys.prefix>/share/talkmill/kokoro

    @field_validator("keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("allowed_input_networks", "allowed_webhook_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, (str, list)):
            return UrlPolicy.from_entries(value).entries  # a bad entry fails here, at start, naming the setting
        return value

    @model_validator(mode="after")
    def _deprecated_allow_private(self) -> EngineSettings:
        if self.allow_private_urls:
            warnings.warn(
                "TALKMILL_ENGINE_ALLOW_PRIVATE_URLS is deprecated: set TALKMILL_ENGINE_ALLOWED_INPUT_NETWORKS"
                " and TALKMILL_ENGINE_ALLOWED_WEBHOOK_NETWORKS (CIDR or host names) instead; until then it"
                " allows every network to both (cloud metadata excepted)", FutureWarning, stacklevel=2)
        return self

    @property
    def input_url_policy(self) -> UrlPolicy:
        return self._url_policy(self.allowed_input_networks)

    @property
    def webhook_url_policy(self) -> UrlPolicy:
        return self._url_policy(self.allowed_webhook_networks)

    def _url_policy(self, entries: list[str]) -> UrlPolicy:
        return UrlPolicy.from_entries(entries or (EVERY_NETWORK if self.allow_private_urls else ()))

    @property
    def base_url(self) -> str:
        return (self.public_base_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "talks.db"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    def key_values(self) -> list[str]:
        return [key.get_secret_value() for key in self.keys]


def prepare(settings: EngineSettings) -> tuple[EngineSettings, list[Path]]:
    """Settings with keys and webhook secret filled in (read or generated), and the files generated now.

    Creates the data dir. Idempotent: a second call on prepared settings changes nothing.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    generated: list[Path] = []
    keys = settings.keys
    if not keys and settings.keys_file is not None:
        lines = settings.keys_file.read_text().splitlines()
        keys = [SecretStr(line.strip()) for line in lines if line.strip()]
    if not keys:
        key, path = _read_or_generate(settings.data_dir / KEY_FILE, generated)
        keys = [SecretStr(key)]
    secret = settings.webhook_secret
    if secret is None:
        value, _ = _read_or_generate(settings.data_dir / WEBHOOK_SECRET_FILE, generated)
        secret = SecretStr(value)
    return settings.model_copy(update={"keys": keys, "webhook_secret": secret}), generated


def _read_or_generate(path: Path, generated: list[Path]) -> tuple[str, Path]:
    if path.exists():
        return path.read_text().strip(), path
    value = "tm_" + secrets.token_urlsafe(24)
    # Created with 0600 from the start: never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(value + "\n")
    generated.append(path)
    return value, path
