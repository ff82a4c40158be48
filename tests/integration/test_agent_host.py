"""Agent hosts against the real stack: Kafka feed, SQLite store, Ray actors that die.

The fake market here is "ping nodes": a ``NodeStatusChanged`` "hello" creates the agent
``pinger:<node>``, a "ping:K" asks it to answer, and it answers with a ``ChangeNodeStatus``
command (id ``pong.<node>.K``) that the fake sink appends to the node's stream as "pong:K".
Every name carries a per-test prefix: the session's broker and store are shared.
The fakes live at module level so Ray workers can import them (the driver's working
directory is on their path).
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from agents.brain import Brain
from agents.runtime import AgentHostCore, HostOptions, KafkaFeed, StoreHistory, ThreadedSink
from agents.runtime.cluster import AgentCluster
from agents.runtime.routing import shard_of
from hero.config import HeroSettings
from hero.log.producer import KafkaPublisher
from hero.market.service import MarketService
from hero.store import (
    ANY_VERSION,
    AppendResult,
    EventStore,
    MemoryCheckpointStore,
    NewEvent,
    OutboxRelay,
    open_store,
)
from schemas import (
    ChangeNodeStatus,
    Command,
    Envelope,
    Event,
    FarmerPolicy,
    Grid,
    Mandate,
    Money,
    NodeStatusChanged,
    PolicyMode,
    RegisterFarm,
    RegisterNode,
    Resources,
    SetFarmerPolicy,
    SetOfftakerMandate,
    WorkloadSpec,
    new_id,
)
from tests._wait import eventually

pytestmark = pytest.mark.integration


# -- the fake market (module level: Ray workers import it by name) -------------------------


class PingBrain(Brain):
    __slots__ = ("decided_with", "node", "observed", "pings", "pongs")

    def __init__(self, node: str):
        super().__init__(f"pinger:{node}")
        self.node = node
        self.observed: list[str] = []
        self.pings: set[str] = set()
        self.pongs: set[str] = set()
        self.decided_with: list[int] = []

    def observe(self, envelope: Envelope, event: Event, market: Any) -> None:
        assert isinstance(event, NodeStatusChanged)
        self.observed.append(event.reason)
        kind, _, key = event.reason.partition(":")
        if kind == "ping":
            self.pings.add(key)
        elif kind == "pong":
            self.pongs.add(key)

    def decide(self, now: datetime, market: Any) -> list[Command]:
        self.decided_with.append(len(self.observed))
        return [
            ChangeNodeStatus(
                command_id=f"pong.{self.node}.{key}",
                node_id=self.node,
                status="up",  # type: ignore[arg-type]
                reason=f"pong:{key}",
            )
            for key in sorted(self.pings - self.pongs)
        ]


class PingMarket:
    """Folds only the nodes of one test (the broker and the store are shared)."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.applied: Counter[tuple[str, int]] = Counter()

    def _ours(self, event: Event) -> bool:
        return isinstance(event, NodeStatusChanged) and event.node_id.startswith(self.prefix)

    def apply(self, envelope: Envelope, event: Event) -> None:
        if self._ours(event):
            self.applied[(envelope.stream, envelope.version)] += 1

    def route(self, envelope: Envelope, event: Event) -> set[str]:
        return {f"pinger:{event.node_id}"} if self._ours(event) else set()  # type: ignore[attr-defined]

    def roster(self, envelope: Envelope, event: Event) -> list[Brain]:
        """The test's roster: a pinger per node said hello to."""
        if self._ours(event) and event.reason == "hello":  # type: ignore[attr-defined]
            return [PingBrain(event.node_id)]  # type: ignore[attr-defined]
        return []


def status(node: str, reason: str, state: str = "down") -> NewEvent:
    event = NodeStatusChanged(node_id=node, status=state, reason=reason)  # type: ignore[arg-type]
    return NewEvent.of(event, actor="test", occurred_at=datetime.now(UTC))


