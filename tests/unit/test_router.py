"""The agent host core without servers: routing by shard, repeats, catch-up, deciding, sending."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.brain import Brain
from agents.runtime import AgentHostCore, AppliedVersions, Delivery, HostOptions, shard_of
from agents.runtime.feed import Admit, FeedCounts
from hero.domain.clock import ManualClock
from schemas import ChangeNodeStatus, Command, Envelope, Event, Money, NodeStatusChanged

T0 = datetime(2026, 1, 1, tzinfo=UTC)


# -- a tiny market: "ping" nodes answered by "pong" commands ------------------------------


class PingBrain(Brain):
    __slots__ = ("decided_with", "node", "observed", "pings", "pongs", "wake_at")

    def __init__(self, node: str):
        super().__init__(f"pinger:{node}")
        self.node = node
        self.observed = 0
        self.pings: set[str] = set()
        self.pongs: set[str] = set()
        self.decided_with: list[int] = []
        self.wake_at: datetime | None = None

    def observe(self, envelope: Envelope, event: Event, market: Any) -> None:
        assert isinstance(event, NodeStatusChanged)
        self.observed += 1
        kind, _, key = event.reason.partition(":")
        if kind == "ping":
            self.pings.add(key)
        elif kind == "pong":
            self.pongs.add(key)
        elif kind == "wake":
            self.wake_at = T0 + timedelta(seconds=int(key))

    def decide(self, now: datetime, market: Any) -> list[Command]:
        self.decided_with.append(self.observed)
        commands: list[Command] = [
            ChangeNodeStatus(
                command_id=f"pong.{self.node}.{key}",
                node_id=self.node,
                status="up",  # type: ignore[arg-type]
                reason=f"pong:{key}",
            )
            for key in sorted(self.pings - self.pongs)
        ]
        if self.wake_at is not None and now >= self.wake_at:
            commands.append(
                ChangeNodeStatus(command_id=f"woke.{self.node}", node_id=self.node, status="up")  # type: ignore[arg-type]
            )
            self.wake_at = None
        return commands

    def next_wakeup(self) -> datetime | None:
        return self.wake_at


class PingMarket:
    def __init__(self) -> None:
        self.applied: Counter[tuple[str, int]] = Counter()

    def apply(self, envelope: Envelope, event: Event) -> None:
        self.applied[(envelope.stream, envelope.version)] += 1

    def route(self, envelope: Envelope, event: Event) -> set[str]:
        return {f"pinger:{event.node_id}"} if isinstance(event, NodeStatusChanged) else set()


def ping_roster(envelope: Envelope, event: Event) -> list[Brain]:
    """The test's roster: a pinger per node said hello to."""
    if isinstance(event, NodeStatusChanged) and event.reason == "hello":
        return [PingBrain(event.node_id)]
    return []


class Log:
    """Events by stream with store positions; ``delivery`` builds what a feed would hand over."""

    def __init__(self) -> None:
        self.position = 0
        self.versions: Counter[str] = Counter()

    def delivery(self, node: str, reason: str, status: str = "down") -> Delivery:
        self.position += 1
        self.versions[node] += 1
        event = NodeStatusChanged(node_id=node, status=status, reason=reason)  # type: ignore[arg-type]
        envelope = Envelope(
            id=f"evt_{self.position}",
            type="NodeStatusChanged",
            schema_version=1,
            stream=node,
            version=self.versions[node],
            position=self.position,
            occurred_at=T0,
            recorded_at=T0,
            actor="test",
            payload=event.model_dump(mode="json"),
        )
        return Delivery("hero.utilization", envelope, event)


class ListHistory:
    def __init__(self, events: list[Delivery]):
        self.events = events
        self.counts = FeedCounts()

    async def position(self) -> int:
        return self.events[-1].envelope.position if self.events else 0

    async def replay(self, upto: int, admit: Admit) -> AsyncIterator[list[Delivery]]:
        for start in range(0, len(self.events), 3):  # small batches, as the store reads them
            chunk = [d for d in self.events[start : start + 3] if d.envelope.position <= upto]
            yield [d for d in chunk if admit(d.topic, d.envelope)]


class QueueFeed:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self.counts = FeedCounts()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def poll(self, timeout_ms: int, admit: Admit) -> list[Delivery]:
        try:
            first = await asyncio.wait_for(self.queue.get(), timeout_ms / 1000)
        except TimeoutError:
            return []
        batch = [first]
        while not self.queue.empty():
            batch.append(self.queue.get_nowait())
        admitted = [d for d in batch if admit(d.topic, d.envelope)]
        self.counts.repeats += len(batch) - len(admitted)
        return admitted


