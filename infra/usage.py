"""The usage worker as a stack component: ``python -m streams usage``, a Faust worker.

It consumes ``hero.utilization``, keeps the contract-hour windows in Valkey and writes one
``UsageRecorded`` per contract and hour to the event store. It needs the broker, Valkey and
the store, so it starts once Valkey answers, next to the relay and the treasury. Ready once
``run/usage.health`` names its pid (it writes that after its first poll, then on every poll).
``hero up --replicas N`` runs N of them (``usage``, ``usage-2``, ...) in the one consumer group
``hero-usage``: Kafka shares the partitions out among them and moves a dead one's to the others
within the session timeout; the windows in Valkey count a sample once whoever consumes it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from hero.config import LOOPBACK, HeroSettings
from infra._state import ProcessRecord
from infra.hero_processes import _Reporting
from infra.processes import settings_env

__all__ = ["USAGE_COMMAND", "UsageProcess", "usage_detail"]

USAGE_COMMAND: tuple[str, ...] = (sys.executable, "-m", "streams", "usage")
"""How the usage worker is run; UsageProcess and LocalStack take a ``command`` to replace it."""


class UsageProcess(_Reporting):
    """Utilization samples in, hourly usage facts out; no port of its own."""

    name = "usage"
    health_file = "usage.health"
    # On SIGTERM Faust finishes the batch in hand, commits what was acked, leaves the group.
    stop_timeout = 10.0

    def __init__(
        self,
        settings: HeroSettings,
        bootstrap: str = "",
        redis_url: str = "",
        *,
        command: Sequence[str] | None = None,
        replica: int = 1,
    ) -> None:
        super().__init__(settings.data_dir, host=LOOPBACK, replica=replica)
        self.settings = settings
        # Needed to start it only: a process adopted from stack.json is probed and stopped.
        self.bootstrap = bootstrap
        self.redis_url = redis_url
        self.command = tuple(command) if command is not None else USAGE_COMMAND

    def _command(self) -> list[str]:
        # Its name picks its health file; every replica joins the same consumer group.
        named = ["--name", self.label] if self.replica > 1 else []
        return [*self.command, *named]

    def _env(self) -> dict[str, str]:
        env = settings_env(self.settings, super()._env())
        env.update(
            {
                "HERO_DATA_DIR": str(self.data_dir),
                # Explicit: stack.json is complete only once `up` returns, after this starts.
                "HERO_KAFKA_BOOTSTRAP": self.bootstrap,
                "HERO_REDIS_URL": self.redis_url,
                "HERO_STORE_URL": self.settings.effective_store_url,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _ready(self) -> bool:
        return self.health() is not None

    def _extra_for_record(self) -> dict[str, str]:
        # The Valkey URL is not kept: it may carry a password (an external Valkey).
        return {"bootstrap": self.bootstrap, "command": json.dumps(list(self.command))}

    def adopt(self, record: ProcessRecord) -> None:
        super().adopt(record)
        self.bootstrap = record.extra.get("bootstrap", self.bootstrap)
        if "command" in record.extra:
            self.command = tuple(json.loads(record.extra["command"]))

    def _after_stop(self) -> None:
        self.health_path.unlink(missing_ok=True)


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
    if health.get("status") == "degraded":
        parts.append(f"degraded: {health.get('reason')}")
    updated = health.get("updated_at")
    if isinstance(updated, str):
        parts.append(f"updated {updated}")
    return ", ".join(parts)
