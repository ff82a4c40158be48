"""An agent host restarted with a snapshot of its shard beside the store: its catch-up reads
only the store after the snapshot (counted) and ends holding what a host that read the whole
store holds; a corrupt newest snapshot is logged and the whole store read. On the session's
store engine (SQLite, or PostgreSQL on the production pass); the catch-up reads the store
only, so no broker is involved."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agents.local import LocalMarket
from agents.market import MarketView
from agents.runtime import AgentHostCore, KafkaFeed, StoreHistory
from agents.runtime.feed import decode_envelope
from agents.runtime.host import host_snapshots
from agents.runtime.refresh import SnapshotRefresher, refreshed
from agents.runtime.routing import AGENT_TOPICS, AppliedVersions
from agents.runtime.snapshot import CARRIED, HOST_SCHEMA_VERSION, decode_host
from hero.domain.clock import ManualClock
from hero.store import (
    EventStore,
    Snapshot,
    SnapshotCadence,
    SnapshotKeeper,
    SnapshotStore,
    open_snapshots,
)
from schemas import (
    ChangeNodeStatus,
    Envelope,
    FarmerPolicy,
    Grid,
    NodeStatus,
    RegisterFarm,
    RegisterNode,
    SetFarmerPolicy,
)
from tests._engines import TestStore
from tests._wait import wait_until
from tests.unit._gwt import SHAPE, T0, usd
from tests.unit.test_projections import market_log

pytestmark = pytest.mark.integration

SHARDS = 2


async def _no_command(agent_id: str, command: Any) -> Any:
    raise AssertionError(f"{agent_id} sent {command!r} during a catch-up")


def _host(
    store: EventStore,
    shard: int,
    snapshots: SnapshotStore | None,
    cadence: SnapshotCadence = SnapshotCadence(40, 3600),
) -> AgentHostCore:
    keeper = None
    if snapshots is not None:
        keeper = host_snapshots(snapshots, shard, SHARDS, cadence)
    return AgentHostCore(
        shard=shard,
        shards=SHARDS,
        market=MarketView(),
        history=StoreHistory(store, batch_size=16),
        feed=KafkaFeed("127.0.0.1:9"),  # never started: the catch-up reads the store only
        sink=_no_command,
        snapshots=keeper,
    )


@pytest.fixture
def market(store_factory: Callable[[], TestStore]) -> Iterator[tuple[EventStore, SnapshotStore,
                                                                     ManualClock]]:  # fmt: skip
    test_store = store_factory()
    clock = ManualClock(T0)
    store = test_store.open(clock)
    market_log(store, clock)
    snapshots = open_snapshots(test_store.url)
    yield store, snapshots, clock
    snapshots.close()
    store.close()  # type: ignore[attr-defined]


def _more_market(store: EventStore, clock: ManualClock) -> None:
    """The tail: a farm and node more, a policy, a node going down."""
    handle = LocalMarket(store, clock).service.handle
    handle(RegisterFarm(command_id="farm-f3", farm_id="f3", name="f3", grid=Grid.GRID3,
                        country="BE", region="europe"))  # fmt: skip
    handle(RegisterNode(command_id="node-n4", node_id="n4", farm_id="f3", total=SHAPE.times(2),
                        grid=Grid.GRID3, country="BE", region="europe"))  # fmt: skip
    handle(SetFarmerPolicy(command_id="policy-f3", farm_id="f3",
                           policy=FarmerPolicy(price_cu_hour=usd("0.015"))))  # fmt: skip
    handle(ChangeNodeStatus(command_id="n1-down", node_id="n1", status=NodeStatus.DOWN))


def _admit_alike(restored: AppliedVersions, whole: AppliedVersions, store: EventStore) -> None:
    """Every event of the host's topics in the store is a repeat to both (a host that saved a
    snapshot keeps only the floor of what it folded in log order, and the streams since)."""
    rows = [row for row in store.read_all(1, 100_000) if row.topic in AGENT_TOPICS]
    assert rows
    newest: dict[tuple[str, str], Envelope] = {}
    for row in rows:
        envelope = decode_envelope(row.envelope_json)
        assert restored.repeat(row.topic, envelope)
        assert whole.repeat(row.topic, envelope)
        newest[(row.topic, envelope.stream)] = envelope
    # and each stream's next event, written after them, is new to both
    head = rows[-1].position
    for (topic, _), envelope in newest.items():
        following = envelope.model_copy(
            update={"version": envelope.version + 1, "position": head + 1}
        )
        assert not restored.repeat(topic, following)
        assert not whole.repeat(topic, following)
    assert len(restored) <= len(whole)


def _same(restarted: AgentHostCore, whole: AgentHostCore, store: EventStore) -> None:
    assert restarted.market.state == whole.market.state
    _admit_alike(restarted._applied, whole._applied, store)
    assert list(restarted.brains) == list(whole.brains)
    for agent_id, brain in whole.brains.items():
        mine = restarted.brains[agent_id]
        for slot in CARRIED[type(brain)][1]:
            assert getattr(mine, slot) == getattr(brain, slot), (agent_id, slot)


def _newest(snapshots: SnapshotStore, shard: int) -> int:
    newest = snapshots.latest(f"agents-shard-{shard}-of-{SHARDS}", HOST_SCHEMA_VERSION)
    assert newest is not None
    return newest.position


@pytest.mark.parametrize("shard", range(SHARDS))
async def test_a_restarted_host_reads_only_the_store_after_its_snapshot(market, shard):
    store, snapshots, clock = market
    first = _host(store, shard, snapshots)
    await first._catch_up()
    assert first.stats().snapshots_saved >= 2  # every 40 events as it went
    saved_at = _newest(snapshots, shard)
    _more_market(store, clock)
    head = store.current_position()
    tail = head - saved_at

    # A short tail (fewer events than the cadence's count) is not saved at the catch-up's
    # end: that encode would delay the first decision; the refresher brings it forward.
    restarted = _host(store, shard, snapshots, SnapshotCadence(tail + 1, 3600))
    await restarted._catch_up()
    whole = _host(store, shard, None)
    await whole._catch_up()
    stats, full = restarted.stats(), whole.stats()
    print(f"\nhost shard {shard}/{SHARDS}: snapshot at {stats.snapshot_position} of {head}; "
          f"read {stats.events_history} events of the store after it (a full catch-up reads "
          f"{full.events_history}); {stats.agents} agents")  # fmt: skip
    assert stats.snapshot_position == saved_at
    assert 0 < stats.events_history < full.events_history
    rows = store.read_all(saved_at + 1, 10_000)
    assert stats.events_history == sum(1 for row in rows if row.topic in AGENT_TOPICS)
    assert whole.brains
    _same(restarted, whole, store)
    assert stats.snapshots_saved == 0
    assert _newest(snapshots, shard) == saved_at

    # A tail as long as the cadence's count is saved, at the head.
    again = _host(store, shard, snapshots, SnapshotCadence(tail, 3600))
    await again._catch_up()
    assert again.stats().snapshot_position == saved_at
    assert again.stats().snapshots_saved == 1
    assert _newest(snapshots, shard) == head
    _same(again, whole, store)


async def test_a_corrupt_snapshot_is_logged_and_the_whole_store_read(market, caplog):
    store, snapshots, _ = market
    first = _host(store, 0, snapshots)
    await first._catch_up()
    newest = snapshots.latest(f"agents-shard-0-of-{SHARDS}", HOST_SCHEMA_VERSION)
    assert newest is not None
    decode_host(newest.body)  # readable as saved
    body = bytearray(newest.body)
    body[-5] ^= 0xFF
    snapshots.save(Snapshot(newest.name, newest.position, newest.schema_version, bytes(body)))
    restarted = _host(store, 0, snapshots)
    with caplog.at_level(logging.WARNING, logger="hero.store.snapshots"):
        await restarted._catch_up()
    whole = _host(store, 0, None)
    await whole._catch_up()
    assert restarted.stats().snapshot_position is None
    assert restarted.stats().events_history == whole.stats().events_history
    assert "unreadable" in caplog.text
    _same(restarted, whole, store)


@pytest.mark.parametrize("shard", range(SHARDS))
async def test_a_refreshed_snapshot_is_what_a_full_catch_up_holds(market, shard):
    # While a host follows Kafka its snapshot is brought forward beside it: the newest one
    # and the store after it, folded in log order into a copy nobody decides with.
    store, snapshots, clock = market
    first = _host(store, shard, snapshots)
    await first._catch_up()
    keeper = host_snapshots(snapshots, shard, SHARDS)
    # The catch-up saved every 40 events, not at its end: the refresher brings it forward.
    assert refreshed(store, keeper, shard, SHARDS) == store.current_position()
    assert refreshed(store, keeper, shard, SHARDS) is None  # nothing new
    _more_market(store, clock)
    head = store.current_position()
    assert refreshed(store, keeper, shard, SHARDS) == head
    newest = snapshots.latest(f"agents-shard-{shard}-of-{SHARDS}", HOST_SCHEMA_VERSION)
    assert newest is not None
    assert newest.position == head
    restored = decode_host(newest.body)
    whole = _host(store, shard, None)
    await whole._catch_up()
    assert restored.state == whole.market.state
    _admit_alike(restored.applied, whole._applied, store)
    assert restored.applied.floor == head
    assert list(restored.brains) == list(whole.brains)
    for agent_id, brain in whole.brains.items():
        for slot in CARRIED[type(brain)][1]:
            assert getattr(restored.brains[agent_id], slot) == getattr(brain, slot)
    restarted = _host(store, shard, snapshots)
    await restarted._catch_up()
    assert restarted.stats().snapshot_position == head
    assert restarted.stats().events_history == 0  # nothing after the refreshed snapshot


def test_the_refresher_thread_brings_the_snapshot_to_the_head_and_stops(market):
    store, snapshots, clock = market
    keeper = SnapshotKeeper(snapshots, "refresher-test", HOST_SCHEMA_VERSION,
                            SnapshotCadence(1, 3600))  # fmt: skip
    caught_up = [False]
    refresher = SnapshotRefresher(store, keeper, 0, SHARDS, ready=lambda: caught_up[0],
                                  check_every_s=0.05)  # fmt: skip
    refresher.start()
    try:
        wait_until(lambda: refresher._thread.is_alive(), 5, "the thread to start")
        assert keeper.saved == 0  # the host is not caught up: its catch-up saves
        caught_up[0] = True
        head = store.current_position()
        found = wait_until(lambda: snapshots.latest("refresher-test", HOST_SCHEMA_VERSION), 30,
                           "a refreshed snapshot")  # fmt: skip
        assert found.position == head
        _more_market(store, clock)
        newer = store.current_position()
        # The refresher may save between the appends too (its cadence is every event): wait
        # for the save that reaches the new head.
        latest = wait_until(lambda: _saved_at(snapshots, newer), 30, "a refresh to the new head")
        assert latest.position == newer
        assert keeper.saved >= 2
    finally:
        refresher.stop()
    refresher._thread.join(timeout=5)
    assert not refresher._thread.is_alive()


def _saved_at(snapshots: SnapshotStore, position: int) -> Snapshot | None:
    """The newest refresher snapshot once it is at ``position``, else None."""
    latest = snapshots.latest("refresher-test", HOST_SCHEMA_VERSION)
    return latest if latest is not None and latest.position == position else None
