"""Ray worker nodes on this machine: ``ray start --address=<head> --block``, one per process
record (``ray-2``, ``ray-3``...), the stand-in for the machines of a real Ray cluster.

A worker node is a whole Ray node of its own: a raylet, its object store, its agents and the
workers (agent hosts) Ray places on it. Its session files live under ``data_dir/ray-N`` (or
a short /tmp link to it, as the head's). It binds the loopback address only and has bounded
resources: a few CPUs for Ray's accounting (an agent host reserves none) and a small object
store (the hosts pass no large objects).

When its raylet dies (a kill -9, a crash), ``ray start --block`` ends the node's other
processes and exits; the head's GCS declares the node dead after its health checks fail and
restarts the node's actors elsewhere (agent hosts have ``max_restarts=-1``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from hero.config import LOOPBACK
from infra._state import ProcessRecord
from infra.errors import ComponentError
from infra.models import RAY_WORKER_NAMES, RayWorkerName
from infra.ray_head import RayHead

__all__ = ["RayWorkerNode", "ray_worker_name", "ray_worker_names"]

_OBJECT_STORE_BYTES = 100 * 1024 * 1024  # Ray's floor is 75 MiB
_WORKER_CPUS = 2


def ray_worker_names(nodes: int) -> tuple[RayWorkerName, ...]:
    """The records of the worker nodes of a cluster of ``nodes`` (the head counts as one)."""
    if not 1 <= nodes <= len(RAY_WORKER_NAMES) + 1:
        raise ValueError(f"ray nodes must be 1..{len(RAY_WORKER_NAMES) + 1}, got {nodes}")
    return RAY_WORKER_NAMES[: nodes - 1]


def ray_worker_name(name: str) -> RayWorkerName:
    """``name`` as a worker node's record name (``ray-2``...), or ValueError."""
    for known in RAY_WORKER_NAMES:
        if name == known:
            return known
    raise ValueError(f"not a Ray worker node's name: {name!r}")


class RayWorkerNode(RayHead):
    """One worker node joining the head at ``head_address``.

    Its ``port`` is its dashboard agent's HTTP port: Ray's default (52365) is the head's, and
    two nodes on one machine cannot share it. Its other ports are Ray's choice (free ones).
    """

    stop_timeout = 10.0

    def __init__(
        self,
        data_dir: Path,
        name: RayWorkerName,
        head_address: str | None,
        port: int | None = None,
        *,
        host: str = LOOPBACK,
        num_cpus: int = _WORKER_CPUS,
    ) -> None:
        if name not in RAY_WORKER_NAMES:
            raise ComponentError("ray", f"not a Ray worker node's name: {name!r}")
        self.name = name
        super().__init__(data_dir, port, host=host, num_cpus=num_cpus)
        self.head_address = head_address

    @property
    def address(self) -> str | None:
        # Nothing to dial on a worker node: clients reach the cluster through the head.
        return None

    def _prepare(self) -> None:
        if self.head_address is None:
            raise ComponentError(self.name, "internal: started without the head's address")
        super()._prepare()

    def _command(self) -> list[str]:
        return [
            sys.executable, "-m", "infra._ray_worker", "start",
            "--address", str(self.head_address),
            "--block",
            "--node-ip-address", self.host,
            "--node-name", self.name,
            "--temp-dir", str(self.temp_dir),
            "--disable-usage-stats",
            "--num-cpus", str(self.num_cpus),
            "--object-store-memory", str(_OBJECT_STORE_BYTES),
            "--dashboard-agent-listen-port", str(self.port),
        ]  # fmt: skip

    def _env(self) -> dict[str, str]:
        env = super()._env()
        # Ray starts no worker node without it; infra._ray_worker keeps the head's loopback
        # address, and the node binds the --node-ip-address it is given.
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1"
        return env

    def _ready(self) -> bool:
        # `ray start` prints the mark once this node's raylet has registered with the GCS.
        return self._raylet_alive() and self._started_mark()

    def is_healthy(self) -> bool:
        return self.is_alive() and self._raylet_alive()

    def _extra_for_record(self) -> dict[str, str]:
        return {**super()._extra_for_record(), "head": str(self.head_address)}

    def adopt(self, record: ProcessRecord) -> None:
        super().adopt(record)
        self.head_address = record.extra.get("head", self.head_address)

    def detail(self) -> str:
        return f"Ray worker node of the head at {self.head_address}"
