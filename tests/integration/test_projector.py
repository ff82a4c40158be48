"""The read models in the session stack's Valkey, folded from a real market's log (the one
tests/unit/test_projections.py folds in memory): what Valkey holds must be that pure fold,
whatever the batches, repeats, rebuilds and races.

Every key lives under a prefix of the test's own, removed afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from redis.asyncio import Redis

from hero.domain.clock import ManualClock
from hero.readmodels import PROJECTIONS, Projector, ReadModels, fold
from hero.readmodels.projections import Doc, decode_doc, encode_doc
from hero.readmodels.projector import keys_for, live_keys
from hero.store import ANY_VERSION, EventStore, NewEvent, recorded_after
from schemas import (
    Envelope,
    Event,
    Grid,
    NodeRegistered,
    NodeStatus,
    NodeStatusChanged,
)
from tests._engines import TestStore
from tests._wait import eventually
from tests.unit._gwt import SHAPE, T0
from tests.unit.test_projections import market_log

if TYPE_CHECKING:
    from tests._engines import RunningStack

pytestmark = pytest.mark.integration

Items = list[tuple[Envelope, Event]]


@pytest.fixture(scope="module")
def market(store_factory: Callable[[], TestStore]) -> tuple[EventStore, Items]:
    """A market's log in a store of the module's own, and its decoded events."""
    clock = ManualClock(T0)
    store = store_factory().open(clock)
    market_log(store, clock)
    return store, _items(store)


def _items(store: EventStore) -> Items:
    items = []
    for row in recorded_after(store):
        envelope = row.envelope()
        event = envelope.decode()
        assert isinstance(event, Event)
        items.append((envelope, event))
    return items


def _expected(items: Items, upto: int | None = None) -> dict[str, dict[str, Doc]]:
    return {name: fold(name, items, upto=upto).docs for name in PROJECTIONS}


async def _stored(redis: Redis, prefix: str) -> dict[str, dict[str, Doc]]:
    stored = {}
    for name in PROJECTIONS:
        raw = await redis.hgetall((await live_keys(redis, name, prefix)).docs)
        stored[name] = {k.decode(): decode_doc(v) for k, v in raw.items()}
    return stored


async def _raw(redis: Redis, prefix: str) -> dict[str, Any]:
    """What is served under the prefix, byte for byte: per projection the documents, links
    and position of its live generation."""
    found: dict[str, Any] = {}
    for name in PROJECTIONS:
        keys = await live_keys(redis, name, prefix)
        found[name] = (
            await redis.hgetall(keys.docs),
            await redis.hgetall(keys.links),
            await redis.get(keys.position),
        )
    return found


async def test_catch_up_gives_the_pure_fold(market, redis: Redis, prefix: str):
    store, items = market
    last = items[-1][0].position
    positions = await Projector(store, redis, prefix=prefix, batch=64).catch_up()
    assert positions == dict.fromkeys(PROJECTIONS, last)
    assert await _stored(redis, prefix) == _expected(items)

    models = ReadModels(redis, prefix)
    assert await models.position("contracts") == last
    contracts = await models.all("contracts", offtaker_id="acme")
    assert len(contracts) == 5
    assert [c["id"] for c in contracts] == sorted(c["id"] for c in contracts)
    assert await models.all("contracts", offtaker_id="nobody") == []
    assert len(await models.all("contracts", status="cancelled", farm_id="f1")) == 1
    node = await models.get("nodes", "n3")
    assert node is not None
    assert node["status"] == "down"
    assert await models.get("nodes", "n404") is None
    account = await models.get("accounts", "offtaker.acme.TFT")
    assert account is not None
    assert account["balance"] == "971.75"


async def test_rows_applied_again_change_nothing(market, redis: Redis, prefix: str):
    store, items = market
    projector = Projector(store, redis, prefix=prefix, batch=50)
    await projector.catch_up()
    before = await _raw(redis, prefix)
    rows = store.read_all(1, len(items) + 10)
    assert await projector.apply(rows) == dict.fromkeys(PROJECTIONS, rows[-1].position)
    await projector.apply(rows[10:40])  # a redelivered stretch from the middle
    await projector.catch_up()
    assert await _raw(redis, prefix) == before


async def test_a_projector_started_on_documents_others_wrote_goes_on_from_them(
    market, redis: Redis, prefix: str
):
    # The documents are rendered from the projector's market model: a projector started
    # part way (a restart) first brings its model up to the stored position from the log.
    store, items = market
    middle = items[len(items) // 2][0].position
    await Projector(store, redis, prefix=prefix, batch=50).apply(store.read_all(1, middle))
    assert await _stored(redis, prefix) == _expected(items, upto=middle)
    await Projector(store, redis, prefix=prefix, batch=7).catch_up()
    assert await _stored(redis, prefix) == _expected(items)


async def test_batches_of_any_size_give_the_same_documents(market, redis: Redis, prefix: str):
    store, _ = market
    await Projector(store, redis, prefix=prefix, batch=1000).catch_up()
    whole = await _raw(redis, prefix)
    other = f"{prefix}:b"
    await Projector(store, redis, prefix=other, batch=3).catch_up()
    assert await _stored(redis, other) == await _stored(redis, prefix)
    assert len(whole) == len(await _raw(redis, other))


async def test_a_rebuild_gives_identical_documents(market, redis: Redis, prefix: str):
    store, items = market
    projector = Projector(store, redis, prefix=prefix, batch=100)
    await projector.catch_up()
    before = await _raw(redis, prefix)
    await redis.hset(keys_for("nodes", prefix).docs, "stale", encode_doc({"id": "stale"}))

    one = await projector.rebuild("nodes")
    assert one.positions == {"nodes": items[-1][0].position}
    assert one.documents == {"nodes": 3}
    assert await _raw(redis, prefix) == before  # the stray document is gone, the rest equal

    every = await projector.rebuild()
    assert every.documents == {n: len(d) for n, d in _expected(items).items()}
    assert every.seconds > 0
    assert await _raw(redis, prefix) == before


async def test_two_projectors_racing_end_where_one_ends(
    market, redis: Redis, prefix: str, stack: RunningStack
):
    store, items = market
    other = Redis.from_url(stack.endpoints.redis_url)
    try:
        first = Projector(store, redis, prefix=prefix, batch=7)
        second = Projector(store, other, prefix=prefix, batch=5)
        await asyncio.gather(first.catch_up(), second.catch_up(), first.catch_up())
        assert await _stored(redis, prefix) == _expected(items)
        assert first.conflicts + second.conflicts > 0  # they did race, and lost nothing
        settled = await _raw(redis, prefix)
        # A rebuild racing with a catch-up on the same keys: the catch-up starts over with it.
        await asyncio.gather(first.rebuild(), second.catch_up(), second.rebuild("accounts"))
        await second.catch_up()
        assert await _raw(redis, prefix) == settled
    finally:
        await other.aclose()


async def test_a_position_is_never_ahead_of_its_documents(market, redis: Redis, prefix: str):
    """Snapshots taken atomically (MULTI) while a projector runs: each holds exactly the
    fold of the log up to the position it shows."""
    store, items = market
    last = items[-1][0].position
    projector = Projector(store, redis, prefix=prefix, batch=4)
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop, poll_s=0.05))
    seen: dict[str, set[int]] = {name: set() for name in PROJECTIONS}
    try:

        async def snapshot_all() -> bool:
            done = True
            for name in PROJECTIONS:
                keys = await live_keys(redis, name, prefix)
                async with redis.pipeline(transaction=True) as pipe:
                    position, raw = await pipe.get(keys.position).hgetall(keys.docs).execute()
                at = int(position or 0)
                docs = {k.decode(): decode_doc(v) for k, v in raw.items()}
                assert docs == fold(name, items, upto=at).docs, (name, at)
                seen[name].add(at)
                done = done and at == last
            return done

        await eventually(snapshot_all, 60, "the projector to reach the end of the log")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert all(len(positions) > 1 for positions in seen.values()), seen


async def test_run_follows_the_log_until_stopped(
    redis: Redis, prefix: str, store_factory: Callable[[], TestStore]
):
    store = store_factory().open(ManualClock(T0))
    registered = NodeRegistered(
        node_id="n1", farm_id="f1", grid=Grid.GRID3, country="BE", region="eu", total=SHAPE
    )
    _append(store, "node-n1", registered)
    projector = Projector(store, redis, prefix=prefix)
    models = ReadModels(redis, prefix)
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop, poll_s=0.05))
    try:
        await eventually(lambda: _at(models, 1), 30, "the projector to catch up")
        node = await models.get("nodes", "n1")
        assert node is not None
        assert node["status"] == "up"
        changed = NodeStatusChanged(node_id="n1", status=NodeStatus.STANDBY, reason="test")
        position = _append(store, "node-n1", changed)
        await eventually(lambda: _at(models, position), 30, "the new event")
        node = await models.get("nodes", "n1")
        assert node is not None
        assert node["status"] == "standby"
        assert node["last_position"] == position
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert task.exception() is None
    store.close()


def _append(store: EventStore, stream: str, event: Event) -> int:
    new = NewEvent.of(event, actor="test", occurred_at=T0)
    return store.append(stream, ANY_VERSION, [new], f"cmd-{new.id}").last_position


async def _at(models: ReadModels, position: int) -> bool:
    positions = [await models.position(name) for name in PROJECTIONS]
    return min(positions) >= position
