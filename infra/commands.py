"""The command processor as a stack component: ``python -m streams commands``, a Faust worker.

It consumes ``hero.commands`` as group ``hero-commands`` and applies each command through the
market service to the event store, once by its command id (``streams.commands``). It needs
the broker and the store, so it starts next to the relay. Ready once ``run/commands.health``
names its pid (it writes that from its start, then every quarter second).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from hero.config import LOOPBACK, HeroSettings
from infra._state import ProcessRecord
from infra.hero_processes import _Reporting
from infra.processes import settings_env

__all__ = ["COMMANDS_COMMAND", "CommandsProcess", "commands_detail"]

COMMANDS_COMMAND: tuple[str, ...] = (sys.executable, "-m", "streams", "commands")


class CommandsProcess(_Reporting):
    """Commands from Kafka in, the market's events (or a rejection) in the store; no port."""

    name = "commands"
    health_file = "commands.health"
    stop_timeout = 10.0

    def __init__(
        self,
        settings: HeroSettings,
        bootstrap: str = "",
        *,
        command: Sequence[str] | None = None,
    ) -> None:
        super().__init__(settings.data_dir, host=LOOPBACK)
        self.settings = settings
        self.bootstrap = bootstrap
        self.command = tuple(command) if command is not None else COMMANDS_COMMAND

    def _command(self) -> list[str]:
        return list(self.command)

    def _env(self) -> dict[str, str]:
        env = settings_env(self.settings, super()._env())
        env.update(
            {
                "HERO_DATA_DIR": str(self.data_dir),
                "HERO_KAFKA_BOOTSTRAP": self.bootstrap,
                "HERO_STORE_URL": self.settings.effective_store_url,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _ready(self) -> bool:
        return self.health() is not None

    def _extra_for_record(self) -> dict[str, str]:
        return {"bootstrap": self.bootstrap, "command": json.dumps(list(self.command))}

    def adopt(self, record: ProcessRecord) -> None:
        super().adopt(record)
        self.bootstrap = record.extra.get("bootstrap", self.bootstrap)
        if "command" in record.extra:
            self.command = tuple(json.loads(record.extra["command"]))

    def _after_stop(self) -> None:
        self.health_path.unlink(missing_ok=True)


def commands_detail(proc: CommandsProcess) -> str | None:
    """``12 applied, 1 rejected, updated 2026-...`` (duplicates, dead letters and
    ``degraded: REASON`` when there are any)."""
    health = proc.health()
    if health is None:
        return None
    parts = [f"{health.get('applied', 0)} applied", f"{health.get('rejected', 0)} rejected"]
    if health.get("duplicates"):
        parts.append(f"{health['duplicates']} duplicates")
    if health.get("dead_lettered"):
        parts.append(f"{health['dead_lettered']} dead-lettered")
    if health.get("status") == "degraded":
        parts.append(f"degraded: {health.get('reason')}")
    updated = health.get("updated_at")
    if isinstance(updated, str):
        parts.append(f"updated {updated}")
    return ", ".join(parts)
