"""Issue 13, item 1, in the session stack's Valkey: a poison row already in the store (written
raw, as an older version let it through) is stepped over by the projector, which keeps
projecting; a rebuild completes over it; and a rebuild that fails half-way leaves the old read
models serving."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from redis.asyncio import Redis

from hero.domain.clock import ManualClock
from hero.readmodels import PROJECTIONS, Projector, ReadModels
from hero.store import (
    ANY_VERSION,
    EventStore,
    NewEvent,
    PostgresEventStore,
    RecordedEvent,
    SqliteEventStore,
    skip_counts,
    sqlite_path_from_url,
)
from schemas import (
    Event,
    FarmRegistered,
    Grid,
    NodeRegistered,
    NodeStatus,
    NodeStatusChanged,
)
from tests._poison import POISON_STREAM, insert_poison_row
from tests._wait import eventually
from tests.unit._gwt import SHAPE, T0

if TYPE_CHECKING:
    from tests._engines import TestStore

pytestmark = pytest.mark.integration


def _append(store: EventStore, stream: str, event: Event) -> int:
    new = NewEvent.of(event, actor="test", occurred_at=T0)
    return store.append(stream, ANY_VERSION, [new], f"cmd-{new.id}").last_position


def _node(node_id: str) -> NodeRegistered:
    return NodeRegistered(
        node_id=node_id, farm_id="f1", grid=Grid.GRID3, country="BE", region="eu", total=SHAPE
    )


async def _at(models: ReadModels, position: int) -> bool:
    return min([await models.position(name) for name in PROJECTIONS]) >= position


async def test_the_projector_skips_a_poison_row_records_it_and_keeps_projecting(
    redis: Redis, prefix: str, store_factory: Callable[[], TestStore]
) -> None:
    handle = store_factory()
    store = handle.open(ManualClock(T0))
    _append(store, "node-n1", _node("n1"))
    poison = insert_poison_row(handle.url)
    projector = Projector(store, redis, prefix=prefix)
    models = ReadModels(redis, prefix)
    before = skip_counts().get("read-models", 0)
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop, poll_s=0.05))
    try:
        await eventually(lambda: _at(models, poison), 30, "the projector to pass the poison row")
        changed = NodeStatusChanged(node_id="n1", status=NodeStatus.STANDBY, reason="test")
        later = _append(store, "node-n1", changed)
        await eventually(lambda: _at(models, later), 30, "the event after the poison row")
        node = await models.get("nodes", "n1")
        assert node is not None
        assert node["status"] == "standby"
        assert await models.get("farms", "farm-x") is None  # the poison row projected nothing
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert task.exception() is None
    assert skip_counts()["read-models"] > before
    [skip] = store.skipped()
    assert (skip.source, skip.position, skip.stream, skip.reason) == (
        "read-models",
        poison,
        POISON_STREAM,
        "invalid_envelope",
    )
    store.close()


class _FailsHalfWay(EventStore):
    """A real store whose reads of the log fail once ``fail`` is set: a rebuild that breaks
    half-way (the disk, the process, anything)."""

    fail = False

    def read_all(self, from_position: int = 1, limit: int = 1000) -> list[RecordedEvent]:
        if self.fail and from_position > 1:
            raise OSError("the disk went away half-way through the rebuild")
        return super().read_all(from_position, limit)


class _FailingSqlite(_FailsHalfWay, SqliteEventStore):
    pass


class _FailingPostgres(_FailsHalfWay, PostgresEventStore):
    pass


def _failing(handle: TestStore) -> _FailsHalfWay:
    if handle.engine == "sqlite":
        return _FailingSqlite(sqlite_path_from_url(handle.url), ManualClock(T0))
    return _FailingPostgres(handle.url, ManualClock(T0))


async def test_a_rebuild_completes_over_a_poison_row_and_a_failed_one_leaves_the_old_models(
    redis: Redis, prefix: str, store_factory: Callable[[], TestStore]
) -> None:
    handle = store_factory()
    store = _failing(handle)
    farm = FarmRegistered(farm_id="f1", name="F1", grid=Grid.GRID3, country="BE", region="eu")
    _append(store, "farm-f1", farm)
    insert_poison_row(handle.url)
    for number in range(5):
        last = _append(store, f"node-n{number}", _node(f"n{number}"))
    # Reads of two rows: the failure below lands half-way through the rebuild.
    projector = Projector(store, redis, prefix=prefix, batch=2, rebuild_batch=2)
    models = ReadModels(redis, prefix)

    report = await projector.rebuild()  # the poison row does not stop it
    assert report.positions == dict.fromkeys(PROJECTIONS, last)
    assert report.documents["nodes"] == 5
    assert report.documents["farms"] == 1
    served = {name: await models.all(name) for name in PROJECTIONS}

    # Now the rebuild breaks after its first batch: the old generation keeps serving.
    store.fail = True
    with pytest.raises(OSError, match="half-way"):
        await projector.rebuild()
    assert {name: await models.all(name) for name in PROJECTIONS} == served
    assert await _at(models, last)
    # ...and the failed rebuild left no keys of its own behind.
    live = {(await redis.get(f"{prefix}:rm:{n}:live")) for n in PROJECTIONS}
    assert len(live) == 1
    [generation] = live
    leftovers = [
        key.decode()
        async for key in redis.scan_iter(match=f"{prefix}:rm:*@*", count=1000)
        if not key.decode().split("@", 1)[1].startswith(generation.decode())
    ]
    assert leftovers == []

    # A projector following the live generation goes on from where the good rebuild ended.
    store.fail = False
    newer = _append(store, "node-n9", _node("n9"))
    await Projector(store, redis, prefix=prefix).catch_up()
    assert await _at(models, newer)
    assert await models.get("nodes", "n9") is not None
    store.close()
