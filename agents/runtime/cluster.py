"""A set of agent hosts on Ray: start N shards, read their stats, stop them.

The hosts are spread over the Ray cluster's nodes: host ``i`` asks for node ``i mod n`` (the
driver's node first) with a *soft* node affinity, so when that node dies Ray restarts the host
on any node alive (hosts have ``max_restarts=-1``); Ray may also place it elsewhere when that
node is busy starting workers. A restarted host stays where Ray put it;
:meth:`AgentCluster.rebalance` moves hosts back onto a node that joined (or came back), one
at a time.

The driver connects with ``infra.configure_ray_client(endpoints.ray_env)`` first: for the
embedded, loopback-only Ray head that keeps the client (and the workers it causes) on
127.0.0.1 and stops Ray from writing a token under ``~/.ray``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, fields
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from agents.roster import Roster
from agents.runtime.actor import AgentHost, MarketFactory
from agents.runtime.host import HostOptions, HostStats
from agents.runtime.sink import SinkFactory
from hero.config import HeroSettings
from infra import Endpoints, configure_ray_client

__all__ = ["AgentCluster", "ClusterStats", "alive_nodes", "next_move"]

log = logging.getLogger(__name__)

_SUMMED = [
    f.name
    for f in fields(HostStats)
    if f.type in ("int", int)
    and f.name not in ("shard", "shards", "pid", "catch_up_position", "max_position")
]
_NAME_FREED_S = 30.0
"""How long a moved host's successor waits for Ray to free the name of the one it replaces."""


