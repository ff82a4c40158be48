"""HERO's own processes: the relay and the agent hosts, and the base of the gateway, treasury
and the Faust workers (commands, usage) -- each writes ``run/<name>.health`` with its pid,
which is how the launcher knows it is ready and how ``hero status`` reads what it does.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from hero.config import LOOPBACK, HeroSettings
from infra._state import ProcessRecord
from infra.errors import ComponentError
from infra.models import Endpoints
from infra.ports import tcp_answers
from infra.processes import ManagedProcess, _PortedProcess, settings_env

__all__ = ["AGENTS_COMMAND", "RELAY_COMMAND", "AgentsProcess", "RelayProcess"]

RELAY_COMMAND: tuple[str, ...] = (sys.executable, "-m", "hero.relay")
"""How the relay is run; LocalStack and RelayProcess take a ``command`` to replace it."""
AGENTS_COMMAND: tuple[str, ...] = (sys.executable, "-m", "agents.runtime")
"""How the agent hosts are run, before ``--shards N``; AgentsProcess takes a ``command``."""


class _Reporting(ManagedProcess):
    """A HERO process that writes ``run/<health_file>`` with its pid: that file is how the
    launcher knows it is ready, and how ``hero status`` reads what it is doing."""

    health_file: ClassVar[str]

    @property
    def address(self) -> str | None:
        return None

    @property
    def health_path(self) -> Path:
        # Replica 1 keeps the historical name; the others write their own beside it.
        name = self.health_file if self.replica == 1 else f"{self.label}.health"
        return self.data_dir / "run" / name

    def health(self) -> dict[str, Any] | None:
        """The last report, if this very process wrote it."""
        return _read_health(self.health_path, self._pid)

    def _prepare(self) -> None:
        super()._prepare()
        # A report left by an earlier process must not pass for this one's.
        self.health_path.unlink(missing_ok=True)


def _status_detail(parts: list[str], health: dict[str, Any]) -> str:
    """``parts`` with ``degraded: REASON`` while degraded and when the report was written."""
    if health.get("status") == "degraded":
        parts.append(f"degraded: {health.get('reason')}")
    updated = health.get("updated_at")
    if isinstance(updated, str):
        parts.append(f"updated {updated}")
    return ", ".join(parts)


class _Served(_Reporting, _PortedProcess):
    """A HERO process serving HTTP on its port (``command --port N``): ready once it reported
    and its port answers; the command it was started with is kept in the stack's record so
    a later ``hero status`` or ``hero down`` knows it."""

    command: tuple[str, ...]

    @property
    def address(self) -> str | None:
        return f"{self.host}:{self.port}" if self.port is not None else None

    @property
    def url(self) -> str | None:
        return f"http://{self.host}:{self.port}" if self.port is not None else None

    def _command(self) -> list[str]:
        return [*self.command, "--port", str(self.port)]

    def _ready(self) -> bool:
        return (
            self.port is not None
            and self.health() is not None
            and tcp_answers(self.host, self.port)
        )

    def _extra_for_record(self) -> dict[str, str]:
        # Nothing else is kept: a URL in the environment may carry a password.
        return {"command": json.dumps(list(self.command))}

    def adopt(self, record: ProcessRecord) -> None:
        super().adopt(record)
        if "command" in record.extra:
            self.command = tuple(json.loads(record.extra["command"]))

    def _after_stop(self) -> None:
        self.health_path.unlink(missing_ok=True)


class _FaustWorker(_Reporting):
    """A Faust worker of the stack (``python -m streams NAME``): it needs the broker and the
    store, has no port, and is ready once it reported; its command and bootstrap are kept in
    the stack's record so a later ``hero status`` or ``hero down`` knows it."""

    # On SIGTERM Faust finishes the batch in hand, commits what was acked, leaves the group.
    stop_timeout = 10.0
    default_command: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        settings: HeroSettings,
        bootstrap: str = "",
        *,
        command: Sequence[str] | None = None,
        replica: int = 1,
    ) -> None:
        super().__init__(settings.data_dir, host=LOOPBACK, replica=replica)
        self.settings = settings
        # Needed to start it only: a process adopted from stack.json is probed and stopped.
        self.bootstrap = bootstrap
        self.command = tuple(command) if command is not None else self.default_command

    def _command(self) -> list[str]:
        return list(self.command)

    def _worker_env(self) -> dict[str, str]:
        """What this worker needs in its environment beyond the broker and the store."""
        return {}

    def _env(self) -> dict[str, str]:
        env = settings_env(self.settings, super()._env())
        env.update(
            {
                "HERO_DATA_DIR": str(self.data_dir),
                # Explicit: stack.json is complete only once `up` returns, after this starts.
                "HERO_KAFKA_BOOTSTRAP": self.bootstrap,
                "HERO_STORE_URL": self.settings.effective_store_url,
                "PYTHONUNBUFFERED": "1",
                **self._worker_env(),
            }
        )
        return env

    def _ready(self) -> bool:
        return self.health() is not None

    def _extra_for_record(self) -> dict[str, str]:
        # Nothing else is kept: a URL in the environment may carry a password.
        return {"bootstrap": self.bootstrap, "command": json.dumps(list(self.command))}

    def adopt(self, record: ProcessRecord) -> None:
        super().adopt(record)
        self.bootstrap = record.extra.get("bootstrap", self.bootstrap)
        if "command" in record.extra:
            self.command = tuple(json.loads(record.extra["command"]))

    def _after_stop(self) -> None:
        self.health_path.unlink(missing_ok=True)