class Sink:
    def __init__(self, fail: Callable[[Command, int], BaseException | None] | None = None):
        self.calls: list[str] = []
        self.applied: set[str] = set()
        self.fail = fail

    async def __call__(self, agent_id: str, command: Command) -> object:
        assert agent_id == f"pinger:{command.node_id}"  # type: ignore[attr-defined]
        self.calls.append(command.command_id)
        error = self.fail(command, self.calls.count(command.command_id)) if self.fail else None
        if error is not None:
            raise error
        self.applied.add(command.command_id)
        return None


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


class Running:
    def __init__(self, core: AgentHostCore):
        self.core, self.stop = core, asyncio.Event()
        self.task = asyncio.create_task(core.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)


def host(
    history: list[Delivery],
    *,
    shard: int = 0,
    shards: int = 1,
    sink: Sink | None = None,
    clock: ManualClock | None = None,
    **options: Any,
) -> tuple[AgentHostCore, QueueFeed, Sink]:
    feed, sink = QueueFeed(), sink or Sink()
    core = AgentHostCore(
        shard=shard,
        shards=shards,
        market=PingMarket(),  # type: ignore[arg-type]
        roster=ping_roster,
        history=ListHistory(history),
        feed=feed,
        sink=sink,
        clock=clock or ManualClock(T0),
        options=HostOptions(decide_interval_s=0.01, retry_backoff_s=0.001, **options),
    )
    return core, feed, sink


# -- tests ----------------------------------------------------------------------------------