@dataclass(frozen=True)
class ClusterStats:
    hosts: list[HostStats]

    @property
    def caught_up(self) -> bool:
        return all(host.caught_up for host in self.hosts)

    @property
    def agents(self) -> int:
        return sum(host.agents for host in self.hosts)

    @property
    def agents_by_kind(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for host in self.hosts:
            total.update(host.agents_by_kind)
        return dict(total)

    def total(self, name: str) -> int:
        """The sum of one counter (``commands_ok``, ``events_live``...) over the hosts."""
        return sum(int(getattr(host, name)) for host in self.hosts)

    @property
    def hosts_by_node(self) -> dict[str, list[int]]:
        """The hosts (shards) on each Ray node, by node name (``ray``, ``ray-2``...)."""
        on_node: dict[str, list[int]] = {}
        for host in sorted(self.hosts, key=lambda h: h.shard):
            on_node.setdefault(host.node, []).append(host.shard)
        return on_node

    def as_dict(self) -> dict[str, Any]:
        totals = {name: self.total(name) for name in _SUMMED}
        weighted = sum(h.memory_per_agent_bytes * h.agents for h in self.hosts)
        totals["memory_per_agent_bytes"] = weighted // self.agents if self.agents else 0
        return {
            "caught_up": self.caught_up,
            "hosts_by_node": self.hosts_by_node,
            "agents_by_kind": self.agents_by_kind,
            **totals,
            "hosts": [host.as_dict() for host in self.hosts],
        }


def next_move(hosts: list[HostStats], nodes: list[str]) -> tuple[int, str] | None:
    """(shard, node id): the host to move from the busiest of ``nodes`` to the idlest, when
    they differ by two hosts or more; None when the hosts are spread, or when a host still
    reports a node not in ``nodes`` (Ray has not restarted it yet)."""
    if len(nodes) < 2:
        return None
    on_node: dict[str, list[int]] = {node: [] for node in nodes}
    for host in hosts:
        if host.node_id not in on_node:
            return None
        on_node[host.node_id].append(host.shard)
    busiest = max(nodes, key=lambda node: len(on_node[node]))
    idlest = min(nodes, key=lambda node: len(on_node[node]))
    if len(on_node[busiest]) - len(on_node[idlest]) < 2:
        return None
    return max(on_node[busiest]), idlest


def alive_nodes() -> list[str]:
    """Ids of the Ray nodes alive: the driver's first, then by name."""
    here = ray.get_runtime_context().get_node_id()
    alive = [node for node in ray.nodes() if node.get("Alive")]  # type: ignore[no-untyped-call]
    alive.sort(key=lambda node: (node["NodeID"] != here, str(node.get("NodeName", ""))))
    return [str(node["NodeID"]) for node in alive]


class AgentCluster:
    """``shards`` named hosts, ``{name_prefix}-{i}``, owned by this driver (not detached)."""

    def __init__(
        self,
        settings: HeroSettings,
        endpoints: Endpoints,
        shards: int = 2,
        *,
        market_factory: MarketFactory | None = None,
        sink_factory: SinkFactory | None = None,
        options: HostOptions | None = None,
        name_prefix: str = "hero-agent-host",
        roster: Roster | None = None,
    ):
        if shards < 1:
            raise ValueError(f"shards must be >= 1, got {shards}")
        self.shards = shards
        self.endpoints = endpoints
        # The hosts use exactly the pieces the endpoints name, embedded or external.
        self.settings = settings.model_copy(
            update={
                "kafka_bootstrap": endpoints.kafka_bootstrap,
                "store_url": endpoints.store_url,
                "ray_address": endpoints.ray_address,
            }
        )
        self._market_factory = market_factory
        self._roster = roster
        self._sink_factory = sink_factory
        self._options = options
        self._prefix = name_prefix
        self._hosts: list[Any] = []
        self._owns_ray = False

    @property
    def hosts(self) -> list[Any]:
        return list(self._hosts)

    def start(self, timeout_s: float = 60.0) -> AgentCluster:
        """Connect to Ray, start the hosts and wait until each answers (not until caught up)."""
        configure_ray_client(self.endpoints.ray_env)
        if not ray.is_initialized():
            ray.init(address=self.endpoints.ray_address, namespace="hero", log_to_driver=False)
            self._owns_ray = True
        try:
            nodes = alive_nodes()
            for shard in range(self.shards):
                self._hosts.append(self._create(shard, nodes[shard % len(nodes)]))
            ray.get([host.ping.remote() for host in self._hosts], timeout=timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info("started %d agent hosts on %d Ray nodes", self.shards, len(nodes))
        return self

    def _create(self, shard: int, node_id: str) -> Any:
        return AgentHost.options(
            name=self.host_name(shard),
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=True),
        ).remote(
            self.settings,
            shard,
            self.shards,
            market_factory=self._market_factory,
            roster=self._roster,
            sink_factory=self._sink_factory,
            options=self._options,
        )

    def host_name(self, shard: int) -> str:
        """The Ray actor name of host ``shard`` (namespace ``hero``)."""
        return f"{self._prefix}-{shard}"

    def rebalance(self, stats: ClusterStats, timeout_s: float = 60.0) -> int | None:
        """Move one host from the busiest node alive to the idlest, if they differ by two or
        more hosts (a node joined, or came back after Ray restarted its hosts elsewhere).

        The host stops gracefully (its commands in flight finish), then a new host of the same
        shard starts on the idle node and rebuilds from the store, as a restarted one does.
        Returns the shard moved, or None.
        """
        move = next_move(stats.hosts, alive_nodes()) if self.shards > 1 else None
        if move is None:
            return None
        shard, node_id = move
        self._move(shard, node_id, timeout_s)
        return shard

    def _move(self, shard: int, node_id: str, timeout_s: float) -> None:
        old = self._hosts[shard]
        try:
            ray.get(old.stop.remote(), timeout=5.0)
        except Exception as error:  # dead or slow: the kill ends it all the same
            log.warning("agent host %d did not stop before its move: %r", shard, error)
        ray.kill(old, no_restart=True)
        deadline = time.monotonic() + _NAME_FREED_S
        while True:
            try:
                new = self._create(shard, node_id)
                break
            except ValueError:  # the old host's name is freed once Ray has seen it die
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._hosts[shard] = new
        ray.get(new.ping.remote(), timeout=timeout_s)
        log.info("moved agent host %d to Ray node %s", shard, node_id)

    def stats(self, timeout_s: float = 30.0) -> ClusterStats:
        return ClusterStats(ray.get([h.stats.remote() for h in self._hosts], timeout=timeout_s))

    async def stats_async(self) -> ClusterStats:
        return ClusterStats(list(await asyncio.gather(*(h.stats.remote() for h in self._hosts))))

    def pids(self, timeout_s: float = 30.0) -> list[int]:
        return list(ray.get([h.pid.remote() for h in self._hosts], timeout=timeout_s))

    def wait_caught_up(self, timeout_s: float = 120.0) -> ClusterStats:
        deadline = time.monotonic() + timeout_s
        while True:
            stats = self.stats()
            if stats.caught_up:
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"agent hosts not caught up after {timeout_s}s: {stats}")
            time.sleep(0.1)

    def stop(self, graceful_s: float = 5.0) -> None:
        """Stop the hosts this cluster started, then leave Ray if this cluster joined it.

        Each host first gets ``graceful_s`` to finish the commands it is sending (a command
        cut short is harmless -- a restarted host decides it again under the same id -- but
        a clean stop leaves less to redo); then it is killed without restart.
        """
        hosts, self._hosts = self._hosts, []
        if hosts and graceful_s > 0:
            try:
                ray.get([host.stop.remote() for host in hosts], timeout=graceful_s)
            except Exception as error:  # a host dead or slow: the kill below ends it
                log.warning("agent hosts did not stop within %.1fs: %r", graceful_s, error)
        for host in hosts:
            try:
                ray.kill(host, no_restart=True)
            except Exception as error:  # already gone
                log.debug("killing an agent host: %r", error)
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
            self._owns_ray = False

    def __enter__(self) -> AgentCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
