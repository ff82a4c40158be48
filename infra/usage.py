"""The usage worker as a stack component: ``python -m streams usage``, a plain consumer loop
(``HERO_USAGE_RUNNER=faust``: a Faust worker).

It consumes ``hero.utilization``, keeps the contract-hour windows in Valkey and writes one
``UsageRecorded`` per contract and hour to the event store. It needs the broker, Valkey and
the store, so it starts once Valkey answers, next to the relay and the treasury. Ready once
``run/usage.health`` names its pid (it writes that after its first poll, then on every poll).
``hero up --replicas N`` runs N of them (``usage``, ``usage-2``, ...) in the one consumer group
``hero-usage``: Kafka shares the partitions out among them and moves a dead one's to the others
within the session timeout; the windows in Valkey count a sample once whoever consumes it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from hero.config import HeroSettings
from infra.hero_processes import _FaustWorker, _status_detail

__all__ = ["USAGE_COMMAND", "UsageProcess", "usage_detail"]

USAGE_COMMAND: tuple[str, ...] = (sys.executable, "-m", "streams", "usage")
"""How the usage worker is run; UsageProcess and LocalStack take a ``command`` to replace it."""


class UsageProcess(_FaustWorker):
    """Utilization samples in, hourly usage facts out; no port of its own."""

    name = "usage"
    health_file = "usage.health"
    default_command = USAGE_COMMAND

    def __init__(
        self,
        settings: HeroSettings,
        bootstrap: str = "",
        redis_url: str = "",
        *,
        command: Sequence[str] | None = None,
        replica: int = 1,
    ) -> None:
        super().__init__(settings, bootstrap, command=command, replica=replica)
        # Not kept in stack.json: it may carry a password (an external Valkey).
        self.redis_url = redis_url

    def _command(self) -> list[str]:
        # Its name picks its health file; every replica joins the same consumer group.
        named = ["--name", self.label] if self.replica > 1 else []
        return [*self.command, *named]

    def _worker_env(self) -> dict[str, str]:
        return {"HERO_REDIS_URL": self.redis_url}


def usage_detail(usage: UsageProcess) -> str | None:
    """``1200 samples, 10 facts, updated 2026-...`` (with duplicates, late ones and dead letters
    if any, and ``degraded: REASON`` while the worker waits on Valkey, the broker or the store)."""
    health = usage.health()
    if health is None:
        return None
    parts = [f"{health.get('added', 0)} samples", f"{health.get('facts', 0)} facts"]
    if health.get("duplicates"):
        parts.append(f"{health['duplicates']} duplicates")
    if health.get("late"):
        parts.append(f"{health['late']} late")
    if health.get("dead_lettered"):
        parts.append(f"{health['dead_lettered']} dead-lettered")
    partitions = health.get("partitions")
    if isinstance(partitions, list):
        parts.append("partitions " + (",".join(str(p) for p in partitions) or "none"))
    return _status_detail(parts, health)
