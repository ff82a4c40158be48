"""The command processor as a stack component: ``python -m streams commands``, a Faust worker.

It consumes ``hero.commands`` as group ``hero-commands`` and applies each command through the
market service to the event store, once by its command id (``streams.commands``). It needs
the broker and the store, so it starts next to the relay. Ready once ``run/commands.health``
names its pid (it writes that from its start, then every quarter second).
"""

from __future__ import annotations

import sys

from infra.hero_processes import _FaustWorker, _status_detail

__all__ = ["COMMANDS_COMMAND", "CommandsProcess", "commands_detail"]

COMMANDS_COMMAND: tuple[str, ...] = (sys.executable, "-m", "streams", "commands")


class CommandsProcess(_FaustWorker):
    """Commands from Kafka in, the market's events (or a rejection) in the store; no port."""

    name = "commands"
    health_file = "commands.health"
    default_command = COMMANDS_COMMAND


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
    return _status_detail(parts, health)
