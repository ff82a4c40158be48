"""Where a host's commands go: the market service, called from worker threads.

The host treats a ``ValueError`` from the sink as the domain's refusal (the market service's
``CommandRejected`` is one; so is a pydantic ``ValidationError``): it is counted, never
retried. Anything else (a locked SQLite file, a concurrency conflict the service gave up on,
a dropped connection) is transient and retried a few times.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from schemas import Command

if TYPE_CHECKING:
    from hero.config import HeroSettings
    from hero.store import EventStore

__all__ = [
    "CommandSink",
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


def market_service_sink(settings: HeroSettings, store: EventStore) -> CommandSink:
    """The production sink: ``hero.market.service.MarketService`` over the host's store."""
    from hero.domain.clock import SystemClock
    from hero.market.service import MarketService

    service = MarketService(store, SystemClock())
    return ThreadedSink(lambda agent_id, command: service.handle(command, actor=agent_id))
