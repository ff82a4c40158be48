"""One follower of the event store per gateway process, fanned out to every subscriber.

The follower reads the log forward in a thread (``recorded_after``; between reads it waits on
the store's ``wait_for_new``: woken by PostgreSQL's NOTIFY, else polling) and hands each new
row, parsed once, to the subscribers of its topic. A subscriber first catches up from the store
(at its own pace: a slow reader only slows its own reads) and then switches to the live feed:
it registers its queue, reads the store up to the position the broadcaster had reached when it
registered, then takes the queue, dropping anything at or below what it already delivered. No
gap, no duplicate.

Live queues are bounded. A live subscriber whose queue is full is closed with
:class:`SlowConsumer` (its queue is freed at once); the client resumes with ``Last-Event-ID``.
A subscriber still catching up whose queue overflows only drops the queue and goes on reading
the store: the store, not memory, is its buffer.

Catch-up is shared. The log is read in aligned blocks of ``read_batch`` positions; each block is
read from the store and parsed once, kept in a bounded LRU cache (``cache_rows`` rows in all)
and handed, as the same :class:`LogItem` objects, to every subscriber catching up over it;
concurrent reads of one block are coalesced into a single store read. A subscriber holds
references to the shared items, never copies. Each item also memoizes what the streams derive
from it (the rendered frames per visibility class, see :attr:`LogItem.memo`), so a frame is
rendered once per row and visibility class, not once per subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hero.store import (
    EventStore,
    PoisonRow,
    RecordedEvent,
    decode_event,
    recorded_after,
    skip_row,
)

__all__ = ["SOURCE", "BroadcastStats", "Broadcaster", "LogItem", "SlowConsumer", "readable"]

log = logging.getLogger(__name__)

#: The name the streams' follower records its skipped rows under.
SOURCE = "event-streams"


@dataclass(frozen=True, slots=True)
class LogItem:
    """A store row with its envelope parsed once, shared by every subscriber (read-only: never
    mutate ``envelope``). ``memo`` holds what is derived from it once for all subscribers (the
    streams' rendered frames, the redacted view), filled on the event loop only."""

    position: int
    topic: str
    type: str
    envelope: dict[str, Any]
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, row: RecordedEvent) -> LogItem:
        return cls(row.position, row.topic, row.type, json.loads(row.envelope_json))


def readable(row: RecordedEvent, store: EventStore | None = None) -> LogItem | None:
    """The row as a :class:`LogItem` if it decodes; None (and a recorded skip when ``store``
    is given) if it does not, so no subscriber is ever handed a row it cannot read."""
    try:
        decode_event(row)
    except PoisonRow as error:
        if store is not None:
            skip_row(store, SOURCE, row, error)
        return None
    return LogItem.of(row)


class _LoopGone(Exception):
    """The event loop the follower hands rows to is closed: the follower ends."""


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
    store_reads: int = 0
    """Catch-up blocks read from the store (each read once for every subscriber)."""
    cache_hits: int = 0
    """Catch-up blocks served from the shared cache or from a read already under way."""
    cached_rows: int = 0
    """Rows held by the shared catch-up cache now (never above ``cache_rows``)."""
    follower_errors: int = 0
    """Failed reads of the log by the follower thread (each logged, then retried)."""