class RelayProcess(_Reporting):
    """One relay (store -> broker); ready once it writes ``run/relay.health`` (replica N > 1:
    ``relay-N.health``) with its pid, as the active relay or as a standby."""

    name = "relay"
    health_file = "relay.health"

    def __init__(
        self,
        settings: HeroSettings,
        bootstrap: str,
        *,
        command: Sequence[str] | None = None,
        purge_on_refill: bool = False,
        replica: int = 1,
    ) -> None:
        super().__init__(settings.data_dir, replica=replica)
        self.settings = settings
        self.bootstrap = bootstrap
        # Only a broker the stack owns may have its topics deleted before a refill.
        self.purge_on_refill = purge_on_refill
        self.command = tuple(command) if command is not None else RELAY_COMMAND

    def _command(self) -> list[str]:
        return list(self.command)

    def _env(self) -> dict[str, str]:
        env = settings_env(self.settings, super()._env())
        env["HERO_DATA_DIR"] = str(self.data_dir)
        env["HERO_KAFKA_BOOTSTRAP"] = self.bootstrap
        env["HERO_RELAY_REPLICA"] = str(self.replica)
        if self.purge_on_refill:
            env["HERO_RELAY_PURGE_ON_REFILL"] = "true"
        return env

    def _ready(self) -> bool:
        return self.health() is not None

    def _extra_for_record(self) -> dict[str, str]:
        return {
            "bootstrap": self.bootstrap,
            "command": json.dumps(list(self.command)),
            "replica": str(self.replica),
            "purge_on_refill": "true" if self.purge_on_refill else "false",
        }

    def _after_stop(self) -> None:
        self.health_path.unlink(missing_ok=True)


class AgentsProcess(_Reporting):
    """The agent hosts on Ray (``python -m agents.runtime --shards N``).

    Ready once it writes ``run/agents.health`` with its pid: it does so when every host
    answers and has caught up with the store, then refreshes the report every ~2 s. It is
    the Ray driver that owns the hosts: on SIGTERM it kills them and leaves Ray. Were it
    killed instead, Ray ends the actors of a dead owner, and the Ray head's stop ends any
    worker left (they run in the head's process tree).
    """

    name = "agents"
    health_file = "agents.health"
    # AgentCluster.stop gives the hosts 5 s to finish the commands in flight, then kills them.
    stop_timeout = 15.0

    def __init__(
        self,
        settings: HeroSettings,
        endpoints: Endpoints | None = None,
        *,
        command: Sequence[str] | None = None,
    ) -> None:
        super().__init__(settings.data_dir)
        self.settings = settings
        # Needed to start it only: a process adopted from stack.json is probed and stopped.
        self.endpoints = endpoints
        self.command = (
            tuple(command)
            if command is not None
            else (*AGENTS_COMMAND, "--shards", str(settings.agent_shards))
        )

    def _prepare(self) -> None:
        if self.endpoints is None:
            raise ComponentError(self.name, "internal: started without the stack's endpoints")
        super()._prepare()

    def _command(self) -> list[str]:
        return list(self.command)

    def _env(self) -> dict[str, str]:
        endpoints = self.endpoints
        if endpoints is None:
            raise ComponentError(self.name, "internal: started without the stack's endpoints")
        env = settings_env(self.settings, super()._env())
        # A RAY_ADDRESS meant for other clients must not steer this one.
        env.pop("RAY_ADDRESS", None)
        # What a client of the embedded, loopback-only head needs (empty for an external Ray):
        # set here, since LocalStack.endpoints() in the child sees every piece as "external".
        env.update(endpoints.ray_env)
        env.update(
            {
                "HERO_DATA_DIR": str(self.data_dir),
                # Explicit: stack.json is complete only once `up` returns, after this starts.
                "HERO_KAFKA_BOOTSTRAP": endpoints.kafka_bootstrap,
                "HERO_REDIS_URL": endpoints.redis_url,
                "HERO_RAY_ADDRESS": endpoints.ray_address,
                "HERO_STORE_URL": endpoints.store_url,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _ready(self) -> bool:
        return self.health() is not None

    def _extra_for_record(self) -> dict[str, str]:
        return {"command": json.dumps(list(self.command))}

    def _after_stop(self) -> None:
        self.health_path.unlink(missing_ok=True)


def _read_health(path: Path, pid: int | None) -> dict[str, Any] | None:
    """A JSON health report, only if the process ``pid`` wrote it (not a predecessor)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or pid is None or data.get("pid") != pid:
        return None
    return data
