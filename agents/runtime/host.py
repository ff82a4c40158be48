"""The agent host: one shard of the agents, fed every market event, deciding when it may.

Every host folds the whole market (a farmer needs to see all RFQs, an offtaker all offers)
and keeps only the brains of its shard. Per event, in log order:

1. drop it if it was applied already (the log repeats; see ``AppliedVersions``);
2. ``market.apply`` -- the shared view first, so a brain observing the event sees it;
3. ``roster`` -- adopt the brains this event creates, if this shard owns them;
4. ``market.route`` -- ``observe`` on each routed brain this shard owns.

Catch-up: at start the host reads the store's position P0 and replays the store up to it
before acting; while it does, brains only fold. Once caught up it calls ``decide`` once on
every brain (brains are level-triggered: this is how a restarted host resumes, e.g. sends an
offer its predecessor decided but died before sending; command ids are deterministic, so a
command that did reach the store is not applied twice), then follows Kafka, deciding after
each batch for the brains that received events and for those whose wakeup came, and at least
every ``decide_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from agents.agentset import deliver
from agents.brain import Brain
from agents.market import MarketView
from agents.offtaker import OfftakerBrain
from agents.roster import Roster, market_roster
from agents.runtime.feed import Delivery, EventFeed, History
from agents.runtime.memory import mean_deep_size, rss_bytes
from agents.runtime.routing import AppliedVersions, kind_of, shard_of
from agents.runtime.sink import CommandSink, is_rejection, rejection_reason
from agents.runtime.snapshot import HOST_SCHEMA_VERSION, HostState, decode_host, encode_host
from agents.strategies.consulting import CallBudget, ConsultStats, answer_at_once, failed_advice
from agents.strategies.moves import Advisor, NoAdvisor, Question
from hero.domain.clock import Clock, SystemClock
from hero.model import COMPACT_AFTER_S, compact_at
from hero.model.snapshot import SnapshotUnreadable
from hero.store import SnapshotCadence, SnapshotKeeper, SnapshotStore
from schemas import Command

__all__ = ["AgentHostCore", "HostOptions", "HostStats", "host_snapshots", "snapshot_name"]

log = logging.getLogger(__name__)

_YIELD_EVERY_S = 0.02


@dataclass(frozen=True)
class HostOptions:
    decide_interval_s: float = 0.05
    """The longest a due wakeup waits; also the Kafka poll timeout."""
    max_in_flight: int = 256
    """Commands sent concurrently: the sink writes those queued together in one commit."""
    max_pending: int = 10_000
    """Commands queued behind those; beyond it the host stops reading until some finish."""
    send_attempts: int = 4
    retry_backoff_s: float = 0.05
    resend_after_s: float = 5.0
    """A command id just sent is not sent again for this long: its effect is on its way."""
    resume_decide: bool = True
    """Decide once for every brain when caught up (the level-triggered resume)."""
    memory_sample: int = 64
    stop_timeout_s: float = 10.0
    retry_max_backoff_s: float = 5.0
    compact_after_s: float | None = COMPACT_AFTER_S
    """What ended this long (event time) before the newest event folded is dropped from the
    host's model (:func:`hero.model.compact`): before each snapshot and every
    ``compact_every_events``. None: never (the model keeps all history)."""
    compact_every_events: int = 10_000


@dataclass(kw_only=True)
class HostStats(ConsultStats):
    """The host's counters; the model calls' (``llm_*``) are its :class:`ConsultStats`."""

    shard: int
    shards: int
    pid: int
    caught_up: bool = False
    catch_up_position: int = 0
    catch_up_s: float | None = None
    snapshot_position: int | None = None
    """The position of the snapshot the catch-up started from (None: the whole log)."""
    snapshots_saved: int = 0
    compactions: int = 0
    compacted: int = 0
    """Entities (negotiations, offers, declines, contracts) compaction dropped."""
    agents: int = 0
    agents_by_kind: dict[str, int] = field(default_factory=dict)
    events_history: int = 0
    events_live: int = 0
    repeats: int = 0
    bad_records: int = 0
    apply_errors: int = 0
    max_position: int = 0
    decide_calls: int = 0
    decide_errors: int = 0
    commands_sent: int = 0
    commands_ok: int = 0
    commands_duplicate: int = 0
    commands_rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    commands_failed: int = 0
    commands_retried: int = 0
    commands_suppressed: int = 0
    commands_in_flight: int = 0
    wakeups_scheduled: int = 0
    memory_per_agent_bytes: int = 0
    rss_bytes: int = 0
    running: bool = False
    reconstructed: bool = False
    """Set by the Ray actor: this is a restart of a host that died."""
    node: str = ""
    """Set by the Ray actor: the name of the Ray node it runs on (``ray``, ``ray-2``...)."""
    node_id: str = ""
    """Set by the Ray actor: that node's id (a restarted node has a new one)."""
    mandates_refused: dict[str, str] = field(default_factory=dict)
    """Offtaker agents not asking the market under their mandate, and why (an old store's
    mandate nothing can be bought with): said here rather than retried in silence."""

    @property
    def events_applied(self) -> int:
        return self.events_history + self.events_live

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "events_applied": self.events_applied}


