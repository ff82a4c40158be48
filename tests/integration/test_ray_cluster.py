"""Agent hosts on a Ray cluster of two nodes (issue 14, point 5), on PostgreSQL + Apache Kafka.

``hero up --store postgres --broker kafka --ray-nodes 2`` with four agent hosts: the hosts
are spread over the head and the worker node. A market runs (farms and offtakers of its own
ids, served by the stack's own hosts); once offers flow, the worker node's raylet is killed
with SIGKILL. Ray declares the node dead (the stack's health checks are shortened here) and
restarts its hosts on the head; they rebuild from the store, and the market completes: no
duplicate contract, no node oversold, no leaked hold. Then ``hero up`` starts the worker
node again, the agents process moves two hosts back onto it, and the next round kills it
again: three kills. Each round prints its figures (takeover time, contracts, duplicates,
leaked holds).

In the production pass (a stack of the module's own, on a database of the session's
PostgreSQL); deselect with ``-m "not kafka"``.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from agents.runtime.__main__ import default_name_prefix
from agents.runtime.host import HostStats
from hero.domain import node as nodes
from hero.market.service import MarketService
from hero.store import EventStore, open_store
from infra import LocalStack, configure_ray_client
from infra._procfs import read_proc, running
from infra._state import StackState
from infra.models import RayWorkerName
from infra.ray_nodes import RayWorkerNode
from schemas import (
    ContractCreated,
    NegotiationAwarded,
    OfferMade,
    RfqIssued,
    new_id,
)
from tests._engines import FAILOVER_MARKS, stack_of_its_own
from tests._wait import wait_until
from tests.integration._crash_market import REPLICAS, register_farms, set_mandates
from tests.integration._isolated import CLOSED, Journal

pytestmark = FAILOVER_MARKS

KILLS = 3
SHARDS = 4  # two hosts per node
HEAD = "ray"
WORKER: RayWorkerName = "ray-2"
FARMS = 8  # one node each, two per region
OFFTAKERS = 12  # three per region: six replicas for eight slots, so holds compete
ROUND_S = 150.0  # one round, the worker node's restart and the hosts' move back included
HOLDS_END_S = 90.0  # firm holds expire 30 s after their RFQ's deadline, then are swept


@pytest.fixture(scope="module")
def cluster_stack(store_factory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with stack_of_its_own(
        "hero-ray-cluster-",
        store_factory().url,
        logs_to=tmp_path_factory.mktemp("ray-cluster") / "logs",  # they outlive the data dir
        ray_nodes=2,
        agent_shards=SHARDS,
        # A dead node is declared after 3 missed probes 0.5 s apart (defaults: 5 x 1 s).
        ray_health_check_period_ms=500,
        ray_health_check_failures=3,
    ) as launcher:
        yield launcher


def _host_stats(prefix: str) -> list[HostStats] | None:
    """Every host's stats, by actor name (a moved host is a new actor), or None."""
    try:
        hosts = [ray.get_actor(f"{prefix}-{shard}", namespace="hero") for shard in range(SHARDS)]
        return list(ray.get([host.stats.remote() for host in hosts], timeout=5))
    except Exception:  # a host restarting or moving
        return None


