"""The outbox relay: every committed event to its Kafka topic, in order, at least once.

The store's event table is the outbox. The relay reads it in position order, publishes a
batch, waits for the broker to acknowledge all of it, and only then saves the batch's last
position. A crash anywhere repeats at most the unconfirmed batch. Before and after each batch
it asks the publisher whether the broker lost its data (the embedded broker is memory-only);
if so it starts again from position 1, refilling the broker from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hero.store.checkpoints import CheckpointStore
from hero.store.port import EventStore, RecordedEvent

__all__ = ["LeaseLost", "OutboxRelay", "Publisher", "RelayProgress"]

log = logging.getLogger(__name__)


class Publisher(ABC):
    """Where the relay sends events (Kafka in production; a list in unit tests)."""

    @abstractmethod
    async def publish(self, events: Sequence[RecordedEvent]) -> None:
        """Send all events, keyed by stream; return once every one is acknowledged."""

    @abstractmethod
    async def lost_data(self) -> bool:
        """True when the destination no longer holds what was confirmed to it."""

    @abstractmethod
    async def reset(self) -> None:
        """Prepare an empty destination for a refill from position 1."""


class LeaseLost(RuntimeError):
    """The relay no longer holds its lease: another relay may be publishing; it must stop."""


@dataclass(frozen=True)
class RelayProgress:
    position: int
    published: int
    refills: int


class OutboxRelay:
    def __init__(
        self,
        store: EventStore,
        checkpoints: CheckpointStore,
        publisher: Publisher,
        *,
        name: str = "relay",
        batch_size: int = 1000,
        poll_interval_s: float = 0.05,
        epoch_check_interval_s: float = 1.0,
        max_backoff_s: float = 5.0,
        on_progress: Callable[[RelayProgress], None] | None = None,
        holds_lease: Callable[[], bool] | None = None,
    ):
        """``holds_lease``: asked before every batch (in a worker thread); False stops the
        relay with :class:`LeaseLost`. None: a relay that runs alone."""
        self._store = store
        self._checkpoints = checkpoints
        self._publisher = publisher
        self._name = name
        self._batch_size = batch_size
        self._poll_interval = poll_interval_s
        self._check_interval = epoch_check_interval_s
        self._max_backoff = max_backoff_s
        self._on_progress = on_progress
        self._holds_lease = holds_lease
        self._position = checkpoints.load(name)
        self._published = 0
        self._refills = 0
        self._last_check = float("-inf")

    @property
    def position(self) -> int:
        return self._position

    @property
    def progress(self) -> RelayProgress:
        return RelayProgress(self._position, self._published, self._refills)

    async def _refill_if_lost(self) -> bool:
        self._last_check = time.monotonic()
        if not await self._publisher.lost_data():
            return False
        if self._position:
            log.warning("broker lost its data; refilling from position 1 (was %d)", self._position)
        else:
            log.info("broker has no epoch marker yet; marking it before publishing")
        # Forget the position before the reset recreates the marker: a crash in between must
        # not leave an old checkpoint in front of an empty broker.
        self._position = 0
        self._checkpoints.save(self._name, 0)
        await self._publisher.reset()
        self._refills += 1
        return True

    async def publish_batch(self) -> int:
        """Publish the next batch; returns how many events it confirmed (0: nothing new)."""
        if self._holds_lease is not None and not await asyncio.to_thread(self._holds_lease):
            raise LeaseLost(f"{self._name} lost its lease at position {self._position}")
        if time.monotonic() - self._last_check >= self._check_interval:
            await self._refill_if_lost()
        batch = await asyncio.to_thread(self._store.read_all, self._position + 1, self._batch_size)
        if not batch:
            return 0
        await self._publisher.publish(batch)
        # The broker may have restarted empty while the batch was in flight.
        if await self._refill_if_lost():
            return 0
        self._position = batch[-1].position
        self._checkpoints.save(self._name, self._position)
        self._published += len(batch)
        if self._on_progress is not None:
            self._on_progress(self.progress)
        return len(batch)

    async def drain(self) -> int:
        """Publish until the store has nothing newer; returns how many were confirmed."""
        total = 0
        while True:
            total += await self.publish_batch()
            if self._position >= await asyncio.to_thread(self._store.current_position):
                return total

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set; raises :class:`LeaseLost` when the lease is gone."""
        backoff = self._poll_interval
        while not stop.is_set():
            try:
                count = await self.publish_batch()
                backoff = self._poll_interval
            except LeaseLost:
                raise
            except Exception as error:  # a broker outage must not end the relay
                log.warning("relay batch failed, retrying in %.2fs: %s", backoff, error)
                self._last_check = float("-inf")
                count = 0
                await _wait(stop, backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if count == 0:
                if self._on_progress is not None:
                    self._on_progress(self.progress)
                await self._idle(stop)

    async def _idle(self, stop: asyncio.Event) -> None:
        """Until the store has an event past ours (PostgreSQL wakes us at its commit, the
        others are polled), ``stop`` is set, or the broker check is due."""
        waiter = asyncio.ensure_future(
            asyncio.to_thread(self._store.wait_for_new, self._position, self._check_interval)
        )
        # Left running when ``stop`` wins; its outcome is read so that no error goes unheard.
        waiter.add_done_callback(lambda done: done.cancelled() or done.exception())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if waiter.done() and waiter.exception() is not None:
            # The store is unreachable: the next batch reports it and backs off.
            log.warning("waiting for new events failed: %s", waiter.exception())
            await _wait(stop, self._poll_interval)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
