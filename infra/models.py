"""What the launcher reports: component states, endpoints, the result of ``up``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, Field, field_serializer

from hero.config import mask_url

__all__ = [
    "RAY_WORKER_NAMES",
    "ComponentName",
    "ComponentState",
    "ComponentStatus",
    "Endpoints",
    "RayWorkerName",
    "UpReport",
]

RayWorkerName = Literal["ray-2", "ray-3", "ray-4", "ray-5", "ray-6", "ray-7", "ray-8"]
"""A Ray worker node `hero up --ray-nodes N` starts (the head is ``ray``)."""
RAY_WORKER_NAMES: tuple[RayWorkerName, ...] = get_args(RayWorkerName)
ComponentName = (
    Literal[
        "broker",
        "valkey",
        "ray",
        "relay",
        "treasury",
        "usage",
        "commands",
        "gateway",
        "agents",
        "postgres",
        "supervisor",
    ]
    | RayWorkerName
)
ComponentState = Literal["up", "degraded", "down", "external"]


class ComponentStatus(BaseModel):
    name: str = Field(description="a component, or a replica of one: gateway-2, usage-2, ...")
    state: ComponentState
    address: str | None = None
    pid: int | None = None
    detail: str | None = None
    restarts: int | None = Field(
        default=None, description="times the supervisor started it again (None: not supervised)"
    )
    last_exit: str | None = Field(
        default=None, description="how it last ended: 'killed by SIGKILL', 'exited with 1'"
    )
    last_exit_at: datetime | None = None
    supervision: str | None = Field(
        default=None,
        description="running, restarting in N s, waiting for a dependency, crash-looping",
    )


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
    gateway_urls: list[str] = Field(
        default_factory=list,
        description="every gateway's base URL, the first one's first (hero up --replicas N)",
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
