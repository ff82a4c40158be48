"""A rebuild (``hero replay``: the whole log folded in memory, every document written once)
ends where the incremental projector (batch by batch, through Valkey) ends, on the golden
history (tests/golden: full demo runs), in the store of the engines under test and the real
Valkey of the stack: every document, every link, every position, of every projection."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from hero.domain.clock import ManualClock
from hero.readmodels import PROJECTIONS, Projector, ReadModels
from hero.readmodels.projector import live_keys
from tests._engines import TestStore
from tests._golden import append_golden

pytestmark = pytest.mark.integration


async def _state(redis: Redis, prefix: str) -> dict[str, Any]:
    """Per projection: its documents, its links and its position, as served."""
    models = ReadModels(redis, prefix)
    state: dict[str, Any] = {}
    for name in PROJECTIONS:
        keys = await live_keys(redis, name, prefix)
        state[name] = {
            "documents": await models.all(name),
            "links": await redis.hgetall(keys.links),
            "position": await models.position(name),
        }
    return state


@pytest.mark.parametrize("processes", [1, 2])
async def test_a_rebuild_equals_the_incremental_projector_on_the_golden_history(
    redis: Redis,
    prefix: str,
    store_factory: Callable[[], TestStore],
    processes: int,
) -> None:
    # two: the ledger folded by a second process, reading the store by its URL
    partition_from = 1 if processes == 2 else 10**12
    store = store_factory().open(ManualClock(datetime.fromisoformat("2026-12-07T12:00:00+00:00")))
    count = append_golden(store)
    try:
        await Projector(store, redis, prefix=f"{prefix}:inc").catch_up()
        # A small rebuild batch too: the fold must not depend on where the reads split.
        report = await Projector(
            store, redis, prefix=f"{prefix}:re", rebuild_batch=333, partition_from=partition_from
        ).rebuild()
        incremental = await _state(redis, f"{prefix}:inc")
        rebuilt = await _state(redis, f"{prefix}:re")
    finally:
        store.close()
    assert report.positions == dict.fromkeys(PROJECTIONS, count)
    assert {n: len(s["documents"]) for n, s in rebuilt.items()} == report.documents
    assert all(state["documents"] for state in rebuilt.values())  # every projection has some
    for name in PROJECTIONS:
        assert rebuilt[name] == incremental[name], name