@dataclass(frozen=True, slots=True)
class _Block:
    """The rows of positions ``first .. upto`` (all committed when read), in order."""

    first: int
    upto: int
    items: tuple[LogItem, ...]


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
        cache_rows: int = 10_000,
    ):
        if queue_limit < 1 or read_batch < 1 or fanout_chunk < 1:
            raise ValueError("queue_limit, read_batch and fanout_chunk must be >= 1")
        if cache_rows < 0:
            raise ValueError("cache_rows must be >= 0")
        self.store = store
        self.cache_rows = cache_rows
        self._cache: OrderedDict[int, _Block] = OrderedDict()
        self._reads: dict[int, tuple[int, asyncio.Future[_Block]]] = {}
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

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def stopped(self) -> bool:
        """True when the follower thread has ended without being asked to: health says so."""
        thread = self._thread
        return thread is not None and not thread.is_alive() and not self._stop.is_set()

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
            try:
                position = self._follow_once(loop, position)
            except _LoopGone:
                return
            except Exception:  # a store hiccup must not end the streams: log, wait, retry
                self.stats.follower_errors += 1
                log.exception("event streams: reading the log failed; retrying")
                position = self.stats.position  # resume after what was handed over
                self._stop.wait(self.poll_interval_s)
                continue
            self._idle(position)

    def _idle(self, position: int) -> None:
        """Until the store has an event past ``position`` (PostgreSQL wakes us at its commit,
        the others are polled) or the poll interval is over."""
        if self._stop.is_set():
            return
        try:
            self.store.wait_for_new(position, self.poll_interval_s)
        except Exception:  # the next read reports it
            self._stop.wait(self.poll_interval_s)

    def _follow_once(self, loop: asyncio.AbstractEventLoop, position: int) -> int:
        """Fan out everything committed after ``position``; returns the last position read.
        A row that does not decode is recorded as skipped and reaches no subscriber."""
        chunk: list[LogItem] = []
        for row in recorded_after(self.store, position, self.read_batch):
            item = readable(row, self.store)
            if item is not None:
                chunk.append(item)
            position = row.position
            if len(chunk) >= self.fanout_chunk:
                self._hand_over(loop, chunk, position)
                chunk = []
        if chunk or position > self.stats.position:
            self._hand_over(loop, chunk, position)
        return position

    def _hand_over(self, loop: asyncio.AbstractEventLoop, chunk: list[LogItem], upto: int) -> None:
        """Publish on the loop and wait for it: the follower never runs ahead of the loop by
        more than one chunk. :class:`_LoopGone` when the loop is gone (or we are stopping)."""
        if loop.is_closed():
            raise _LoopGone
        future = asyncio.run_coroutine_threadsafe(self._publish(chunk, upto), loop)
        while not self._stop.is_set() and not loop.is_closed():
            try:
                future.result(timeout=0.5)
                return
            except TimeoutError:
                continue
            except (RuntimeError, asyncio.CancelledError):
                raise _LoopGone from None
        future.cancel()
        raise _LoopGone

    # -- the loop side ---------------------------------------------------------------------

    async def _publish(self, items: list[LogItem], upto: int | None = None) -> None:
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
        if upto is not None:  # past the skipped rows too
            stats.position = max(stats.position, upto)
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

    # -- the shared catch-up cache (loop side) ---------------------------------------------

    async def _block(self, index: int, need: int) -> _Block:
        """Block ``index`` (positions ``index * read_batch + 1 ..``) read at least up to
        ``min(its end, need)``; ``need`` is at most the published position (committed rows).
        From the cache, from a read of it already under way, or read from the store now."""
        first = index * self.read_batch + 1
        want = min(first + self.read_batch - 1, need)
        cached = self._cache.get(index)
        if cached is not None and cached.upto >= want:
            self._cache.move_to_end(index)
            self.stats.cache_hits += 1
            await asyncio.sleep(0)  # a cache hit never waits: let the others run
            return cached
        under_way = self._reads.get(index)
        if under_way is not None and under_way[0] >= want:
            self.stats.cache_hits += 1
            return await asyncio.shield(under_way[1])
        upto = min(first + self.read_batch - 1, max(need, self.stats.position))
        read = asyncio.ensure_future(asyncio.to_thread(self._read_block, first, upto))
        self._reads[index] = (upto, read)
        self.stats.store_reads += 1
        read.add_done_callback(lambda done: self._read_done(index, done))
        return await asyncio.shield(read)

    def _read_block(self, first: int, upto: int) -> _Block:
        """In a thread: the rows of ``first .. upto``, parsed once."""
        rows = self.store.read_all(first, upto - first + 1)
        # The follower records the rows it skips; a catch-up read only leaves them out.
        items = (readable(r) for r in rows if r.position <= upto)
        return _Block(first, upto, tuple(item for item in items if item is not None))

    def _read_done(self, index: int, read: asyncio.Future[_Block]) -> None:
        under_way = self._reads.get(index)
        if under_way is not None and under_way[1] is read:
            del self._reads[index]
        if read.cancelled() or read.exception() is not None:
            return
        block = read.result()
        cached = self._cache.get(index)
        if cached is not None and cached.upto >= block.upto:
            return
        self._evict(index)
        if len(block.items) > self.cache_rows:
            return
        self._cache[index] = block
        self.stats.cached_rows += len(block.items)
        while self.stats.cached_rows > self.cache_rows:
            self._evict(next(iter(self._cache)))

    def _evict(self, index: int) -> None:
        block = self._cache.pop(index, None)
        if block is not None:
            self.stats.cached_rows -= len(block.items)

    async def _history(
        self, topic: str, cursor: int, upto: int | None
    ) -> AsyncGenerator[tuple[int, list[LogItem]], None]:
        """The rows of ``topic`` after ``cursor`` up to ``upto`` (None: up to the published
        position, which moves), block by block, as (the position read up to, the rows)."""
        while True:
            bound = self.stats.position if upto is None else upto
            if cursor >= bound:
                return
            block = await self._block(cursor // self.read_batch, bound)
            items = [
                item
                for item in block.items
                if cursor < item.position <= bound and item.topic == topic
            ]
            cursor = min(block.upto, bound)
            yield cursor, items

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
        async with contextlib.aclosing(
            self.subscribe_batches(topic, after, limit=limit, on_live=on_live)
        ) as batches:
            async for batch in batches:
                for item in batch:
                    yield item

    async def subscribe_batches(
        self,
        topic: str,
        after: int,
        *,
        limit: int | None = None,
        on_live: Callable[[], None] | None = None,
        max_batch: int | None = None,
    ) -> AsyncGenerator[Sequence[LogItem], None]:
        """:meth:`subscribe` a batch at a time: what is ready (a catch-up block's rows of the
        topic, or what the live queue holds, at most ``max_batch``; never empty), in order.
        The items are the shared ones: read-only."""
        await self.start()
        limit = limit or self.queue_limit
        self.stats.subscribed_total += 1
        self.stats.subscribers += 1
        try:
            rows = self._rows(topic, after, limit, on_live, max_batch or self.read_batch)
            async with contextlib.aclosing(rows) as batches:
                async for batch in batches:
                    yield batch
        finally:
            self.stats.subscribers -= 1

    async def _rows(
        self,
        topic: str,
        cursor: int,
        limit: int,
        on_live: Callable[[], None] | None,
        max_batch: int,
    ) -> AsyncGenerator[Sequence[LogItem], None]:
        while True:
            # 1. catch up from the store (shared blocks), as fast as the caller reads
            async with contextlib.aclosing(self._history(topic, cursor, None)) as history:
                async for read_upto, batch in history:
                    cursor = read_upto
                    if batch:
                        yield batch
            # 2. register, then bridge the rows published before registration
            sub = self._register(topic, limit)
            try:
                if sub.overflow_at is None:
                    bridge = self._history(topic, cursor, sub.registered_at)
                    async with contextlib.aclosing(bridge) as history:
                        async for read_upto, batch in history:
                            cursor = read_upto
                            if batch:
                                yield batch
                            if sub.overflow_at is not None:
                                break
                if sub.overflow_at is not None:
                    self.stats.catch_up_restarts += 1
                    continue  # fell behind while bridging: read the store again
                # 3. live
                if on_live is not None:
                    on_live()
                while True:
                    if sub.queue:
                        ready: list[LogItem] = []
                        queue = sub.queue
                        while queue and len(ready) < max_batch:
                            item = queue.popleft()
                            if item.position > cursor:
                                cursor = item.position
                                ready.append(item)
                        if ready:
                            yield ready
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
