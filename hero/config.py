"""Effective configuration: HERO_* environment variables over defaults (pydantic-settings).

With nothing set, every piece is the embedded one under the data dir. Each of
``HERO_STORE_URL``, ``HERO_KAFKA_BOOTSTRAP``, ``HERO_REDIS_URL`` and ``HERO_RAY_ADDRESS``
replaces one embedded piece with an external one; the launcher then leaves that piece alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["HeroSettings", "mask_url"]


def mask_url(url: str) -> str:
    """Hide the password part of a URL (``postgresql://u:secret@h/db`` -> ``u:***@h``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    # The credentials end at the last '@' of the authority; a password may contain '@'.
    host = parts.netloc.rpartition("@")[2]
    user = parts.netloc.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class HeroSettings(BaseSettings):
    """Where every piece of the platform lives; one instance per process."""

    model_config = SettingsConfigDict(env_prefix="HERO_", extra="ignore")

    data_dir: Path = Field(default=Path(".hero"), description="embedded data, logs and pids")
    host: str = Field(default="127.0.0.1", description="address every embedded server binds")
    store_url: str | None = Field(default=None, description="sqlite:///path or postgresql://")
    kafka_bootstrap: str | None = Field(default=None, description="host:port[,host:port]")
    redis_url: str | None = Field(default=None, description="redis://host:port/db")
    ray_address: str | None = Field(default=None, description="an existing Ray cluster")
    kafka_partitions: int = Field(default=3, ge=1, le=64)
    kafka_session_timeout_ms: int = Field(default=6000, ge=1000)
    relay_batch_size: int = Field(default=1000, ge=1, le=50_000)
    relay_poll_interval_s: float = Field(default=0.05, gt=0)
    relay_epoch_check_interval_s: float = Field(default=1.0, gt=0)
    relay_purge_on_refill: bool = Field(
        default=False,
        description="delete the platform topics before a refill (only for a broker HERO owns)",
    )
    agent_shards: int = Field(default=2, ge=1, le=64, description="agent hosts `hero up` starts")
    up_timeout_s: float = Field(default=60.0, gt=0)
    api_secret: SecretStr | None = Field(default=None, description="reserved for the gateway")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def effective_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.data_dir / 'events.db'}"

    def masked(self) -> dict[str, Any]:
        """The effective configuration as JSON-ready data, secrets masked."""
        data = self.model_dump(mode="json")
        data["store_url"] = mask_url(self.effective_store_url)
        for key in ("kafka_bootstrap", "redis_url", "ray_address"):
            if data[key]:
                data[key] = mask_url(str(data[key]))
        if self.api_secret is not None:
            data["api_secret"] = "***"
        return data
