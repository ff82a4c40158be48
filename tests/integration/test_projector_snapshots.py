"""The projector restarted with a snapshot of its market model beside the store: it replays
only the tail of the log and ends with the documents a full replay gives; an unreadable
snapshot, one of another format version, or one ahead of the documents is logged and the
whole log replayed. On the session's store (SQLite, or PostgreSQL on the production pass) and
Valkey; every key under a prefix of the test's own."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from redis.asyncio import Redis

from hero.domain.clock import ManualClock
from hero.model import apply_all
from hero.model.snapshot import MODEL_SCHEMA_VERSION, decode_state, encode_state
from hero.readmodels import PROJECTIONS, Projector, fold
from hero.readmodels.projector import SNAPSHOT_NAME, model_snapshots
from hero.store import (
    EventStore,
    Snapshot,
    SnapshotCadence,
    SnapshotKeeper,
    SnapshotStore,
    open_snapshots,
)
from tests._engines import TestStore
from tests.integration.test_projector import Items, _items, _stored
from tests.unit._gwt import T0
from tests.unit.test_projections import market_log

pytestmark = pytest.mark.integration

EVERY = 25  # events between snapshots: a few in the test market's log


@pytest.fixture(scope="module")
def market(store_factory: Callable[[], TestStore]) -> Iterator[tuple[EventStore, Items, str]]:
    test_store = store_factory()
    clock = ManualClock(T0)
    store = test_store.open(clock)
    market_log(store, clock)
    yield store, _items(store), test_store.url
    store.close()  # type: ignore[attr-defined]


@pytest.fixture
def snapshots(market) -> Iterator[SnapshotStore]:
    """The snapshots beside the module's store; each test saves under names of its own."""
    store = open_snapshots(market[2])
    yield store
    store.close()


def _keeper(store: SnapshotStore, name: str, version: int = MODEL_SCHEMA_VERSION) -> SnapshotKeeper:
    return SnapshotKeeper(store, name, version, SnapshotCadence(EVERY, 3600))


def _expected(items: Items) -> dict:
    return {name: fold(name, items).docs for name in PROJECTIONS}


async def _run_half_then_restart(
    market, redis: Redis, prefix: str, first: SnapshotKeeper, second: SnapshotKeeper
) -> Projector:
    store, items, _ = market
    middle = items[len(items) // 2][0].position
    await Projector(store, redis, prefix=prefix, batch=10, snapshots=first).apply(
        store.read_all(1, middle)
    )
    restarted = Projector(store, redis, prefix=prefix, batch=10, snapshots=second)
    await restarted.catch_up()
    return restarted


async def test_a_restarted_projector_replays_only_the_tail(market, snapshots, redis, prefix):
    _, items, _ = market
    last = items[-1][0].position
    name = f"projector-{prefix}"
    first = _keeper(snapshots, name)
    restarted = await _run_half_then_restart(market, redis, prefix, first, _keeper(snapshots, name))
    saved = snapshots.latest(name, MODEL_SCHEMA_VERSION)
    assert saved is not None
    assert first.saved >= 1
    loaded = restarted._snapshots.loaded  # type: ignore[union-attr]
    assert loaded is not None
    assert 0 < loaded <= len(items) // 2 + 1
    print(f"\nprojector restart: snapshot at {loaded} of {last}; read {restarted.model_rows} "
          f"rows of the log (a full replay reads {last})")  # fmt: skip
    assert restarted.model_rows == last - loaded
    assert await _stored(redis, prefix) == _expected(items)
    latest = snapshots.latest(name, MODEL_SCHEMA_VERSION)
    assert latest is not None
    assert decode_state(latest.body) == apply_all(items[: latest.position])


async def test_an_unreadable_snapshot_is_logged_and_the_log_replayed(
    market, snapshots, redis, prefix, caplog
):
    _, items, _ = market
    name = f"projector-{prefix}"
    first = _keeper(snapshots, name)
    first.cadence = SnapshotCadence(10_000_000, 3600)  # none of its own: only the corrupt one
    body = bytearray(encode_state(apply_all(items[:20])))
    body[len(body) // 2] ^= 0x40
    snapshots.save(Snapshot(name, 20, MODEL_SCHEMA_VERSION, bytes(body)))
    second = _keeper(snapshots, name)
    second.cadence = SnapshotCadence(10_000_000, 3600)
    with caplog.at_level(logging.WARNING, logger="hero.store.snapshots"):
        restarted = await _run_half_then_restart(market, redis, prefix, first, second)
    assert restarted.model_rows == items[-1][0].position  # the whole log
    assert second.loaded is None
    assert "unreadable" in (second.last_error or "")
    assert "unreadable" in caplog.text
    assert await _stored(redis, prefix) == _expected(items)


async def test_a_snapshot_of_another_format_version_is_ignored(market, snapshots, redis, prefix):
    _, items, _ = market
    name = f"projector-{prefix}"
    old = _keeper(snapshots, name)  # the code of today saves version N ...
    newer = _keeper(snapshots, name, MODEL_SCHEMA_VERSION + 1)  # ... the next code reads N+1
    restarted = await _run_half_then_restart(market, redis, prefix, old, newer)
    assert snapshots.latest(name, MODEL_SCHEMA_VERSION) is not None
    assert newer.loaded is None
    assert restarted.model_rows == items[-1][0].position
    assert await _stored(redis, prefix) == _expected(items)


async def test_a_snapshot_ahead_of_the_documents_is_not_used(market, snapshots, redis, prefix):
    # Valkey lost its documents (or a new prefix): the model must not start ahead of them.
    store, items, _ = market
    name = f"projector-{prefix}"
    keeper = _keeper(snapshots, name)
    await Projector(store, redis, prefix=f"{prefix}:before", snapshots=keeper).catch_up()
    assert keeper.saved >= 1
    fresh = Projector(store, redis, prefix=prefix, batch=10, snapshots=_keeper(snapshots, name))
    await fresh.catch_up()
    assert fresh.model_rows == items[-1][0].position
    assert await _stored(redis, prefix) == _expected(items)


def test_the_projectors_keeper_names_its_snapshots_and_version(snapshots):
    keeper = model_snapshots(snapshots)
    assert (keeper.name, keeper.schema_version) == (SNAPSHOT_NAME, MODEL_SCHEMA_VERSION)
