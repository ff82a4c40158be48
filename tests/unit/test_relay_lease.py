"""The outbox relay under a lease (memory store, memory lease, a list as the broker): it
publishes only while the lease is its own and stops with LeaseLost the moment it is not."""

from __future__ import annotations

import asyncio

import pytest

from hero.domain.clock import ManualClock
from hero.store import (
    ANY_VERSION,
    LeaseLost,
    MemoryCheckpointStore,
    MemoryEventStore,
    MemoryLease,
    OutboxRelay,
)
from tests.unit.store_contract import new_event
from tests.unit.test_outbox import ListPublisher

TIMEOUT_S = 5.0


def _store_with(events: int) -> MemoryEventStore:
    clock = ManualClock()
    store = MemoryEventStore(clock)
    for i in range(events):
        store.append(f"s{i % 3}", ANY_VERSION, [new_event(clock)], f"cmd-{i}")
    return store


async def test_a_relay_holding_the_lease_publishes_and_one_without_it_stops_at_once():
    store, checkpoints = _store_with(6), MemoryCheckpointStore()
    lease, rival = MemoryLease("relay-unit-a"), MemoryLease("relay-unit-a")
    assert lease.try_acquire()
    publisher = ListPublisher()
    relay = OutboxRelay(store, checkpoints, publisher, batch_size=2, holds_lease=lease.held)
    assert await relay.publish_batch() == 2
    lease.release()
    assert rival.try_acquire()  # the standby takes over
    with pytest.raises(LeaseLost, match="lost its lease at position 2"):
        await relay.publish_batch()
    assert publisher.positions == [1, 2]
    assert checkpoints.load("relay") == 2
    rival.release()


async def test_run_ends_with_lease_lost_instead_of_retrying():
    store, checkpoints = _store_with(3), MemoryCheckpointStore()
    publisher = ListPublisher()
    relay = OutboxRelay(store, checkpoints, publisher, holds_lease=lambda: False)
    with pytest.raises(LeaseLost):
        await asyncio.wait_for(relay.run(asyncio.Event()), TIMEOUT_S)
    assert publisher.positions == []
