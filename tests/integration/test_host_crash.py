"""Kill -9 of one agent host mid-negotiation: Ray restarts it, negotiations complete, no
duplicate contract.

The test runs a market of its own, isolated from the session's stack (whose agent hosts
follow the stack's store and broker): its own SQLite store, its own broker, a relay between
them in this process, and two agent hosts of its own on the stack's Ray (the production
market and sink). Farms and offtakers are spread over four regions so each RFQ invites the
farms of one region; nodes are small enough that holds compete, and a crash leaves work
half done on the killed host's side.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from agents.runtime.cluster import AgentCluster
from agents.runtime.routing import shard_of
from hero.domain import node as nodes
from hero.market.service import MarketService
from schemas import (
    ContractCreated,
    NegotiationAwarded,
    OfferMade,
    RfqIssued,
    new_id,
)
from tests.integration._crash_market import REPLICAS, register_farms, set_mandates
from tests.integration._isolated import CLOSED, Journal, isolated_market, until

pytestmark = pytest.mark.integration

FARMS = 12  # one node each, three per region
OFFTAKERS = 20  # five per region
BUDGET_S = 55.0  # the whole test, set-up included


async def test_a_host_killed_mid_negotiation_restarts_and_no_contract_is_doubled(
    stack: Any, broker_factory: Any, store_factory: Any, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + BUDGET_S
    tag = new_id("t")[-10:]

    # An isolated market: the stack's agent hosts never see these events, nor ours theirs.
    async with isolated_market(stack, broker_factory, store_factory) as market:
        store = market.store
        service = MarketService(store)
        node_ids = register_farms(service, tag, FARMS)
        journal = Journal(store)
        cluster = AgentCluster(
            market.settings(),
            market.endpoints(),
            shards=2,
            name_prefix=f"test-crash-{tag}",
        )
        try:
            cluster.start()

            async def caught_up() -> bool:
                return (await cluster.stats_async()).caught_up

            await until(caught_up, "the hosts to catch up", deadline)
            victim = cluster.hosts[0]
            old_pid = await victim.pid.remote()

            offtakers = set_mandates(service, tag, OFFTAKERS)
            owned = [o for o in offtakers if shard_of(f"offtaker:{o}", 2) == 0]
            assert owned, "host 0 must own some offtakers for the kill to matter"

            # Kill host 0 as soon as offers flow: RFQs are open, holds taken, nothing accepted.
            await until(
                lambda: journal.refresh() and journal.of(OfferMade), "a first offer", deadline
            )
            os.kill(old_pid, signal.SIGKILL)
            killed_at = loop.time()
            journal.refresh()
            in_flight = len(journal.open_negotiations())
            contracts_at_kill = len(journal.of(ContractCreated))

            async def restarted() -> bool:
                try:  # Ray holds the calls (max_task_retries=-1) until the new process answers
                    pid = await asyncio.wait_for(victim.pid.remote(), 5)
                    stats = await asyncio.wait_for(victim.stats.remote(), 5)
                except Exception:
                    return False
                return bool(pid != old_pid and stats.caught_up and stats.reconstructed)

            await until(restarted, "Ray to restart host 0 and the host to catch up", deadline)
            recovery_s = loop.time() - killed_at
            new_pid = await victim.pid.remote()

            def settled() -> bool:
                journal.refresh()
                per_offtaker = Counter(c.offtaker_id for c in journal.of(ContractCreated))
                complete = all(per_offtaker[o] >= REPLICAS for o in offtakers)
                return complete and not journal.open_negotiations()

            await until(
                settled, "every offtaker's contracts and every negotiation closed", deadline
            )
            settled_s = loop.time() - killed_at
            stats = await cluster.stats_async()
        finally:
            cluster.stop()

    try:
        events = journal.refresh()
        rfqs = {e.negotiation_id: e for e in journal.of(RfqIssued)}
        closes = Counter(e.negotiation_id for e in journal.of(CLOSED))
        contracts: list[ContractCreated] = journal.of(ContractCreated)

        # Every negotiation ended, once.
        assert set(closes) == set(rfqs), f"not closed: {sorted(set(rfqs) - set(closes))}"
        assert set(closes.values()) == {1}, "a negotiation closed twice"
        # No contract twice: not by id, not for one offer, not beyond a negotiation's replicas.
        assert len({c.contract_id for c in contracts}) == len(contracts)
        assert len({(c.negotiation_id, c.offer_id) for c in contracts}) == len(contracts)
        per_negotiation = Counter(c.negotiation_id for c in contracts)
        for negotiation_id, count in per_negotiation.items():
            assert count <= rfqs[negotiation_id].replicas
        for contract in contracts:
            assert contract.offtaker_id == rfqs[contract.negotiation_id].offtaker_id
        # Every awarded contract exists on its node.
        created = {c.contract_id for c in contracts}
        for award in journal.of(NegotiationAwarded):
            assert set(award.contract_ids) <= created, f"award without contract: {award}"
        # Each offtaker got exactly its replicas: none doubled by a repeated decision.
        per_offtaker = Counter(c.offtaker_id for c in contracts)
        assert per_offtaker == dict.fromkeys(offtakers, REPLICAS)
        # Capacity: committed never above total; the node's contracts are the contracts.
        on_nodes: dict[str, set[str]] = defaultdict(set)
        held = 0
        for node_id in node_ids:
            rows = store.read_stream(nodes.node_stream(node_id))
            state = nodes.fold([row.envelope().decode() for row in rows])
            assert state.committed.fits_in(state.total), f"{node_id} over-committed"
            on_nodes[node_id] = set(state.contracts)
            held += len(state.holds)
        for contract in contracts:
            assert contract.contract_id in on_nodes[contract.node_id]
        assert sum(len(c) for c in on_nodes.values()) == len(contracts)

        print(
            f"\nhost crash: killed host 0 (pid {old_pid} -> {new_pid}, owns {len(owned)}"
            f" offtakers) with {in_flight} negotiations in flight and {contracts_at_kill}"
            f" contracts; restarted and caught up in {recovery_s:.1f}s; all settled"
            f" {settled_s:.1f}s after the kill; {len(rfqs)} negotiations"
            f" ({Counter(type(e).__name__ for e in journal.of(CLOSED))}),"
            f" {len(contracts)} contracts, {held} holds left to expire,"
            f" {len(events)} events; commands: {stats.total('commands_ok')} ok,"
            f" {stats.total('commands_duplicate')} duplicate,"
            f" {stats.total('commands_rejected')} rejected {stats.hosts[0].rejected_by_reason}"
            f" / {stats.hosts[1].rejected_by_reason}; test {loop.time() - started:.1f}s"
        )
    finally:
        store.close()