def pong_sink(settings: HeroSettings, store: EventStore) -> ThreadedSink:
    """Applies a pong with the store's idempotency: a repeated command id writes nothing."""

    def handle(agent_id: str, command: Command) -> AppendResult:
        assert isinstance(command, ChangeNodeStatus)
        event = status(command.node_id, command.reason, "up")
        return store.append(command.node_id, ANY_VERSION, [event], command.command_id)

    return ThreadedSink(handle)


# -- helpers --------------------------------------------------------------------------------


def nodes_of(count: int) -> tuple[str, list[str]]:
    prefix = f"ah-{new_id('t')[-10:]}-"
    return prefix, [f"{prefix}{i}" for i in range(count)]


def append_all(store: EventStore, nodes: list[str], reason: str, state: str = "down") -> None:
    for node in nodes:
        store.append(node, ANY_VERSION, [status(node, reason, state)], new_id("cmd"))


def reasons(store: EventStore, node: str) -> list[str]:
    return [row.envelope().payload["reason"] for row in store.read_stream(node)]


class InProcessHost:
    """A core running on this test's event loop (no Ray)."""

    def __init__(self, stack: Any, store: EventStore, prefix: str, shard: int, shards: int):
        self.sink = pong_sink(stack.settings, store)
        market = PingMarket(prefix)
        self.core = AgentHostCore(
            shard=shard,
            shards=shards,
            market=market,  # type: ignore[arg-type]
            roster=market.roster,
            history=StoreHistory(store),
            feed=KafkaFeed(stack.endpoints.kafka_bootstrap),
            sink=self.sink,
            options=HostOptions(decide_interval_s=0.02),
        )
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.core.run(self.stop))

    @property
    def market(self) -> PingMarket:
        market = self.core.market
        assert isinstance(market, PingMarket)
        return market

    def has_applied(self, streams: list[str], version: int) -> bool:
        return all((stream, version) in self.market.applied for stream in streams)

    async def close(self) -> None:
        self.stop.set()
        try:
            await asyncio.wait_for(self.task, timeout=30)
        finally:
            self.sink.close()


@pytest.fixture
def store(stack: Any) -> Iterator[EventStore]:
    store = open_store(stack.settings.effective_store_url)  # the store the stack's relay serves
    yield store
    store.close()


# -- tests ----------------------------------------------------------------------------------


async def test_every_host_folds_every_event_once_and_only_the_owner_answers(
    stack: Any, store: EventStore
) -> None:
    prefix, nodes = nodes_of(30)
    append_all(store, nodes, "hello", "up")
    hosts = [InProcessHost(stack, store, prefix, shard, 3) for shard in range(3)]
    try:
        await eventually(lambda: all(h.core.caught_up for h in hosts), 30, "catch-up")
        append_all(store, nodes, "ping:1")
        await eventually(lambda: all(len(reasons(store, n)) == 3 for n in nodes), 30, "pong 1")

        # A relay that lost its checkpoint republishes the whole store from position 1.
        publisher = KafkaPublisher(stack.endpoints.kafka_bootstrap)
        try:
            republished = await OutboxRelay(store, MemoryCheckpointStore(), publisher).drain()
        finally:
            await publisher.close()
        # ping 2 follows the republished records on each node's partition: once a host has
        # applied it (and its pong), it has been through the repeats of that node too.
        append_all(store, nodes, "ping:2")
        await eventually(
            lambda: all(h.has_applied(nodes, 5) for h in hosts), 30, "every host to see pong 2"
        )

        for node in nodes:
            assert reasons(store, node) == ["hello", "ping:1", "pong:1", "ping:2", "pong:2"]
        owners: dict[str, int] = {}
        for host in hosts:
            assert sum(host.market.applied.values()) == 5 * len(nodes)
            assert set(host.market.applied.values()) == {1}, "an event applied twice"
            for agent_id, brain in host.core.brains.items():
                assert shard_of(agent_id, 3) == host.core.shard
                assert isinstance(brain, PingBrain)
                assert brain.observed == ["hello", "ping:1", "pong:1", "ping:2", "pong:2"]
                owners[agent_id] = host.core.shard
            stats = host.core.stats()
            assert stats.commands_ok == 2 * len(host.core.brains)
            assert stats.commands_duplicate == stats.commands_rejected == 0
            assert stats.repeats >= 3 * len(nodes)
        assert republished >= 3 * len(nodes)
        assert sorted(owners) == sorted(f"pinger:{n}" for n in nodes)
        assert len(set(owners.values())) == 3  # 30 agents spread over all shards
    finally:
        for host in hosts:
            await host.close()


