"""Effective configuration: HERO_* environment variables over defaults (pydantic-settings).

With nothing set, every piece is the embedded one under the data dir. Each of
``HERO_STORE_URL``, ``HERO_KAFKA_BOOTSTRAP``, ``HERO_REDIS_URL`` and ``HERO_RAY_ADDRESS``
replaces one embedded piece with an external one; the launcher then leaves that piece alone.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hero.model import COMPACT_AFTER_S

if TYPE_CHECKING:
    from hero.domain.pricing import PricingPolicy

__all__ = ["LOOPBACK", "HeroSettings", "embedded_postgres_url_file", "mask_url"]

#: Where every internal server listens, whatever the gateway is configured to.
LOOPBACK = "127.0.0.1"


def mask_url(url: str) -> str:
    """Hide the password part of a URL (``postgresql://u:secret@h/db`` -> ``u:***@h``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    # The credentials end at the last '@' of the authority; a password may contain '@'.
    host = parts.netloc.rpartition("@")[2]
    user = parts.netloc.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def embedded_postgres_url_file(data_dir: Path) -> Path:
    """Where ``hero up --store postgres`` leaves the embedded PostgreSQL's URL (0600)."""
    return data_dir / "run" / "postgres.url"


class HeroSettings(BaseSettings):
    """Where every piece of the platform lives; one instance per process."""

    model_config = SettingsConfigDict(env_prefix="HERO_", extra="ignore")

    data_dir: Path = Field(default=Path(".hero"), description="embedded data, logs and pids")
    host: str = Field(
        default="127.0.0.1",
        description="where the gateway listens unless HERO_GATEWAY_HOST is set; the internal "
        "servers (broker, Valkey, Ray, treasury, relay, usage worker) always bind 127.0.0.1",
    )
    gateway_host: str | None = Field(
        default=None,
        description="the gateway's listen address (0.0.0.0: every interface); unset: HERO_HOST",
    )
    store_url: str | None = Field(default=None, description="sqlite:///path or postgresql://")
    store: Literal["sqlite", "postgres"] | None = Field(
        default=None,
        description="the embedded store when HERO_STORE_URL is unset: sqlite (events.db) or "
        "postgres (PostgreSQL under the data dir); unset: postgres if `hero up --store "
        "postgres` made one in this data dir, else sqlite",
    )
    kafka_bootstrap: str | None = Field(default=None, description="host:port[,host:port]")
    redis_url: str | None = Field(default=None, description="redis://host:port/db")
    ray_address: str | None = Field(default=None, description="an existing Ray cluster")
    broker: Literal["tansu", "kafka"] | None = Field(
        default=None,
        description="the broker `hero up` runs (tansu: embedded, memory only; kafka: Apache "
        "Kafka, its log in the data dir), or, with HERO_KAFKA_BOOTSTRAP, the kind it points at; "
        "unset: kafka if the data dir holds a Kafka log, else tansu",
    )
    kafka_home: Path | None = Field(
        default=None,
        description="an unpacked Apache Kafka distribution; unset: fetched once with Maven",
    )
    cache_dir: Path = Field(
        default=Path("~/.cache/hero"), description="downloads kept between runs (Kafka's jars)"
    )
    kafka_partitions: int = Field(default=3, ge=1, le=64)
    kafka_session_timeout_ms: int = Field(default=6000, ge=1000)
    relay_batch_size: int = Field(default=1000, ge=1, le=50_000)
    relay_poll_interval_s: float = Field(default=0.05, gt=0)
    relay_epoch_check_interval_s: float = Field(default=1.0, gt=0)
    relay_replica: int = Field(
        default=1, ge=1, le=8, description="which relay this is (hero up sets it per replica)"
    )
    relay_lease_poll_s: float = Field(
        default=0.5, gt=0, le=5, description="how often a standby relay tries the lease"
    )
    replicas: int = Field(
        default=1, ge=1, le=8, description="relays, gateways and usage workers `hero up` starts"
    )
    relay_purge_on_refill: bool = Field(
        default=False,
        description="delete the platform topics before a refill (only for a broker HERO owns)",
    )
    # -- language models (agents/strategies) --
    llm: str | None = Field(
        default=None,
        description="provider:model (openai:gpt-4o-mini, anthropic:..., ollama:llama3.1, "
        "scripted:PATH); unset: the rule strategies decide",
    )
    llm_timeout_s: float = Field(default=15.0, gt=0, le=600, description="per model call")
    llm_max_calls_per_negotiation: int = Field(
        default=8, ge=0, description="model calls an agent makes in one negotiation"
    )
    llm_max_calls_per_minute: int = Field(
        default=60, ge=0, description="model calls per agent host (or process) per minute"
    )
    llm_max_concurrent: int = Field(default=4, ge=1, le=256, description="calls at once")
    agent_shards: int = Field(default=2, ge=1, le=64, description="agent hosts `hero up` starts")
    ray_nodes: int = Field(
        default=1,
        ge=1,
        le=8,
        description="Ray nodes `hero up` runs on loopback: the head and N-1 worker nodes",
    )
    ray_health_check_period_ms: int = Field(
        default=1000, ge=100, le=60_000, description="how often the Ray head probes each node"
    )
    ray_health_check_failures: int = Field(
        default=5,
        ge=1,
        le=100,
        description="probes a node misses before Ray declares it dead and restarts its hosts",
    )
    up_timeout_s: float = Field(default=60.0, gt=0)
    supervise: bool = Field(
        default=True,
        description="`hero up` also runs a supervisor that starts a crashed process again",
    )
    health_max_lag: int = Field(
        default=5000, ge=0, description="events a follower may lag the store before degraded"
    )
    api_secret: SecretStr | None = Field(default=None, description="reserved for the gateway")
    # -- payments (treasury and billing) --
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="payment webhook HMAC secret; the embedded stack makes one in the data dir",
    )
    webhook_tolerance_s: int = Field(default=300, ge=1, description="accepted signature age")
    treasury_port: int = Field(default=0, ge=0, le=65535, description="0: a free port")
    gateway_port: int = Field(default=0, ge=0, le=65535, description="the gateway; 0: a free port")
    gateway_rate: str = Field(
        default="100/second;2000/minute",
        description="requests per API key (and per client IP without a valid key), as "
        "N/second;N/minute...; off: no limit",
    )
    gateway_max_streams_per_key: int = Field(
        default=8, ge=0, le=100_000, description="open SSE/WebSocket streams per key; 0: no cap"
    )
    treasury_url: str | None = Field(
        default=None,
        description="where the gateway forwards payment webhooks (hero up sets it: its treasury)",
    )
    tft_oracle: str = Field(
        default="fixed",
        description="fixed (tft_per_usd/tft_per_eur), file:PATH (a rates file), or stellar",
    )
    tft_per_usd: Decimal = Field(default=Decimal(100), gt=0, description="fixed oracle rate")
    tft_per_eur: Decimal = Field(default=Decimal(108), gt=0, description="fixed oracle rate")
    quote_spread: Decimal = Field(default=Decimal("0.005"), ge=0, lt=Decimal("0.1"))
    quote_ttl_s: int = Field(default=120, gt=0)
    quote_max_slippage: Decimal = Field(default=Decimal("0.01"), ge=0, lt=1)
    revenue_split: str = Field(
        default="60/20/20", description="farmer/pool/ThreeFold percent, summing to 100"
    )
    grace_days: Decimal = Field(default=Decimal(14), ge=0)
    low_balance_hours: Decimal = Field(default=Decimal(24), ge=0)
    pricing_policy: str = Field(default="genesis", description="genesis, manual or a custom name")
    pricing_policies_file: Path | None = Field(default=None, description="custom pricing policies")
    usage_lateness_s: int = Field(
        default=300, ge=0, description="how late a sample may arrive for its hour"
    )
    usage_wait_s: int = Field(
        default=7200, ge=0, description="billing waits this long for a metered hour's usage fact"
    )
    usage_idle_close_s: int = Field(
        default=3600, ge=0, description="an hour closes at the latest this long after it ends"
    )
    usage_runner: Literal["plain", "faust"] = Field(
        default="plain",
        description="what runs the usage worker: the plain consumer loop (streams.usage; "
        "the faster) or the Faust usage agent (streams.app)",
    )
    treasury_interval_s: float = Field(
        default=5.0, gt=0, description="how often the treasury converts and bills"
    )
    snapshot_every_events: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="the projector and agent hosts snapshot their state after this many events",
    )
    snapshot_every_s: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="... or after this many seconds with at least one new event",
    )

    compact_after_s: float = Field(
        default=COMPACT_AFTER_S,
        gt=0,
        le=10 * 365 * 24 * 3600.0,
        description="agent hosts drop what ended this many seconds (event time) before the newest"
        " event from their state and snapshots; the read models keep it",
    )

    @field_validator("gateway_rate")
    @classmethod
    def _rates(cls, value: str) -> str:
        from limits import parse_many

        text = value.strip()
        if text.lower() == "off":
            return "off"
        try:
            if not parse_many(text):
                raise ValueError(text)
        except ValueError:
            raise ValueError(
                f"HERO_GATEWAY_RATE must read like 100/second;2000/minute (or off), got {value!r}"
            ) from None
        return text

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def gateway_bind(self) -> str:
        """The one address a HERO process may listen on beyond the loopback: the gateway's."""
        return self.gateway_host or self.host

    @property
    def embedded_postgres(self) -> bool:
        """True when the store is the PostgreSQL that ``hero up`` runs under the data dir."""
        if self.store_url:
            return False
        if self.store is not None:
            return self.store == "postgres"
        return embedded_postgres_url_file(self.data_dir).exists()

    @property
    def effective_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        if self.embedded_postgres:
            try:
                return embedded_postgres_url_file(self.data_dir).read_text().strip()
            except FileNotFoundError:
                # Not started yet: a URL that names the problem rather than a wrong store.
                return "postgresql://hero@127.0.0.1:0/hero?not_started=run_hero_up"
        return f"sqlite:///{self.data_dir / 'events.db'}"

    def pricing(self) -> PricingPolicy:
        """The TFChain pricing policy named by ``pricing_policy``: what Grid 3 contracts are
        billed at, and so what their SLA penalties are reckoned on."""
        from hero.domain.pricing import load_policies, policy_named

        custom = load_policies(self.pricing_policies_file) if self.pricing_policies_file else {}
        return policy_named(self.pricing_policy, custom)

    def masked(self) -> dict[str, Any]:
        """The effective configuration as JSON-ready data, secrets masked."""
        data = self.model_dump(mode="json")
        data["store_url"] = mask_url(self.effective_store_url)
        for key in ("kafka_bootstrap", "redis_url", "ray_address"):
            if data[key]:
                data[key] = mask_url(str(data[key]))
        for key in ("api_secret", "webhook_secret"):
            if getattr(self, key) is not None:
                data[key] = "***"
        return data
