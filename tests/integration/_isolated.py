"""A market of a test's own, isolated from the session's stack (whose agent hosts follow the
stack's store and broker): its own store (SQLite, or a PostgreSQL database), its own broker,
a relay between them in this process. Agent hosts of the test's own run on the stack's Ray
against it (:meth:`IsolatedMarket.settings` and :meth:`IsolatedMarket.endpoints`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from hero.config import HeroSettings
from hero.log.producer import KafkaPublisher
from hero.log.topics import TopicAdmin
from hero.store import EventStore, OutboxRelay
from infra import Endpoints
from schemas import Event, NegotiationAwarded, NegotiationExpired, NegotiationFailed, RfqIssued

__all__ = ["CLOSED", "IsolatedMarket", "Journal", "isolated_market", "until"]

CLOSED = (NegotiationAwarded, NegotiationFailed, NegotiationExpired)


class Journal:
    """The store's events, read incrementally (the agents write from other processes)."""

    def __init__(self, store: EventStore):
        self._store = store
        self._position = 0
        self.events: list[Event] = []

    def refresh(self) -> list[Event]:
        while rows := self._store.read_all(self._position + 1, 5000):
            for row in rows:
                self._position = row.position
                self.events.append(row.envelope().decode())
        return self.events

    def of(self, kind: type[Event] | tuple[type[Event], ...]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def open_negotiations(self) -> set[str]:
        issued = {e.negotiation_id for e in self.of(RfqIssued)}
        return issued - {e.negotiation_id for e in self.of(CLOSED)}


async def until(condition: Callable[[], Any], what: str, deadline: float) -> Any:
    """Poll ``condition`` (sync or async) until truthy; fail at ``deadline`` (loop time)."""
    loop = asyncio.get_running_loop()
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass(frozen=True)
class IsolatedMarket:
    store: EventStore
    url: str
    bootstrap: str
    stack: Any

    def settings(self, **changes: Any) -> HeroSettings:
        base: HeroSettings = self.stack.settings
        return base.model_copy(
            update={"kafka_bootstrap": self.bootstrap, "store_url": self.url, **changes}
        )

    def endpoints(self) -> Endpoints:
        endpoints: Endpoints = self.stack.endpoints
        return endpoints.model_copy(
            update={"kafka_bootstrap": self.bootstrap, "store_url": self.url}
        )


@asynccontextmanager
async def isolated_market(
    stack: Any, broker_factory: Callable[[], Any], store_factory: Callable[[], Any]
) -> AsyncIterator[IsolatedMarket]:
    broker = broker_factory()
    bootstrap = broker.address
    admin = TopicAdmin(bootstrap)
    try:
        await admin.ensure_topics()
    finally:
        await admin.close()
    handle = store_factory()
    store = handle.open()
    publisher = KafkaPublisher(bootstrap)
    relay = OutboxRelay(store, handle.checkpoints(), publisher, poll_interval_s=0.02)
    relay_stop = asyncio.Event()
    relay_task = asyncio.create_task(relay.run(relay_stop))
    try:
        yield IsolatedMarket(store=store, url=handle.url, bootstrap=bootstrap, stack=stack)
    finally:
        relay_stop.set()
        try:
            await asyncio.wait_for(relay_task, timeout=30)
        finally:
            await publisher.close()
            broker.stop()
