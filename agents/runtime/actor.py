"""The agent host as a Ray actor: one shard of the agents in one process.

The actor starts its loop from ``__init__`` (an async actor's ``__init__`` runs on the
actor's event loop, so it can create the task). Ray calls ``__init__`` again when it restarts
a dead host (``max_restarts=-1``), so a restarted host always rebuilds: it replays the store
to the position it reads at start, then follows Kafka -- the same path as a first start.
A loop that dies of an unexpected error ends the process, so Ray restarts it the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import ray

from agents.market import MarketView
from agents.roster import Roster, market_roster
from agents.runtime.feed import KafkaFeed, StoreHistory
from agents.runtime.host import AgentHostCore, HostOptions, HostStats, host_snapshots
from agents.runtime.refresh import SnapshotRefresher
from agents.runtime.sink import SinkFactory, market_service_sink
from agents.strategies.consulting import CallBudget
from agents.strategies.moves import Advisor, NoAdvisor
from hero.config import HeroSettings
from hero.store import SnapshotCadence, open_snapshots, open_store

__all__ = ["AgentHost", "AgentHostActor", "MarketFactory", "default_market"]

log = logging.getLogger(__name__)

T = TypeVar("T")
MarketFactory = Callable[[], "MarketView"]


def default_market() -> MarketView:
    return MarketView()


class AgentHostActor:
    """Wraps :class:`AgentHostCore` with the settings' store and Kafka feed."""

    def __init__(
        self,
        settings: HeroSettings,
        shard: int,
        shards: int,
        *,
        market_factory: MarketFactory | None = None,
        sink_factory: SinkFactory | None = None,
        options: HostOptions | None = None,
        autostart: bool = True,
        roster: Roster | None = None,
    ):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        if not settings.kafka_bootstrap:
            raise ValueError("an agent host needs settings.kafka_bootstrap")
        self._store = open_store(settings.effective_store_url)
        cadence = SnapshotCadence(settings.snapshot_every_events, settings.snapshot_every_s)
        snapshots = host_snapshots(
            open_snapshots(settings.effective_store_url), shard, shards, cadence
        )
        options = options or HostOptions(compact_after_s=settings.compact_after_s)
        self.core = AgentHostCore(
            shard=shard,
            shards=shards,
            market=(market_factory or default_market)(),
            roster=roster or market_roster,
            history=StoreHistory(self._store),
            feed=KafkaFeed(settings.kafka_bootstrap),
            sink=(sink_factory or market_service_sink)(settings, self._store),
            options=options,
            advisor=_advisor(settings),
            budget=CallBudget(
                per_negotiation=settings.llm_max_calls_per_negotiation,
                per_minute=settings.llm_max_calls_per_minute,
            ),
            llm_timeout_s=settings.llm_timeout_s,
            llm_max_concurrent=settings.llm_max_concurrent,
            snapshots=snapshots,
        )
        # Brings the snapshot forward while the host follows Kafka (only a real market's).
        self._refresher = SnapshotRefresher(
            self._store, snapshots, shard, shards,
            ready=lambda: self.core.caught_up, roster=roster or market_roster,
            compact_after_s=options.compact_after_s,
        )  # fmt: skip
        if type(self.core.market) is MarketView:
            self._refresher.start()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reconstructed = _was_reconstructed()
        self._node_id, self._node = _node_of_this_process()
        if autostart:
            self._start()

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.core.run(self._stop))
            self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._stop.is_set():
            return
        error = task.exception()
        log.critical("agent host loop ended unexpectedly: %r; exiting for a restart", error)
        os._exit(1)

    async def start(self) -> bool:
        """Start the loop if it is not running (it starts from ``__init__`` by default)."""
        self._start()
        return True

    async def stop(self) -> None:
        """Stop reading and wait for the commands in flight (the actor stays alive)."""
        self._stop.set()
        self._refresher.stop()
        if self._task is not None:
            await self._task

    async def stats(self) -> HostStats:
        stats = self.core.stats()
        stats.reconstructed = self._reconstructed
        stats.node, stats.node_id = self._node, self._node_id
        return stats

    async def ping(self) -> str:
        return "pong"

    async def pid(self) -> int:
        return os.getpid()

    async def inspect(self, probe: Callable[[AgentHostCore], T]) -> T:
        """Run a read-only ``probe`` against the core (tests and debugging)."""
        return probe(self.core)


def _advisor(settings: HeroSettings) -> Advisor:
    """The model the settings name (LangChain is imported only when one is configured)."""
    if not settings.llm:
        return NoAdvisor()
    from agents.strategies.chat import LlmConfigError
    from agents.strategies.llm import advisor_from_settings

    try:
        advisor = advisor_from_settings(settings)
    except LlmConfigError as error:  # the rules serve; a host that cannot start would loop
        log.error("no language model for the agents: %s; the rules decide", error)
        return NoAdvisor(f"model unavailable: {error}"[:500])
    log.info("agents negotiating with a model consult %s", advisor.name)
    return advisor


def _node_of_this_process() -> tuple[str, str]:
    """(node id, node name) of the Ray node this actor runs on; empty outside Ray."""
    try:
        node_id = ray.get_runtime_context().get_node_id()
        names = {n["NodeID"]: n.get("NodeName", "") for n in ray.nodes()}  # type: ignore[no-untyped-call]
    except Exception:  # not inside a Ray actor
        return "", ""
    return node_id, str(names.get(node_id, ""))


def _was_reconstructed() -> bool:
    try:
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # not inside a Ray actor
        return False


#: The Ray actor class: restarted forever, tasks retried across restarts, no CPU reserved
#: (a host mostly waits on I/O; Ray's CPU accounting would otherwise cap hosts per node).
AgentHost: Any = ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0)(AgentHostActor)
