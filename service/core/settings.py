"""Typed settings read from the environment (prefix ``GORA_``); secrets have no defaults outside development."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GORA_", extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Field(default_factory=lambda: Path.home() / ".gora")
    # Defaults derived from data_dir (filled in by _derive_defaults): an embedded SQLite file, the
    # filesystem broker transport and a local artifact directory, so one machine needs no servers.
    database_url: str = ""
    broker_url: str = ""
    storage_url: str = ""
    models_dir: Path | None = None
    admin_token: SecretStr | None = None
    max_upload_bytes: int = Field(default=512 * MiB, ge=1)
    # The Uploads API (a file sent in parts): OpenAI's limits, and how long a pending one lives.
    max_upload_part_bytes: int = Field(default=64 * MiB, ge=1)
    max_chunked_upload_bytes: int = Field(default=8 * 1024 * MiB, ge=1)
    upload_ttl_s: int = Field(default=3600, ge=1)
    upload_sweep_interval_s: float = Field(default=60.0, gt=0)
    allow_hub_models: bool = False
    # GPU pools a job may name; "cpu" is the queue of CPU-only workers. A comma-separated list.
    pools: Annotated[list[str], NoDecode] = ["cpu"]
    default_pool: str = "cpu"
    max_gpus_per_job: int = Field(default=8, ge=1)
    # Redis re-delivers an unacknowledged message after this long; it must exceed the longest job.
    visibility_timeout_s: int = Field(default=48 * 3600, ge=60)
    # How long a server trusts an API key it has looked up; a deleted key stops working on the
    # other servers within this time (at once on the one that deleted it). 0 turns the cache off.
    auth_cache_ttl_s: float = Field(default=2.0, ge=0)
    # How long an Idempotency-Key is remembered; after that the same key creates a new job.
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    # How often the server-sent-events stream looks for new events.
    event_poll_interval_s: float = Field(default=1.0, gt=0)
    # A worker is shown online (GET /v1/pools) while its last presence stamp is this recent.
    worker_online_within_s: float = Field(default=30.0, gt=0)
    # Webhooks: how often each API server looks for due deliveries, how long one POST may take,
    # and the waits between attempts (comma-separated seconds; one more attempt than waits).
    webhook_poll_interval_s: float = Field(default=1.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_retry_waits_s: Annotated[list[float], NoDecode] = [5, 30, 120, 600, 1800, 3600, 7200]

    @field_validator("pools", mode="before")
    @classmethod
    def _split_pools(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("webhook_retry_waits_s", mode="before")
    @classmethod
    def _split_waits(cls, value: object) -> object:
        if isinstance(value, str):
            return [float(part) for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        self.data_dir = self.data_dir.expanduser()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'gora.db'}"
        if not self.broker_url:
            self.broker_url = "filesystem://"
        if not self.storage_url:
            self.storage_url = (self.data_dir / "storage").as_uri()
        if self.models_dir is None:
            self.models_dir = self.data_dir / "models"
        if self.default_pool not in self.pools:
            raise ValueError(f"GORA_DEFAULT_POOL={self.default_pool!r} is not in GORA_POOLS")
        if self.env != "development" and self.admin_token is None:
            raise ValueError("GORA_ADMIN_TOKEN is required when GORA_ENV is not 'development'")
        return self

    @property
    def is_embedded_sqlite(self) -> bool:
        """True when the database is a SQLite file this process owns (it may migrate it on start)."""
        return self.database_url.startswith("sqlite")

    @property
    def broker_dir(self) -> Path:
        """Where the filesystem transport keeps its messages (embedded mode)."""
        return self.data_dir / "broker"


@lru_cache
def get_settings() -> Settings:
    return Settings()
