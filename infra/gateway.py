"""The gateway as a stack component: ``python -m hero.gateway --port N``.

REST commands and queries, the event streams and the read-model projector, on
``HERO_GATEWAY_HOST`` (by default the loopback address): the only component that may listen
elsewhere. It needs the store and Valkey, so it starts once Valkey answers, next to the relay,
the treasury and the usage worker. Ready once ``run/gateway.health`` names its pid and its
port accepts connections. ``hero up --replicas N`` runs N of them (``gateway``, ``gateway-2``,
...; each on its own port, ``run/gateway-2.health``): they share the store and Valkey, so any
one answers any request, and each runs the read-model projector, whose writes are conditional
on the position (``hero.readmodels.projector``), so two end where one would.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from hero.config import LOOPBACK, HeroSettings
from infra.hero_processes import _Served
from infra.processes import settings_env

__all__ = [
    "GATEWAY_COMMAND",
    "GatewayProcess",
    "gateway_degraded",
    "gateway_detail",
    "reachable_url",
]

_WILDCARDS = frozenset({"0.0.0.0", "::", ""})

GATEWAY_COMMAND: tuple[str, ...] = (sys.executable, "-m", "hero.gateway")
"""How the gateway is run, before ``--port N``; GatewayProcess takes a ``command``."""


class GatewayProcess(_Served):
    """The gateway: REST, streams and the read models, in one process."""

    name = "gateway"
    health_file = "gateway.health"
    # Uvicorn drains open requests and gives open streams 3 s; then the projector stops.
    stop_timeout = 10.0

    def __init__(
        self,
        settings: HeroSettings,
        port: int | None = None,
        redis_url: str = "",
        bootstrap: str = "",
        treasury_url: str = "",
        *,
        command: Sequence[str] | None = None,
        replica: int = 1,
    ) -> None:
        super().__init__(settings.data_dir, port, host=settings.gateway_bind, replica=replica)
        self.settings = settings
        # Needed to start it only: a process adopted from stack.json is probed and stopped.
        self.redis_url = redis_url
        self.bootstrap = bootstrap
        self.treasury_url = treasury_url
        self.command = tuple(command) if command is not None else GATEWAY_COMMAND

    @property
    def url(self) -> str | None:
        return reachable_url(self.address) if self.address is not None else None

    def _command(self) -> list[str]:
        # Its name picks its health file: two gateways under one data dir report apart.
        named = ["--name", self.label] if self.replica > 1 else []
        return [*super()._command(), *named]

    def _env(self) -> dict[str, str]:
        env = settings_env(self.settings, super()._env())
        env.update(
            {
                "HERO_DATA_DIR": str(self.data_dir),
                "HERO_GATEWAY_PORT": str(self.port),
                # Explicit: stack.json is complete only once `up` returns, after this starts.
                "HERO_REDIS_URL": self.redis_url,
                "HERO_STORE_URL": self.settings.effective_store_url,
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.bootstrap:
            env["HERO_KAFKA_BOOTSTRAP"] = self.bootstrap
        if self.treasury_url:
            env["HERO_TREASURY_URL"] = self.treasury_url
        return env


def reachable_url(address: str) -> str:
    """``http://HOST:PORT`` for a client on this machine: a wildcard listener is reached over
    the loopback (``0.0.0.0:8080`` -> ``http://127.0.0.1:8080``)."""
    host, _, port = address.rpartition(":")
    return f"http://{LOOPBACK if host.strip('[]') in _WILDCARDS else host}:{port}"


def gateway_degraded(gateway: GatewayProcess) -> bool:
    """True when the gateway's last report says its /health is degraded."""
    health = gateway.health()
    return health is not None and health.get("status") == "degraded"


def gateway_detail(gateway: GatewayProcess) -> str | None:
    """``http://127.0.0.1:PORT, updated 2026-...`` (OpenAPI at ``<url>/openapi.json``), and
    when /health is degraded, why."""
    health = gateway.health()
    if health is None:
        return None
    parts = [str(gateway.url)]
    reasons = health.get("reasons")
    if health.get("status") == "degraded" and isinstance(reasons, list):
        parts.append("degraded: " + "; ".join(str(r) for r in reasons))
    updated = health.get("updated_at")
    if isinstance(updated, str):
        parts.append(f"updated {updated}")
    return ", ".join(parts)
