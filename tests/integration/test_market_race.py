"""On the real stack: 100 offtaker agents race for 10 nodes through the agent hosts on Ray."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from hero.domain import node as nodes
from hero.market.service import MarketService
from hero.store import open_store
from schemas import (
    ContractCreated,
    Mandate,
    Money,
    NegotiationAwarded,
    NegotiationExpired,
    NegotiationFailed,
    OfferDeclined,
    RfqIssued,
    SetOfftakerMandate,
    WorkloadSpec,
    new_id,
)
from tests.integration._crash_market import REPLICA, register_farms

pytestmark = pytest.mark.integration

NODES = 10
OFFTAKERS = 100
CLOSED = (NegotiationAwarded, NegotiationFailed, NegotiationExpired)


def _setup(service: MarketService, tag: str, region: str) -> None:
    register_farms(service, tag, NODES, region)
    for i in range(OFFTAKERS):
        mandate = Mandate(
            workloads=[
                WorkloadSpec(workload_id="app", resources=REPLICA, replicas=1, regions=[region])
            ],
            budget_month=Money.of("1000", "USD"),
            max_price_cu_hour=Money.of("0.05", "USD"),
            offer_window_s=Decimal("0.5"),
            offers_per_replica=3,
        )
        offtaker = f"{tag}-offtaker-{i}"
        service.handle(
            SetOfftakerMandate(
                command_id=f"{offtaker}:mandate", offtaker_id=offtaker, mandate=mandate
            )
        )


def _events(store, tag: str) -> list:  # type: ignore[no-untyped-def]
    found = []
    position = 0
    while rows := store.read_all(position + 1, 5000):
        for row in rows:
            position = row.position
            if tag in row.stream:
                found.append(row.envelope().decode())
    return found


async def test_hundred_offtakers_race_for_ten_nodes(stack) -> None:
    tag = new_id("race")[-10:]
    region = f"race-{tag}"
    store = open_store(stack.settings.effective_store_url)
    _setup(MarketService(store), tag, region)

    capacity = NODES * 4
    deadline = asyncio.get_running_loop().time() + 120
    while True:
        events = _events(store, tag)
        contracts = [e for e in events if isinstance(e, ContractCreated)]
        rfqs = {e.negotiation_id for e in events if isinstance(e, RfqIssued)}
        closed = {e.negotiation_id for e in events if isinstance(e, CLOSED)}
        if len(contracts) >= capacity and rfqs == closed:
            break
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"not settled: {len(contracts)} contracts, {len(rfqs - closed)} open")
        await asyncio.sleep(0.5)  # polling the store; the agents run in other processes

    # Committed never exceeds capacity, on any node, and nothing is held any more.
    for i in range(NODES):
        rows = store.read_stream(nodes.node_stream(f"{tag}-node-{i}"))
        state = nodes.fold([row.envelope().decode() for row in rows])
        assert state.committed.fits_in(state.total)
        assert state.committed == REPLICA.times(4)
    assert len(contracts) == capacity
    assert len({c.contract_id for c in contracts}) == capacity
    assert len({c.offtaker_id for c in contracts}) == capacity  # one replica each
    # Every negotiation ended; declines and failures say why.
    assert rfqs == closed
    declines = [e for e in events if isinstance(e, OfferDeclined)]
    assert declines, "a full node must decline, not stay silent"
    assert all(d.reasons for d in declines)
    failures = [e for e in events if isinstance(e, NegotiationFailed)]
    assert all(f.reason for f in failures)
    print(
        f"race: {len(contracts)} contracts, {len(rfqs)} negotiations, "
        f"{len(declines)} declines, {len(failures)} failed"
    )
