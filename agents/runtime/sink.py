"""Where a host's commands go: the market service, called from worker threads.

The host treats a ``ValueError`` from the sink as the domain's refusal (the market service's
``CommandRejected`` is one; so is a pydantic ``ValidationError``): it is counted, never
retried. Anything else (a locked SQLite file, a concurrency conflict the service gave up on,
a dropped connection) is transient and retried a few times.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schemas import Command

if TYPE_CHECKING:
    from hero.config import HeroSettings
    from hero.store import EventStore

__all__ = [
    "CommandSink",
    "GroupCommitSink",
    "SinkFactory",
    "ThreadedSink",
    "is_rejection",
    "market_service_sink",
    "rejection_reason",
]

#: Sends one command on behalf of an agent (the id is the events' ``actor``); returns what
#: the service returns (a truthy ``.duplicate`` on it counts as an idempotent repeat).
CommandSink = Callable[[str, Command], Awaitable[object]]
#: Builds a host's sink inside its process, from the settings and the host's store.
SinkFactory = Callable[["HeroSettings", "EventStore"], CommandSink]


def is_rejection(error: BaseException) -> bool:
    return isinstance(error, ValueError)


def rejection_reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    return str(reason) if reason else type(error).__name__


class ThreadedSink:
    """A blocking ``handle(command)`` run on a pool of its own, so a slow store never
    starves the default executor that the host's store reads use."""

    def __init__(self, handle: Callable[[str, Command], object], *, threads: int = 16):
        self._handle = handle
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hero-sink")

    async def __call__(self, agent_id: str, command: Command) -> object:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._handle, agent_id, command)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class GroupCommitSink:
    """Commands queue for one writer thread, which handles whatever has queued up inside one
    group commit of the store: one commit (and one fsync) for the batch instead of one per
    append, and no writer threads of this host racing each other for the store's lock.

    A command's own refusal is its own; an error that undoes the batch (the commit failed)
    fails every command in it, and the host retries them (their ids make repeats harmless).
    """

    def __init__(
        self,
        handle: Callable[[str, Command], object],
        store: EventStore,
        *,
        max_batch: int = 256,
        on_abort: Callable[[], None] = lambda: None,
    ):
        self._handle, self._store, self._max_batch = handle, store, max_batch
        self._on_abort = on_abort
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="hero-sink", daemon=True)
        self._thread.start()

    async def __call__(self, agent_id: str, command: Command) -> object:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        self._queue.put(_Item(agent_id, command, loop, future))
        return await future

    def _write(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(item)
            self._run(batch)

    def _run(self, batch: list[_Item]) -> None:
        outcomes: list[tuple[_Item, object, BaseException | None]] = []
        try:
            with self._store.group_commit():
                for item in batch:
                    try:
                        outcomes.append((item, self._handle(item.agent_id, item.command), None))
                    except Exception as refused:
                        outcomes.append((item, None, refused))
        except Exception as aborted:  # the commit failed: nothing of the batch is stored
            self._on_abort()
            outcomes = [(item, None, aborted) for item in batch]
        for item, result, failure in outcomes:
            item.settle(result, failure)

    def close(self) -> None:
        self._queue.put(None)


@dataclass(frozen=True, slots=True)
class _Item:
    agent_id: str
    command: Command
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[object]

    def settle(self, result: object, error: BaseException | None) -> None:
        def resolve() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        with contextlib.suppress(RuntimeError):  # the host's loop has closed: nobody waits
            self.loop.call_soon_threadsafe(resolve)


def market_service_sink(settings: HeroSettings, store: EventStore) -> CommandSink:
    """The production sink: ``hero.market.service.MarketService`` over the host's store,
    written with group commits."""
    from hero.domain.clock import SystemClock
    from hero.market.service import MarketService

    service = MarketService(store, SystemClock(), pricing=settings.pricing())
    return GroupCommitSink(
        lambda agent_id, command: service.handle(command, actor=agent_id),
        store,
        on_abort=service.forget,
    )