def test_shard_of_is_stable_and_spreads_agents() -> None:
    assert shard_of("farmer:farm-1", 4) == shard_of("farmer:farm-1", 4)
    assert shard_of("farmer:farm-1", 1) == 0
    counts = Counter(shard_of(f"farmer:farm-{i}", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 800
    with pytest.raises(ValueError, match="shards"):
        shard_of("x", 0)


def test_applied_versions_are_kept_per_topic_and_stream() -> None:
    log = Log()
    first, second = log.delivery("n1", "a"), log.delivery("n1", "b")
    applied = AppliedVersions()
    # Version 2 of the stream arrives first on another topic: version 1 must still apply.
    assert applied.admit("hero.utilization", second.envelope)
    assert applied.admit("hero.reservations", first.envelope)
    assert not applied.admit("hero.reservations", first.envelope)
    assert not applied.admit("hero.utilization", second.envelope)


async def test_history_is_folded_then_decided_once_and_unanswered_pings_resume() -> None:
    log = Log()
    history = [log.delivery("n1", "hello", "up"), log.delivery("n1", "ping:1")]
    history += [log.delivery("n1", "pong:1", "up"), log.delivery("n1", "ping:2")]
    core, feed, sink = host(history)
    running = Running(core)
    try:
        await until(lambda: sink.applied == {"pong.n1.2"})
        brain = core.brains["pinger:n1"]
        assert isinstance(brain, PingBrain)
        # decide ran only after the whole history: never with a partial state
        assert brain.decided_with[0] == 4
        await feed.queue.put(log.delivery("n1", "ping:3"))
        await until(lambda: "pong.n1.3" in sink.applied)
        assert sink.calls == ["pong.n1.2", "pong.n1.3"]  # ping 1 was answered in history
        assert core.stats().events_applied == 5
    finally:
        await running.close()


async def test_each_host_folds_every_event_but_keeps_only_its_shard() -> None:
    log = Log()
    nodes = [f"node-{i}" for i in range(40)]
    events = [log.delivery(n, "hello", "up") for n in nodes]
    events += [log.delivery(n, "ping:1") for n in nodes]
    hosts = [host([], shard=s, shards=3) for s in range(3)]
    running = [Running(core) for core, _, _ in hosts]
    try:
        for _, feed, _ in hosts:
            for delivery in events + events[:10]:  # a republished head: repeats
                await feed.queue.put(delivery)
        await until(lambda: sum(len(sink.applied) for _, _, sink in hosts) == len(nodes))
        owners: dict[str, int] = {}
        for core, _, sink in hosts:
            market = core.market
            assert isinstance(market, PingMarket)
            assert sum(market.applied.values()) == len(events)  # all events, once each
            assert set(market.applied.values()) == {1}
            for agent_id in core.brains:
                assert shard_of(agent_id, 3) == core.shard
                owners[agent_id] = core.shard
            assert sink.applied == {f"pong.{a.split(':')[1]}.1" for a in core.brains}
            assert core.stats().repeats == 10
        assert sorted(owners) == sorted(f"pinger:{n}" for n in nodes)
    finally:
        for r in running:
            await r.close()


async def test_wakeups_are_decided_without_events() -> None:
    log = Log()
    clock = ManualClock(T0)
    core, feed, sink = host([log.delivery("n1", "hello", "up")], clock=clock)
    running = Running(core)
    try:
        await until(lambda: core.caught_up)
        await feed.queue.put(log.delivery("n1", "wake:30"))
        await until(lambda: core.stats().wakeups_scheduled == 1)
        assert sink.calls == []
        clock.advance(timedelta(seconds=31))
        await until(lambda: sink.calls == ["woke.n1"])
    finally:
        await running.close()


async def test_rejections_are_counted_and_transient_errors_retried() -> None:
    def fail(command: Command, attempt: int) -> BaseException | None:
        if command.command_id == "pong.n1.1":
            return ValueError("refused")
        if command.command_id == "pong.n1.2" and attempt < 3:
            return OSError("database is locked")
        return None

    log = Log()
    history = [log.delivery("n1", "hello", "up"), log.delivery("n1", "ping:1")]
    core, _, sink = host([*history, log.delivery("n1", "ping:2")], sink=Sink(fail))
    running = Running(core)
    try:
        await until(lambda: "pong.n1.2" in sink.applied)
        stats = core.stats()
        assert (stats.commands_rejected, stats.commands_retried, stats.commands_ok) == (1, 2, 1)
        assert stats.rejected_by_reason == {"ValueError": 1}
        assert sink.calls.count("pong.n1.1") == 1  # a refusal is not retried
    finally:
        await running.close()


async def test_a_command_in_flight_or_just_sent_is_not_sent_again() -> None:
    release = asyncio.Event()

    class SlowSink(Sink):
        async def __call__(self, agent_id: str, command: Command) -> object:
            await release.wait()
            return await super().__call__(agent_id, command)

    log = Log()
    core, feed, sink = host([log.delivery("n1", "hello", "up")], sink=SlowSink())
    running = Running(core)
    try:
        await until(lambda: core.caught_up)
        await feed.queue.put(log.delivery("n1", "ping:1"))
        await until(lambda: core.stats().commands_in_flight == 1)
        await feed.queue.put(log.delivery("n1", "other"))  # decides again while in flight
        await until(lambda: core.stats().commands_suppressed >= 1)
        release.set()
        await until(lambda: sink.applied == {"pong.n1.1"})
        await feed.queue.put(log.delivery("n1", "other"))  # the pong's event is not seen yet
        await until(lambda: core.stats().commands_suppressed >= 2)
        assert sink.calls == ["pong.n1.1"]
    finally:
        await running.close()


async def test_stats_report_agents_by_kind_and_memory() -> None:
    log = Log()
    core, _, _ = host([log.delivery(f"n{i}", "hello", "up") for i in range(100)])
    running = Running(core)
    try:
        await until(lambda: core.caught_up)
        stats = core.stats()
        assert stats.agents_by_kind == {"pinger": 100}
        assert 100 < stats.memory_per_agent_bytes < 20_000
        assert stats.rss_bytes > 0
    finally:
        await running.close()


async def test_stats_name_the_offtakers_whose_mandate_buys_nothing() -> None:
    """An old store's mandate with a negative budget: its agent asks nothing, and says so."""
    from agents.market import MarketView
    from schemas import Mandate, OfftakerMandateSet, Resources, WorkloadSpec

    mandate = Mandate(
        workloads=[WorkloadSpec(workload_id="web", resources=Resources(cru=1), replicas=1)],
        budget_month=Money.of("400", "USD"),
        max_price_cu_hour=Money.of("0.05", "USD"),
    ).model_copy(update={"budget_month": Money.of("-400", "USD")})
    event = OfftakerMandateSet(offtaker_id="old", mandate=mandate)
    envelope = Envelope(
        id="evt_1", type="OfftakerMandateSet", schema_version=1, stream="offtaker-old",
        version=1, position=1, occurred_at=T0, recorded_at=T0, actor="test",
        payload=event.model_dump(mode="json"),
    )  # fmt: skip
    core = AgentHostCore(
        shard=0,
        shards=1,
        market=MarketView(),
        history=ListHistory([Delivery("hero.policies", envelope, event)]),
        feed=QueueFeed(),
        sink=Sink(),
        clock=ManualClock(T0),
        options=HostOptions(decide_interval_s=0.01),
    )
    running = Running(core)
    try:
        await until(lambda: core.caught_up)
        stats = core.stats()
        assert stats.mandates_refused == {
            "offtaker:old": "budget_month is -400 USD: nothing can be bought with it"
        }
        assert stats.commands_sent == 0
    finally:
        await running.close()
