"""What the launcher reports: component states, endpoints, the result of ``up``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_serializer

from hero.config import mask_url

__all__ = [
    "RELAY_REPLICAS",
    "ComponentName",
    "ComponentState",
    "ComponentStatus",
    "Endpoints",
    "UpReport",
    "relay_component",
]

ComponentName = Literal[
    "broker", "valkey", "ray", "relay", "treasury", "usage", "gateway", "agents", "postgres",
    "relay-2", "relay-3", "relay-4", "relay-5", "relay-6", "relay-7", "relay-8",
]  # fmt: skip
RELAY_REPLICAS: tuple[ComponentName, ...] = (
    "relay", "relay-2", "relay-3", "relay-4", "relay-5", "relay-6", "relay-7", "relay-8",
)  # fmt: skip
"""The relays' names by replica (``hero up --replicas N`` starts the first N)."""


def relay_component(replica: int) -> ComponentName:
    if not 1 <= replica <= len(RELAY_REPLICAS):
        raise ValueError(f"relay replica must be 1..{len(RELAY_REPLICAS)}, got {replica}")
    return RELAY_REPLICAS[replica - 1]


ComponentState = Literal["up", "degraded", "down", "external"]


class ComponentStatus(BaseModel):
    name: ComponentName
    state: ComponentState
    address: str | None = None
    pid: int | None = None
    detail: str | None = None


class Endpoints(BaseModel):
    """Where a client finds each piece, embedded or external."""

    kafka_bootstrap: str
    broker: Literal["tansu", "kafka"] = Field(
        default="tansu",
        description="what kafka_bootstrap is: Tansu, or Apache Kafka (exact end offsets, "
        "idempotent producers)",
    )
    redis_url: str
    ray_address: str
    store_url: str
    treasury_url: str | None = Field(
        default=None,
        description=(
            "the treasury's base URL (payment webhooks go to <treasury_url>/webhooks/payments); "
            "None when the stack runs no treasury"
        ),
    )
    gateway_url: str | None = Field(
        default=None,
        description="the gateway's base URL (REST, streams, /openapi.json); None without one",
    )
    ray_env: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "environment a Ray client needs for ray_address; set it before ray.init "
            "(see infra.configure_ray_client). Empty for an external Ray."
        ),
    )

    @field_serializer("redis_url", "store_url", when_used="json")
    def _masked(self, url: str) -> str:
        # `hero up --json` prints these: the embedded Valkey's URL carries its password.
        return mask_url(url)


class UpReport(BaseModel):
    components: list[ComponentStatus]
    seconds: float
    already_running: bool
    endpoints: Endpoints | None = None
