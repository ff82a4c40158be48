"""One follower of the event store per gateway process, fanned out to every subscriber.

The follower reads the log forward in a thread (``recorded_after``, polling) and hands each new
row, parsed once, to the subscribers of its topic. A subscriber first catches up from the store
(at its own pace: a slow reader only slows its own reads) and then switches to the live feed:
it registers its queue, reads the store up to the position the broadcaster had reached when it
registered, then takes the queue, dropping anything at or below what it already delivered. No
gap, no duplicate.

Live queues are bounded. A live subscriber whose queue is full is closed with
:class:`SlowConsumer` (its queue is freed at once); the client resumes with ``Last-Event-ID``.
A subscriber still catching up whose queue overflows only drops the queue and goes on reading
the store: the store, not memory, is its buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from hero.store import EventStore, RecordedEvent, recorded_after

__all__ = ["BroadcastStats", "Broadcaster", "LogItem", "SlowConsumer"]


@dataclass(frozen=True, slots=True)
class LogItem:
    """A store row with its envelope parsed once, shared by every subscriber."""

    position: int
    topic: str
    type: str
    envelope: dict[str, Any]

    @classmethod
    def of(cls, row: RecordedEvent) -> LogItem:
        return cls(row.position, row.topic, row.type, json.loads(row.envelope_json))


class SlowConsumer(Exception):
    """A live subscriber fell ``limit`` events behind; its queue was dropped."""

    def __init__(self, limit: int, position: int, delivered: int):
        self.limit, self.position, self.delivered = limit, position, delivered
        super().__init__(
            f"slow consumer: buffer limit {limit} reached at position {position}; "
            f"reconnect with Last-Event-ID (last delivered: {delivered})"
        )


@dataclass
class BroadcastStats:
    """Numbers for ``/metrics``: live subscribers, slow-consumer closes, the follower's place."""

    subscribers: int = 0
    """Open subscriptions, catching up or live."""
    live: int = 0
    """Subscriptions on the live feed (each holds one bounded queue)."""
    subscribed_total: int = 0
    slow_consumer_drops: int = 0
    catch_up_restarts: int = 0
    rows_fanned_out: int = 0
    position: int = 0
    max_queue_depth: int = 0
    """The deepest any subscriber queue has been: never above the limit."""


@dataclass(eq=False)
class _Subscription:
    topic: str
    limit: int
    registered_at: int
    queue: deque[LogItem] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    overflow_at: int | None = None