def _spread(prefix: str) -> list[HostStats] | None:
    stats = _host_stats(prefix)
    if stats is None or not all(host.caught_up for host in stats):
        return None
    on = Counter(host.node for host in stats)
    return stats if on == {HEAD: SHARDS // 2, WORKER: SHARDS // 2} else None


def _taken_over(prefix: str, moved: dict[int, int]) -> list[HostStats] | None:
    """All hosts on the head and caught up; those of the worker node in new processes."""
    stats = _host_stats(prefix)
    if stats is None:
        return None
    done = all(
        host.node == HEAD and host.caught_up and host.pid != moved.get(host.shard) for host in stats
    )
    return stats if done else None


class Round:
    """One round's market, read from the journal of the whole store."""

    def __init__(self, tag: str):
        self.tag = tag
        self.node_ids: list[str] = []
        self.offtakers: list[str] = []

    def start(self, service: MarketService) -> None:
        self.node_ids = register_farms(service, self.tag, FARMS)
        self.offtakers = set_mandates(service, self.tag, OFFTAKERS)

    def mine(self, journal: Journal, kind: type[RfqIssued] | type[ContractCreated]) -> list[Any]:
        """This round's RFQs or contracts (by their offtakers' ids)."""
        return [e for e in journal.of(kind) if e.offtaker_id.startswith(f"{self.tag}-")]

    def rfqs(self, journal: Journal) -> dict[str, RfqIssued]:
        return {e.negotiation_id: e for e in self.mine(journal, RfqIssued)}

    def open_negotiations(self, journal: Journal) -> set[str]:
        closed = {e.negotiation_id for e in journal.of(CLOSED)}
        return set(self.rfqs(journal)) - closed

    def settled(self, journal: Journal) -> bool:
        journal.refresh()
        per_offtaker = Counter(c.offtaker_id for c in self.mine(journal, ContractCreated))
        complete = all(per_offtaker[o] >= REPLICAS for o in self.offtakers)
        return complete and not self.open_negotiations(journal)

    def offered(self, journal: Journal) -> bool:
        journal.refresh()
        rfqs = self.rfqs(journal)
        return any(e.negotiation_id in rfqs for e in journal.of(OfferMade))

    def holds(self, store: EventStore) -> int:
        return sum(len(_node_state(store, node_id).holds) for node_id in self.node_ids)

    def check(self, journal: Journal, store: EventStore) -> dict[str, int]:
        """Every negotiation closed once; no contract twice; capacity never oversold."""
        journal.refresh()
        rfqs = self.rfqs(journal)
        closes = Counter(e.negotiation_id for e in journal.of(CLOSED) if e.negotiation_id in rfqs)
        contracts: list[ContractCreated] = self.mine(journal, ContractCreated)
        assert set(closes) == set(rfqs), f"not closed: {sorted(set(rfqs) - set(closes))}"
        assert set(closes.values()) == {1}, "a negotiation closed twice"
        duplicates = (
            len(contracts)
            - len({c.contract_id for c in contracts})
            + len(contracts)
            - len({(c.negotiation_id, c.offer_id) for c in contracts})
        )
        per_negotiation = Counter(c.negotiation_id for c in contracts)
        duplicates += sum(
            max(0, count - rfqs[nego].replicas) for nego, count in per_negotiation.items()
        )
        assert duplicates == 0
        assert Counter(c.offtaker_id for c in contracts) == dict.fromkeys(self.offtakers, REPLICAS)
        created = {c.contract_id for c in contracts}
        for award in journal.of(NegotiationAwarded):
            if award.negotiation_id in rfqs:
                assert set(award.contract_ids) <= created, f"award without contract: {award}"
        on_nodes: dict[str, set[str]] = defaultdict(set)
        for node_id in self.node_ids:
            state = _node_state(store, node_id)
            assert state.committed.fits_in(state.total), f"{node_id} oversold"
            on_nodes[node_id] = set(state.contracts)
        for contract in contracts:
            assert contract.contract_id in on_nodes[contract.node_id]
        assert sum(len(c) for c in on_nodes.values()) == len(contracts)
        return {
            "negotiations": len(rfqs),
            "contracts": len(contracts),
            "duplicates": duplicates,
            "lost": len(set(rfqs) - set(closes)),
        }


def _node_state(store: EventStore, node_id: str) -> nodes.NodeState:
    rows = store.read_stream(nodes.node_stream(node_id))
    return nodes.fold([row.envelope().decode() for row in rows])


def _worker(launcher: LocalStack) -> RayWorkerNode:
    state = StackState.load(launcher.data_dir)
    assert state is not None
    worker = RayWorkerNode(launcher.data_dir, WORKER, None)
    worker.adopt(state.processes[WORKER])
    return worker


def _prefix(launcher: LocalStack) -> str:
    return default_name_prefix(launcher.settings)


def _kill_round(
    launcher: LocalStack,
    current: Round,
    service: MarketService,
    journal: Journal,
    store: EventStore,
    kill: int,
) -> str:
    """Hosts spread, a market of the round's own, the worker node's raylet killed once offers
    flow; returns the round's figures once the market has completed and the worker node is
    back."""
    prefix = _prefix(launcher)
    began = time.monotonic()
    spread = wait_until(lambda: _spread(prefix), ROUND_S, "two hosts on each node", poll_s=0.1)
    moved = {h.shard: h.pid for h in spread if h.node == WORKER}
    stayed = {h.shard: h.pid for h in spread if h.node == HEAD}
    identities = [(pid, info.start_ticks) for pid in moved.values() if (info := read_proc(pid))]
    assert len(identities) == len(moved)
    current.start(service)
    wait_until(lambda: current.offered(journal), ROUND_S, "a first offer", poll_s=0.1)
    worker = _worker(launcher)
    raylet = worker.raylet_pid()
    assert raylet is not None
    os.kill(raylet, signal.SIGKILL)
    killed_at = time.monotonic()
    in_flight = len(current.open_negotiations(journal))
    contracts_at_kill = len(current.mine(journal, ContractCreated))

    after = wait_until(
        lambda: _taken_over(prefix, moved), ROUND_S, "the hosts on the head", poll_s=0.1
    )
    takeover_s = time.monotonic() - killed_at
    # The head's hosts ran on; the worker node's died with it, none lingers.
    assert {h.shard: h.pid for h in after if h.shard in stayed} == stayed
    assert not [pid for pid, ticks in identities if running(pid, ticks)]
    reconstructed = sum(1 for h in after if h.shard in moved and h.reconstructed)
    wait_until(
        lambda: not worker.remaining_processes(),
        30,
        "the worker node's processes to end",
        poll_s=0.1,
    )

    wait_until(lambda: current.settled(journal), ROUND_S, "every contract of the round", poll_s=0.1)
    settled_s = time.monotonic() - killed_at
    counts = current.check(journal, store)
    held = current.holds(store)

    report = launcher.up()  # starts the dead worker node again
    assert not report.already_running
    assert {c.name: c.state for c in report.components}[WORKER] == "up"
    return (
        f"worker raylet pid {raylet} killed with {in_flight} negotiations"
        f" in flight, {contracts_at_kill} contracts; its hosts {sorted(moved)} on the head"
        f" again after {takeover_s:.1f} s ({reconstructed} restarted by Ray);"
        f" settled {settled_s:.1f} s after the kill: {counts['negotiations']}"
        f" negotiations, {counts['contracts']} contracts, lost {counts['lost']},"
        f" duplicates {counts['duplicates']}, {held} holds still to expire;"
        f" round {time.monotonic() - began:.1f} s"
    )


def test_killing_the_worker_nodes_raylet_moves_its_hosts_to_the_head_and_the_market_completes(
    cluster_stack: LocalStack,
) -> None:
    launcher = cluster_stack
    began = time.monotonic()
    statuses = {c.name: c for c in launcher.status()}
    assert statuses[WORKER].state == "up"
    assert statuses[WORKER].pid != statuses["ray"].pid

    def spread_in_status() -> bool:  # the agents process moves a host if Ray placed it badly
        agents = {c.name: c for c in launcher.status()}["agents"]
        spread = r"hosts per Ray node: ray \[\d, \d\]; ray-2 \[\d, \d\]"
        return re.search(spread, agents.detail or "") is not None

    wait_until(spread_in_status, 60, "hero status to show two hosts on each node", poll_s=0.1)
    endpoints = launcher.endpoints()
    assert endpoints.broker == "kafka"
    assert endpoints.store_url.startswith("postgresql://")
    configure_ray_client(endpoints.ray_env)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address=endpoints.ray_address, namespace="hero", log_to_driver=False)
    store = open_store(endpoints.store_url)
    prefix = _prefix(launcher)
    journal = Journal(store)
    service = MarketService(store)
    run = new_id("t")[-8:]
    rounds: list[Round] = []
    try:
        for kill in range(1, KILLS + 1):
            current = Round(f"{run}k{kill}")
            rounds.append(current)
            figures = _kill_round(launcher, current, service, journal, store, kill)
            print(f"\nkill {kill}: {figures}")

        # No leaked hold: every hold of every round ends (contract, release or expiry).
        def holds_left() -> bool:
            return sum(r.holds(store) for r in rounds) == 0

        wait_until(holds_left, HOLDS_END_S, "every hold to end", poll_s=0.1)
        for each in rounds:
            each.check(journal, store)
        final = wait_until(lambda: _spread(prefix), ROUND_S, "the hosts spread again", poll_s=0.1)
        print(
            f"\nray cluster: {KILLS} kills of the worker node's raylet; leaked holds 0;"
            f" hosts at the end {dict(Counter(h.node for h in final))};"
            f" commands ok {sum(h.commands_ok for h in final)} (since the last move/restart);"
            f" test {time.monotonic() - began:.1f} s"
        )
    finally:
        store.close()
        ray.shutdown()
