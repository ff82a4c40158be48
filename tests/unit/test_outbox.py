"""OutboxRelay over the memory store, memory checkpoints and a list as the broker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from hero.domain.clock import ManualClock
from hero.store import (
    ANY_VERSION,
    MemoryCheckpointStore,
    MemoryEventStore,
    OutboxRelay,
    Publisher,
    RecordedEvent,
    RelayProgress,
)
from tests.unit.store_contract import new_event

TIMEOUT_S = 5.0


class BrokerDown(ConnectionError):
    pass


class ListPublisher(Publisher):
    """A broker as a list of records.

    ``fail_on``: the publish call (1-based) that raises. ``fail_after_send``: that call keeps
    the records but still raises (the acknowledgement was lost). ``report_lost_once()``: the
    next ``lost_data()`` answers True. ``lose_everything_on``: that publish call stores its
    records, then the broker restarts empty and reports lost data until ``reset()``.
    """

    def __init__(
        self,
        *,
        fail_on: int | None = None,
        fail_after_send: bool = False,
        lose_everything_on: int | None = None,
    ):
        self.records: list[RecordedEvent] = []
        self.batches: list[list[int]] = []
        self.calls = 0
        self.resets = 0
        self.fail_on = fail_on
        self.fail_after_send = fail_after_send
        self.lose_everything_on = lose_everything_on
        self._lost = False
        self._lost_reports = 0

    @property
    def positions(self) -> list[int]:
        return [record.position for record in self.records]

    def report_lost_once(self) -> None:
        self._lost_reports += 1

    def restart_empty(self) -> None:
        """The broker restarts without its data; it reports the loss until ``reset()``."""
        self.records.clear()
        self._lost = True

    async def publish(self, events: Sequence[RecordedEvent]) -> None:
        self.calls += 1
        failing = self.calls == self.fail_on
        if failing and not self.fail_after_send:
            raise BrokerDown(f"publish #{self.calls} failed")
        self.records.extend(events)
        self.batches.append([event.position for event in events])
        if self.calls == self.lose_everything_on:
            self.restart_empty()
        if failing:
            raise BrokerDown(f"publish #{self.calls}: acknowledgement lost")

    async def lost_data(self) -> bool:
        if self._lost:
            return True
        if self._lost_reports:
            self._lost_reports -= 1
            return True
        return False

    async def reset(self) -> None:
        self.resets += 1
        self.records.clear()
        self._lost = False


class Crash(Exception):
    """The relay process dies here."""


class CrashingCheckpoints(MemoryCheckpointStore):
    """Crashes the first time it is asked to save ``crash_on_position``, saving nothing."""

    def __init__(self, crash_on_position: int):
        super().__init__()
        self.crash_on_position = crash_on_position

    def save(self, name: str, position: int) -> None:
        if position == self.crash_on_position:
            self.crash_on_position = -1  # only once
            raise Crash(f"crashed while saving {position}")
        super().save(name, position)


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def store(clock):
    return MemoryEventStore(clock)


@pytest.fixture
def checkpoints():
    return MemoryCheckpointStore()


def append(store: MemoryEventStore, clock: ManualClock, stream: str, count: int = 1) -> None:
    events = [new_event(clock) for _ in range(count)]
    store.append(stream, ANY_VERSION, events, f"cmd-{stream}-{store.current_position()}")


def fill(store: MemoryEventStore, clock: ManualClock, count: int) -> None:
    """``count`` events over three streams, interleaved."""
    for i in range(count):
        append(store, clock, f"stream-{i % 3}")


def relay_for(store, checkpoints, publisher, **options) -> OutboxRelay:
    """A relay that asks about lost data before every batch unless told otherwise."""
    options.setdefault("epoch_check_interval_s", 0.0)
    return OutboxRelay(store, checkpoints, publisher, **options)


async def test_drain_publishes_everything_in_position_order(store, clock, checkpoints):
    fill(store, clock, 10)
    publisher = ListPublisher()
    relay = relay_for(store, checkpoints, publisher)
    assert await relay.drain() == 10
    assert publisher.positions == list(range(1, 11))
    for stream in ("stream-0", "stream-1", "stream-2"):
        versions = [r.version for r in publisher.records if r.stream == stream]
        assert versions == sorted(versions) == list(range(1, len(versions) + 1))
    assert checkpoints.load("relay") == 10
    assert relay.position == 10
    assert relay.progress == RelayProgress(position=10, published=10, refills=0)


async def test_publish_batch_returns_zero_when_nothing_is_new(store, clock, checkpoints):
    publisher = ListPublisher()
    relay = relay_for(store, checkpoints, publisher)
    assert await relay.publish_batch() == 0
    assert publisher.calls == 0
    append(store, clock, "s1", 2)
    assert await relay.publish_batch() == 2
    assert await relay.publish_batch() == 0
    assert publisher.positions == [1, 2]


async def test_batch_size_is_respected(store, clock, checkpoints):
    fill(store, clock, 7)
    publisher = ListPublisher()
    relay = relay_for(store, checkpoints, publisher, batch_size=3)
    assert await relay.drain() == 7
    assert publisher.batches == [[1, 2, 3], [4, 5, 6], [7]]


async def test_the_checkpoint_is_saved_under_the_relays_name(store, clock, checkpoints):
    fill(store, clock, 2)
    await relay_for(store, checkpoints, ListPublisher(), name="kafka").drain()
    assert checkpoints.load("kafka") == 2
    assert checkpoints.load("relay") == 0


async def test_a_new_relay_resumes_from_the_checkpoint(store, clock, checkpoints):
    fill(store, clock, 3)
    first = ListPublisher()
    await relay_for(store, checkpoints, first).drain()
    fill(store, clock, 2)
    # the first relay "crashed"; a new one starts over the same checkpoint store
    second = ListPublisher()
    relay = relay_for(store, checkpoints, second)
    assert relay.position == 3
    assert await relay.drain() == 2
    assert second.positions == [4, 5]
    assert sorted(first.positions + second.positions) == [1, 2, 3, 4, 5]


async def test_a_crash_before_the_checkpoint_resends_the_batch(store, clock):
    fill(store, clock, 5)
    checkpoints = CrashingCheckpoints(crash_on_position=4)
    publisher = ListPublisher()
    crashed = relay_for(store, checkpoints, publisher, batch_size=2)
    with pytest.raises(Crash):
        await crashed.drain()
    assert checkpoints.load("relay") == 2
    restarted = relay_for(store, checkpoints, publisher, batch_size=2)
    await restarted.drain()
    # at least once: positions 3 and 4 went out twice, nothing was lost
    assert publisher.positions == [1, 2, 3, 4, 3, 4, 5]
    assert set(publisher.positions) == set(range(1, 6))
    assert checkpoints.load("relay") == 5


async def test_a_failed_publish_keeps_the_checkpoint_and_is_resent(store, clock, checkpoints):
    fill(store, clock, 5)
    publisher = ListPublisher(fail_on=2)
    relay = relay_for(store, checkpoints, publisher, batch_size=2)
    with pytest.raises(BrokerDown):
        await relay.drain()
    assert checkpoints.load("relay") == 2
    assert relay.position == 2
    assert await relay.drain() == 3
    assert publisher.positions == [1, 2, 3, 4, 5]
    assert publisher.batches == [[1, 2], [3, 4], [5]]


async def test_a_lost_acknowledgement_resends_the_batch(store, clock, checkpoints):
    fill(store, clock, 4)
    publisher = ListPublisher(fail_on=1, fail_after_send=True)
    relay = relay_for(store, checkpoints, publisher, batch_size=2)
    with pytest.raises(BrokerDown):
        await relay.publish_batch()
    assert checkpoints.load("relay") == 0
    await relay.drain()
    assert publisher.positions == [1, 2, 1, 2, 3, 4]
    assert relay.progress.published == 4


async def test_lost_data_resets_and_republishes_from_position_one(store, clock, checkpoints):
    fill(store, clock, 5)
    publisher = ListPublisher()
    relay = relay_for(store, checkpoints, publisher)
    await relay.drain()
    fill(store, clock, 2)
    publisher.report_lost_once()
    assert await relay.drain() == 7
    assert publisher.resets == 1
    assert publisher.positions == list(range(1, 8))
    assert relay.progress == RelayProgress(position=7, published=12, refills=1)
    assert checkpoints.load("relay") == 7


async def test_lost_data_is_checked_only_every_interval_before_a_batch(store, clock, checkpoints):
    fill(store, clock, 2)
    publisher = ListPublisher()
    relay = relay_for(store, checkpoints, publisher, epoch_check_interval_s=3600.0)
    await relay.drain()  # the first batch always checks
    publisher.report_lost_once()
    assert await relay.publish_batch() == 0  # nothing new, and no check before the hour
    assert publisher.resets == 0
    append(store, clock, "s9")
    assert await relay.publish_batch() == 0  # the check after publishing sees the loss
    assert publisher.resets == 1
    assert relay.position == 0
    assert relay.progress.refills == 1


async def test_drain_finishes_the_refill_when_data_is_lost_mid_batch(store, clock, checkpoints):
    fill(store, clock, 4)
    publisher = ListPublisher(lose_everything_on=1)
    relay = relay_for(store, checkpoints, publisher, epoch_check_interval_s=3600.0)
    await relay.drain()
    assert publisher.resets == 1
    assert publisher.positions == [1, 2, 3, 4]
    assert relay.position == store.current_position()


async def test_a_crash_during_a_refill_loses_nothing(store, clock):
    fill(store, clock, 3)
    checkpoints = CrashingCheckpoints(crash_on_position=0)
    publisher = ListPublisher()
    await relay_for(store, checkpoints, publisher).drain()
    publisher.restart_empty()
    with pytest.raises(Crash):
        await relay_for(store, checkpoints, publisher).drain()
    await relay_for(store, checkpoints, publisher).drain()
    assert publisher.positions == [1, 2, 3]


async def test_on_progress_reports_each_confirmed_batch(store, clock, checkpoints):
    fill(store, clock, 5)
    seen: list[RelayProgress] = []
    relay = relay_for(store, checkpoints, ListPublisher(), batch_size=2, on_progress=seen.append)
    await relay.drain()
    assert [p.position for p in seen] == [2, 4, 5]
    assert seen[-1] == RelayProgress(position=5, published=5, refills=0)


async def wait_for_position(relay: OutboxRelay, progressed: asyncio.Event, position: int):
    """Wait (bounded) until the relay confirmed ``position``; ``progressed`` is set on progress."""

    async def until() -> None:
        while relay.position < position:
            progressed.clear()
            await progressed.wait()

    await asyncio.wait_for(until(), TIMEOUT_S)


async def test_run_publishes_new_events_until_stopped(store, clock, checkpoints):
    fill(store, clock, 3)
    publisher = ListPublisher()
    progressed = asyncio.Event()
    relay = relay_for(
        store, checkpoints, publisher, poll_interval_s=0.01, on_progress=lambda _: progressed.set()
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await wait_for_position(relay, progressed, 3)
    fill(store, clock, 2)  # new events while the relay is polling
    await wait_for_position(relay, progressed, 5)
    stop.set()
    await asyncio.wait_for(task, TIMEOUT_S)
    assert task.exception() is None
    assert publisher.positions == [1, 2, 3, 4, 5]
    assert checkpoints.load("relay") == 5


async def test_run_survives_a_failing_publish(store, clock, checkpoints):
    fill(store, clock, 4)
    publisher = ListPublisher(fail_on=1)
    progressed = asyncio.Event()
    relay = relay_for(
        store,
        checkpoints,
        publisher,
        poll_interval_s=0.01,
        max_backoff_s=0.02,
        on_progress=lambda _: progressed.set(),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await wait_for_position(relay, progressed, 4)
    stop.set()
    await asyncio.wait_for(task, TIMEOUT_S)
    assert publisher.calls >= 2
    assert publisher.positions == [1, 2, 3, 4]
    assert checkpoints.load("relay") == 4


async def test_run_returns_at_once_when_already_stopped(store, clock, checkpoints):
    fill(store, clock, 2)
    publisher = ListPublisher()
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(relay_for(store, checkpoints, publisher).run(stop), TIMEOUT_S)
    assert publisher.calls == 0