async def test_a_host_started_on_history_folds_it_then_resumes_and_decides(
    stack: Any, store: EventStore
) -> None:
    prefix, nodes = nodes_of(10)
    append_all(store, nodes, "hello", "up")
    append_all(store, nodes, "ping:1")
    for node in nodes:  # the pings of history were answered...
        store.append(node, ANY_VERSION, [status(node, "pong:1", "up")], f"pong.{node}.1")
    append_all(store, nodes[:1], "ping:2")  # ...but one, whose answer a crash lost
    p0 = store.current_position()

    host = InProcessHost(stack, store, prefix, 0, 1)
    try:
        await eventually(lambda: host.core.caught_up, 30, "catch-up")
        stats = host.core.stats()
        assert stats.catch_up_position >= p0
        assert stats.events_history >= 3 * len(nodes) + 1
        for brain in host.core.brains.values():
            assert isinstance(brain, PingBrain)
            history = 4 if brain.node == nodes[0] else 3
            assert brain.decided_with[0] == history, "decide ran on a partial history"
        await eventually(lambda: len(reasons(store, nodes[0])) == 5, 30, "the resumed pong 2")

        append_all(store, nodes, "ping:3")
        await eventually(
            lambda: all(reasons(store, n)[-1] == "pong:3" for n in nodes), 30, "pong 3"
        )
        stats = host.core.stats()
        assert stats.commands_sent == 1 + len(nodes)  # nothing of history was sent again
        assert stats.commands_duplicate == 0
        expected = ["hello", "ping:1", "pong:1", "ping:2", "pong:2", "ping:3", "pong:3"]
        assert reasons(store, nodes[0]) == expected
    finally:
        await host.close()


FULL = Counter(["hello", "ping:1", "pong:1", "ping:2", "pong:2", "ping:3", "pong:3"])


def _brains_seen(core: AgentHostCore) -> dict[str, list[str]]:
    return {
        agent_id: list(brain.observed)
        for agent_id, brain in core.brains.items()
        if isinstance(brain, PingBrain)
    }


async def test_a_killed_host_is_restarted_by_ray_rebuilds_and_carries_on(
    stack: Any, store: EventStore
) -> None:
    prefix, nodes = nodes_of(100)
    victims = [n for n in nodes if shard_of(f"pinger:{n}", 2) == 0]
    cluster = AgentCluster(
        stack.settings,
        stack.endpoints,
        shards=2,
        market_factory=functools.partial(PingMarket, prefix),  # type: ignore[arg-type]
        roster=PingMarket(prefix).roster,
        sink_factory=pong_sink,
        options=HostOptions(decide_interval_s=0.02),
        name_prefix=f"test-agent-host-{prefix}",
    )
    started = asyncio.get_running_loop().time()
    cluster.start()
    try:
        append_all(store, nodes, "hello", "up")
        append_all(store, nodes, "ping:1")
        await eventually(lambda: all(len(reasons(store, n)) == 3 for n in nodes), 60, "pong 1")
        before = await cluster.stats_async()
        assert before.caught_up
        assert before.hosts[0].agents == len(victims)
        victim = cluster.hosts[0]
        old_pid = await victim.pid.remote()

        # Kill the host as soon as it starts answering ping 2: likely with commands in flight.
        append_all(store, nodes, "ping:2")
        await eventually(lambda: any("pong:2" in reasons(store, n) for n in victims), 30, "pong 2")
        os.kill(old_pid, signal.SIGKILL)
        answered = sum("pong:2" in reasons(store, n) for n in victims)
        append_all(store, nodes, "ping:3")  # arrives while the host is dead or restarting

        await eventually(
            lambda: all(len(reasons(store, n)) == 7 for n in nodes), 90, "pongs 2 and 3"
        )
        new_pid = await victim.pid.remote()  # Ray retries it until the restarted host answers
        assert new_pid != old_pid
        after = await victim.stats.remote()
        assert after.reconstructed
        assert after.caught_up
        assert after.agents == len(victims)

        async def rebuilt() -> bool:
            seen = await victim.inspect.remote(_brains_seen)
            return len(seen) == len(victims) and all(Counter(o) == FULL for o in seen.values())

        await eventually(rebuilt, 30, "the restarted host to fold every event once")
        for node in nodes:  # no command applied twice, none lost
            assert Counter(reasons(store, node)) == FULL
        elapsed = asyncio.get_running_loop().time() - started
        print(
            f"kill test: {elapsed:.1f}s; killed after {answered}/{len(victims)} pongs of ping 2;"
            f" restarted host caught up in {after.catch_up_s}s,"
            f" sent {after.commands_sent} ({after.commands_duplicate} duplicates)"
        )
    finally:
        cluster.stop()


