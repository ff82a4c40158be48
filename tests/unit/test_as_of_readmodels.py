"""The gateway's as-of read models: requests that come together for one cut share one fold."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest

from hero.domain.clock import ManualClock
from hero.readmodels.as_of import AsOfReadModels
from hero.store import ANY_VERSION, MemoryEventStore, NewEvent, RecordedEvent
from schemas import FarmRegistered, Grid
from tests._wait import wait_until

START = datetime(2026, 11, 1, tzinfo=UTC)


class _GatedStore(MemoryEventStore):
    """Holds every log read until ``gate`` opens, counting the reads begun."""

    def __init__(self) -> None:
        super().__init__(ManualClock(START))
        self.gate = threading.Event()
        self.reads = 0

    def read_all(self, from_position: int = 1, limit: int = 1000) -> list[RecordedEvent]:
        self.reads += 1
        assert self.gate.wait(10), "the gate was never opened"
        return super().read_all(from_position, limit)


def _farms(store: MemoryEventStore, count: int) -> None:
    for n in range(count):
        event = FarmRegistered(
            farm_id=f"farm_{n}", name="F", grid=Grid.GRID3, country="BE", region="eu"
        )
        new = NewEvent.of(event, actor="test", occurred_at=START)
        store.append(f"farm-farm_{n}", ANY_VERSION, [new], f"cmd-{n}")


def _farms_at(models: AsOfReadModels, position: int) -> int:
    return len(asyncio.run(models.folded("farms", position)).docs)


def test_requests_for_one_cut_that_come_together_share_one_fold() -> None:
    store = _GatedStore()
    _farms(store, 3)
    models = AsOfReadModels(store)
    start = threading.Barrier(4)
    answers: list[int] = []

    def ask() -> None:
        start.wait(5)
        answers.append(_farms_at(models, 2))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: store.reads >= 1, 5, "the first fold reads the log")
    with pytest.raises(pytest.fail.Exception):  # no second fold starts while the first is under way
        wait_until(lambda: store.reads >= 2, 1, "a second fold of the same cut")
    store.gate.set()
    for thread in threads:
        thread.join(10)
    reads_of_one_fold = store.reads
    assert answers == [2, 2, 2, 2]
    _farms_at(models, 2)  # kept: answered without reading
    assert store.reads == reads_of_one_fold


def test_the_folds_kept_are_bounded() -> None:
    store = _GatedStore()
    store.gate.set()
    _farms(store, 5)
    models = AsOfReadModels(store, kept=2)
    for position in (1, 2, 3):
        _farms_at(models, position)
    before = store.reads
    _farms_at(models, 3)
    assert store.reads == before  # the newest are kept
    _farms_at(models, 1)
    assert store.reads > before  # the oldest was let go