class Broadcaster:
    """Follows ``store`` from its head on; :meth:`subscribe` yields a topic's rows after a
    position, history first, then live. Start lazily from the event loop; :meth:`close` stops
    the follower thread."""

    def __init__(
        self,
        store: EventStore,
        *,
        queue_limit: int = 1000,
        poll_interval_s: float = 0.1,
        read_batch: int = 500,
        fanout_chunk: int = 100,
    ):
        if queue_limit < 1 or read_batch < 1 or fanout_chunk < 1:
            raise ValueError("queue_limit, read_batch and fanout_chunk must be >= 1")
        self.store = store
        self.queue_limit = queue_limit
        self.poll_interval_s = poll_interval_s
        self.read_batch = read_batch
        self.fanout_chunk = fanout_chunk
        self.stats = BroadcastStats()
        self._subscriptions: dict[str, set[_Subscription]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start_lock = asyncio.Lock()

    @property
    def position(self) -> int:
        """The last position fanned out to the live queues."""
        return self.stats.position

    async def start(self) -> None:
        async with self._start_lock:
            if self._thread is not None:
                return
            self._loop = asyncio.get_running_loop()
            self.stats.position = await asyncio.to_thread(self.store.current_position)
            self._thread = threading.Thread(
                target=self._follow, args=(self.stats.position,), name="hero-broadcast", daemon=True
            )
            self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    # -- the follower (its own thread) -----------------------------------------------------

    def _follow(self, position: int) -> None:
        loop = self._loop
        assert loop is not None
        while not self._stop.is_set():
            chunk: list[LogItem] = []
            for row in recorded_after(self.store, position, self.read_batch):
                chunk.append(LogItem.of(row))
                position = row.position
                if len(chunk) >= self.fanout_chunk:
                    if not self._hand_over(loop, chunk):
                        return
                    chunk = []
            if chunk and not self._hand_over(loop, chunk):
                return
            self._stop.wait(self.poll_interval_s)

    def _hand_over(self, loop: asyncio.AbstractEventLoop, chunk: list[LogItem]) -> bool:
        """Publish on the loop and wait for it: the follower never runs ahead of the loop by
        more than one chunk. False when the loop is gone."""
        if loop.is_closed():
            return False
        future = asyncio.run_coroutine_threadsafe(self._publish(chunk), loop)
        while not self._stop.is_set() and not loop.is_closed():
            try:
                future.result(timeout=0.5)
                return True
            except TimeoutError:
                continue
            except (RuntimeError, asyncio.CancelledError):
                return False
        future.cancel()
        return False

    # -- the loop side ---------------------------------------------------------------------

    async def _publish(self, items: list[LogItem]) -> None:
        stats = self.stats
        for item in items:
            for sub in self._subscriptions.get(item.topic, ()):
                if sub.overflow_at is not None:
                    continue
                if len(sub.queue) >= sub.limit:
                    sub.overflow_at = item.position
                    sub.queue.clear()
                else:
                    sub.queue.append(item)
                    stats.max_queue_depth = max(stats.max_queue_depth, len(sub.queue))
                sub.wake.set()
            stats.position = item.position
            stats.rows_fanned_out += 1
        # let subscribers drain before the next chunk comes in
        await asyncio.sleep(0)

    def _register(self, topic: str, limit: int) -> _Subscription:
        sub = _Subscription(topic=topic, limit=limit, registered_at=self.stats.position)
        self._subscriptions.setdefault(topic, set()).add(sub)
        self.stats.live += 1
        return sub

    def _unregister(self, sub: _Subscription) -> None:
        subs = self._subscriptions.get(sub.topic)
        if subs is not None and sub in subs:
            subs.discard(sub)
            self.stats.live -= 1
            sub.queue.clear()

    async def _history(self, after: int, upto: int | None) -> list[LogItem]:
        """Up to ``read_batch`` rows after ``after`` (and at most ``upto``), read in a thread."""

        def read() -> list[LogItem]:
            limit = self.read_batch if upto is None else min(self.read_batch, upto - after)
            if limit <= 0:
                return []
            return [LogItem.of(row) for row in self.store.read_all(after + 1, limit)]

        return await asyncio.to_thread(read)

    async def subscribe(
        self,
        topic: str,
        after: int,
        *,
        limit: int | None = None,
        on_live: Callable[[], None] | None = None,
    ) -> AsyncGenerator[LogItem, None]:
        """Every row of ``topic`` after position ``after``, in order, without end.

        Raises :class:`SlowConsumer` once live if the caller lets ``limit`` rows pile up.
        """
        await self.start()
        limit = limit or self.queue_limit
        cursor = after
        self.stats.subscribed_total += 1
        self.stats.subscribers += 1
        try:
            async with contextlib.aclosing(self._rows(topic, cursor, limit, on_live)) as rows:
                async for item in rows:
                    yield item
        finally:
            self.stats.subscribers -= 1

    async def _rows(
        self, topic: str, cursor: int, limit: int, on_live: Callable[[], None] | None
    ) -> AsyncGenerator[LogItem, None]:
        while True:
            # 1. catch up from the store, as fast as the caller reads
            while cursor < self.stats.position:
                batch = await self._history(cursor, None)
                if not batch:
                    break
                for item in batch:
                    cursor = item.position
                    if item.topic == topic:
                        yield item
            # 2. register, then bridge the rows published before registration
            sub = self._register(topic, limit)
            try:
                while cursor < sub.registered_at and sub.overflow_at is None:
                    batch = await self._history(cursor, sub.registered_at)
                    if not batch:
                        break
                    for item in batch:
                        cursor = item.position
                        if item.topic == topic:
                            yield item
                if sub.overflow_at is not None:
                    self.stats.catch_up_restarts += 1
                    continue  # fell behind while bridging: read the store again
                # 3. live
                if on_live is not None:
                    on_live()
                while True:
                    if sub.queue:
                        item = sub.queue.popleft()
                        if item.position <= cursor:
                            continue
                        cursor = item.position
                        yield item
                    elif sub.overflow_at is not None:
                        self.stats.slow_consumer_drops += 1
                        raise SlowConsumer(limit, sub.overflow_at, cursor)
                    else:
                        sub.wake.clear()
                        await sub.wake.wait()
            finally:
                self._unregister(sub)


@contextlib.asynccontextmanager
async def broadcasting(store: EventStore, **options: Any) -> AsyncIterator[Broadcaster]:
    """A started broadcaster for the block (tests, benchmarks)."""
    broadcaster = Broadcaster(store, **options)
    await broadcaster.start()
    try:
        yield broadcaster
    finally:
        await asyncio.to_thread(broadcaster.close)