def _market_agents(core: AgentHostCore) -> list[str]:
    return sorted(core.brains)


async def test_real_agents_on_two_hosts_negotiate_a_contract(stack: Any, store: EventStore) -> None:
    tag = new_id("t")[-10:]
    region, farm, node, offtaker = f"r-{tag}", f"farm-{tag}", f"node-{tag}", f"acme-{tag}"
    service = MarketService(store)
    # The farm exists before the hosts start (history); the mandate comes after (live).
    for command in (
        RegisterFarm(
            command_id=f"{tag}.farm", farm_id=farm, name="Farm", grid=Grid.GRID3,
            country="BE", region=region,
        ),
        RegisterNode(
            command_id=f"{tag}.node", node_id=node, farm_id=farm, grid=Grid.GRID3,
            country="BE", region=region,
            total=Resources.from_gb(cru=16, mru_gb=64, sru_gb=1000),
        ),
        SetFarmerPolicy(
            command_id=f"{tag}.policy", farm_id=farm,
            policy=FarmerPolicy(mode=PolicyMode.AUTO, markup=Decimal(1)),
        ),
    ):  # fmt: skip
        service.handle(command)
    start = store.current_position() + 1

    cluster = AgentCluster(
        stack.settings, stack.endpoints, shards=2, name_prefix=f"test-market-host-{tag}"
    )
    cluster.start()
    try:

        async def caught_up() -> bool:
            return (await cluster.stats_async()).caught_up

        await eventually(caught_up, 60, "catch-up")
        workload = WorkloadSpec(
            workload_id="web",
            resources=Resources.from_gb(cru=2, mru_gb=4, sru_gb=50),
            replicas=1,
            regions=[region],  # only this test's farm qualifies in the shared store
            grids=[Grid.GRID3],
        )
        mandate = Mandate(
            workloads=[workload],
            budget_month=Money(amount=Decimal(1000), currency="USD"),
            max_price_cu_hour=Money(amount=Decimal(1), currency="USD"),
            offer_window_s=Decimal(1),
        )
        service.handle(
            SetOfftakerMandate(command_id=f"{tag}.mandate", offtaker_id=offtaker, mandate=mandate)
        )

        def ours(type_: str) -> list[Envelope]:
            rows = [row.envelope() for row in store.read_all(start, 100_000) if row.type == type_]
            return [
                e
                for e in rows
                if e.payload.get("offtaker_id") == offtaker
                or str(e.payload.get("negotiation_id")).startswith(f"{offtaker}.")
            ]

        await eventually(lambda: bool(ours("NegotiationAwarded")), 60, "a contract")
        contracts = ours("ContractCreated")
        assert len(contracts) == 1
        assert contracts[0].payload["farm_id"] == farm
        assert contracts[0].payload["node_id"] == node
        assert contracts[0].actor == f"offtaker:{offtaker}"
        assert [e.actor for e in ours("OfferMade")] == [f"farmer:{farm}"]

        agents = {
            agent_id
            for host in cluster.hosts
            for agent_id in await host.inspect.remote(_market_agents)
        }
        assert {f"farmer:{farm}", f"offtaker:{offtaker}"} <= agents
        stats = await cluster.stats_async()
        assert stats.total("commands_failed") == 0
    finally:
        cluster.stop()