class AgentHostCore:
    """Plain asyncio, no Ray: ``run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        *,
        shard: int,
        shards: int,
        market: MarketView,
        history: History,
        feed: EventFeed,
        sink: CommandSink,
        clock: Clock | None = None,
        options: HostOptions | None = None,
        advisor: Advisor | None = None,
        budget: CallBudget | None = None,
        llm_timeout_s: float = 15.0,
        llm_max_concurrent: int = 4,
        roster: Roster = market_roster,
        snapshots: SnapshotKeeper | None = None,
    ):
        """With ``snapshots`` the catch-up starts from the newest snapshot of this shard
        (the store replayed only after it) and saves one as it goes when the cadence says so."""
        if not 0 <= shard < shards:
            raise ValueError(f"shard must be in 0..{shards - 1}, got {shard}")
        self.shard, self.shards = shard, shards
        self.market = market
        self._roster = roster
        self._history = history
        self._feed = feed
        self._sink = sink
        self._clock = clock or SystemClock()
        self._options = options or HostOptions()
        self._applied = AppliedVersions()
        self._brains: dict[str, Brain] = {}
        self._touched: set[str] = set()
        self._wakeup: dict[str, datetime] = {}
        self._heap: list[tuple[datetime, str]] = []
        self._in_flight: set[str] = set()
        self._recent: dict[str, float] = {}  # command id -> monotonic time it may be resent
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(self._options.max_in_flight)
        self._stats = HostStats(shard=shard, shards=shards, pid=os.getpid())
        self._rejections: Counter[str] = Counter()
        self._advisor = advisor or NoAdvisor()
        self._budget = budget or CallBudget()
        self._llm_timeout_s = llm_timeout_s
        self._llm_slots = asyncio.Semaphore(llm_max_concurrent)
        self._consults: set[asyncio.Task[None]] = set()
        self._snapshots = snapshots
        self._newest: datetime | None = None  # the newest event time folded: the horizon's
        self._uncompacted = 0  # events folded since the last compaction

    # -- what the host holds --------------------------------------------------------------

    @property
    def caught_up(self) -> bool:
        return self._stats.caught_up

    @property
    def brains(self) -> Mapping[str, Brain]:
        return self._brains

    def owns(self, agent_id: str) -> bool:
        return shard_of(agent_id, self.shards) == self.shard

    def stats(self) -> HostStats:
        s = self._stats
        s.agents = len(self._brains)
        s.agents_by_kind = dict(Counter(kind_of(agent_id) for agent_id in self._brains))
        s.repeats = self._history.counts.repeats + self._feed.counts.repeats
        s.bad_records = self._history.counts.bad_records + self._feed.counts.bad_records
        s.rejected_by_reason = dict(self._rejections)
        s.commands_in_flight = len(self._in_flight)
        s.wakeups_scheduled = len(self._wakeup)
        s.memory_per_agent_bytes = self._memory_per_agent()
        s.rss_bytes = rss_bytes()
        s.mandates_refused = {
            agent_id: brain.mandate_refused
            for agent_id, brain in self._brains.items()
            if isinstance(brain, OfftakerBrain) and brain.mandate_refused
        }
        return HostStats(**asdict(s))

    def _memory_per_agent(self) -> int:
        brains = list(self._brains.values())
        step = max(1, len(brains) // max(1, self._options.memory_sample))
        return mean_deep_size(list(brains[::step]), exclude=[self.market])

    # -- the loop -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._stats.running = True
        try:
            await self._retrying(self._catch_up, stop, "catch-up")
            if self._options.resume_decide and not stop.is_set():
                await self._decide_and_send(list(self._brains), self._clock.now())
            await self._retrying(self._feed.start, stop, "starting the Kafka feed")
            await self._follow(stop)
        finally:
            self._stats.running = False
            for task in list(self._consults):
                task.cancel()
            await self._feed.stop()
            await self._drain_sends()

    async def _catch_up(self) -> None:
        started = time.monotonic()
        p0 = await self._history.position()
        self._stats.catch_up_position = p0
        after = await self._restore(p0)
        admit = self._applied.admit
        # Only a host started from a snapshot asks for a part of the history.
        history = self._history.replay(p0, admit, after=after) if after else self._history.replay(
            p0, admit)  # fmt: skip
        async for batch in history:
            self._stats.events_history += self._ingest(batch)
            await self._snapshot_if_due(batch[-1].envelope.position)
            await asyncio.sleep(0)  # answer stats/ping between batches of a long history
        # Only when due, as while it went: an encode here (0.6 s at 100k events, 6 s at 1M)
        # would hold back the first decision; the refresher brings it forward once we follow.
        await self._snapshot_if_due(p0)
        self._touched.clear()  # history is folded, not decided
        self._stats.caught_up = True
        self._stats.catch_up_s = round(time.monotonic() - started, 3)
        log.info(
            "shard %d/%d caught up to position %d in %.2fs: %d agents",
            self.shard, self.shards, p0, self._stats.catch_up_s, len(self._brains),
        )  # fmt: skip

    # -- snapshots --------------------------------------------------------------------------

    async def _restore(self, p0: int) -> int:
        """Start from the newest snapshot at or before ``p0``; the position to replay after
        (0: none usable, the whole log)."""
        keeper = self._snapshots
        if keeper is None or type(self.market) is not MarketView:
            return 0
        found = await asyncio.to_thread(keeper.newest, p0)
        if found is None:
            return 0
        try:
            restored = await asyncio.to_thread(decode_host, found.body)
        except SnapshotUnreadable as error:
            keeper.unreadable(found, str(error))
            return 0
        self.market = MarketView(restored.state)
        self._applied = restored.applied
        self._brains = {a: b for a, b in restored.brains.items() if self.owns(a)}
        for agent_id in self._brains:
            self._schedule(agent_id)
        keeper.started_from(found.position)
        self._stats.snapshot_position = self._stats.max_position = found.position
        log.info("shard %d/%d starts from its snapshot at %d", self.shard, self.shards,
                 found.position)  # fmt: skip
        return found.position

    async def _snapshot_if_due(self, position: int) -> None:
        """Save the folded state through ``position`` (read from the store in log order, and
        nothing decided yet: a state a restart may start from) when the cadence says so."""
        keeper = self._snapshots
        if keeper is None or type(self.market) is not MarketView or not keeper.due(position):
            return
        self._compact()
        # a catch-up folds the store in log order: everything through ``position`` is applied
        self._applied.settle(position)
        host = HostState(self.market.state, self._applied, self._brains)
        body = await asyncio.to_thread(encode_host, host)
        if await asyncio.to_thread(keeper.save, position, body):
            self._stats.snapshots_saved += 1

    async def _follow(self, stop: asyncio.Event) -> None:
        timeout_ms = max(1, int(self._options.decide_interval_s * 1000))
        backoff = self._options.retry_backoff_s
        while not stop.is_set():
            try:
                batch = await self._feed.poll(timeout_ms, self._applied.admit)
                backoff = self._options.retry_backoff_s
            except Exception as error:  # a broker outage must not end the host
                log.warning("polling failed, retrying in %.2fs: %r", backoff, error)
                await _wait(stop, backoff)
                backoff = min(backoff * 2, self._options.retry_max_backoff_s)
                continue
            if batch:
                self._stats.events_live += self._ingest(batch)
            now = self._clock.now()
            due = self._touched | self._due(now)
            self._touched = set()
            await self._decide_and_send(due, now)

    async def _retrying(
        self, step: Callable[[], Awaitable[None]], stop: asyncio.Event, what: str
    ) -> None:
        backoff = self._options.retry_backoff_s
        while not stop.is_set():
            try:
                await step()
                return
            except Exception as error:
                log.warning("%s failed, retrying in %.2fs: %r", what, backoff, error)
                await _wait(stop, backoff)
                backoff = min(backoff * 2, self._options.retry_max_backoff_s)

    # -- folding --------------------------------------------------------------------------

    def _ingest(self, batch: list[Delivery]) -> int:
        touched: set[str] = set()
        market, roster = self.market, self._roster
        for delivery in batch:
            envelope, event = delivery.envelope, delivery.event
            try:
                touched |= deliver(market, self._brains, self.owns, envelope, event, roster)
            except Exception:  # one bad event or brain must not stop the other agents
                self._stats.apply_errors += 1
                log.exception("applying %s %s@%d", envelope.type, envelope.stream, envelope.version)
            if envelope.position > self._stats.max_position:
                self._stats.max_position = envelope.position
            if self._newest is None or envelope.occurred_at > self._newest:
                self._newest = envelope.occurred_at
        self._uncompacted += len(batch)
        if self._uncompacted >= self._options.compact_every_events:
            self._compact()
        for agent_id in touched:
            self._schedule(agent_id)
        self._touched |= touched
        return len(batch)

    def _compact(self) -> None:
        """Drop the finished history the horizon left behind (only a real market's: the
        brains read a :class:`MarketView`'s model, which compaction keeps consistent)."""
        self._uncompacted = 0
        if type(self.market) is not MarketView:
            return
        dropped = compact_at(self.market.state, self._newest, self._options.compact_after_s)
        self._stats.compactions += 1
        self._stats.compacted += dropped.total

    # -- deciding -------------------------------------------------------------------------

    def _schedule(self, agent_id: str) -> None:
        """Track the brain's next wakeup (stale heap entries are skipped when popped)."""
        wakeup = self._brains[agent_id].next_wakeup()
        if wakeup is None:
            self._wakeup.pop(agent_id, None)
        elif self._wakeup.get(agent_id) != wakeup:
            self._wakeup[agent_id] = wakeup
            heapq.heappush(self._heap, (wakeup, agent_id))
            if len(self._heap) > 2 * len(self._wakeup) + 1024:
                self._heap = [(w, a) for a, w in self._wakeup.items()]
                heapq.heapify(self._heap)

    def _due(self, now: datetime) -> set[str]:
        due: set[str] = set()
        while self._heap and self._heap[0][0] <= now:
            wakeup, agent_id = heapq.heappop(self._heap)
            if self._wakeup.get(agent_id) == wakeup:
                del self._wakeup[agent_id]
                due.add(agent_id)
        return due

    async def _decide_and_send(self, agent_ids: Iterable[str], now: datetime) -> None:
        commands: list[tuple[str, Command]] = []
        yielded = time.monotonic()
        for agent_id in agent_ids:
            if time.monotonic() - yielded > _YIELD_EVERY_S:
                await asyncio.sleep(0)  # a long pass (the resume) must not starve stats/ping
                yielded = time.monotonic()
            brain = self._brains.get(agent_id)
            if brain is None:
                continue
            self._stats.decide_calls += 1
            try:
                commands.extend((agent_id, c) for c in brain.decide(now, self.market))
                self._ask(agent_id, brain, now)
            except Exception:
                self._stats.decide_errors += 1
                log.exception("%s: decide failed", agent_id)
            self._schedule(agent_id)
        await self._dispatch(commands)

    # -- asking a strategy ------------------------------------------------------------------

    def _ask(self, agent_id: str, brain: Brain, now: datetime) -> None:
        """Ask the questions the brain raised: answered at once without a model or budget,
        else by the model off the loop; an answer makes the brain decide again."""
        for question in brain.questions():
            advice = answer_at_once(self._advisor, self._budget, question, now, self._stats)
            if advice is None:
                task = asyncio.create_task(self._consult(agent_id, question))
                self._consults.add(task)
                task.add_done_callback(self._consults.discard)
            elif brain.advised(advice):
                self._touched.add(agent_id)

    async def _consult(self, agent_id: str, question: Question) -> None:
        async with self._llm_slots:
            started = time.monotonic()
            left = (question.answer_by - self._clock.now()).total_seconds()
            timeout = max(0.001, min(self._llm_timeout_s, left))
            timed_out = False
            try:
                advice = await asyncio.wait_for(
                    asyncio.to_thread(self._advisor.advise, question), timeout
                )
            except TimeoutError:
                error, timed_out = f"timeout after {timeout:.3g} s", True
                advice = failed_advice(question, self._advisor, error, started)
            except Exception as exc:  # an advisor must not raise; one that does is an error
                advice = failed_advice(question, self._advisor, f"advisor error: {exc!r}", started)
        self._stats.record(advice, timed_out)
        brain = self._brains.get(agent_id)
        if brain is not None and brain.advised(advice):
            self._touched.add(agent_id)

    # -- sending --------------------------------------------------------------------------

    async def _dispatch(self, commands: list[tuple[str, Command]]) -> None:
        self._forget_old_sends()
        for agent_id, command in commands:
            command_id = command.command_id
            if command_id in self._in_flight or command_id in self._recent:
                self._stats.commands_suppressed += 1
                continue
            while len(self._tasks) >= self._options.max_pending:
                await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            self._in_flight.add(command_id)
            task = asyncio.create_task(self._send(agent_id, command))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _forget_old_sends(self) -> None:
        now = time.monotonic()
        while self._recent:
            command_id, until = next(iter(self._recent.items()))
            if until > now:
                return
            del self._recent[command_id]

    async def _send(self, agent_id: str, command: Command) -> None:
        stats, options = self._stats, self._options
        try:
            async with self._slots:
                stats.commands_sent += 1
                for attempt in range(1, options.send_attempts + 1):
                    try:
                        result = await self._sink(agent_id, command)
                    except Exception as error:
                        if is_rejection(error):
                            stats.commands_rejected += 1
                            self._rejections[rejection_reason(error)] += 1
                            log.info("%s: %s rejected: %s", agent_id, command.command_id, error)
                            return
                        if attempt == options.send_attempts:
                            stats.commands_failed += 1
                            log.warning("%s: %s failed: %r", agent_id, command.command_id, error)
                            return
                        stats.commands_retried += 1
                        await asyncio.sleep(options.retry_backoff_s * 2 ** (attempt - 1))
                        continue
                    if getattr(result, "duplicate", False):
                        stats.commands_duplicate += 1
                    else:
                        stats.commands_ok += 1
                    return
        finally:
            self._in_flight.discard(command.command_id)
            self._recent[command.command_id] = time.monotonic() + options.resend_after_s

    async def _drain_sends(self) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=self._options.stop_timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


def snapshot_name(shard: int, shards: int) -> str:
    """Where a shard keeps its snapshots: per layout, as another count of shards splits the
    agents otherwise."""
    return f"agents-shard-{shard}-of-{shards}"


def host_snapshots(
    store: SnapshotStore, shard: int, shards: int, cadence: SnapshotCadence | None = None
) -> SnapshotKeeper:
    return SnapshotKeeper(store, snapshot_name(shard, shards), HOST_SCHEMA_VERSION, cadence)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
