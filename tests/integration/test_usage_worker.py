"""The usage worker's loop against the session stack's broker and Valkey: one handler call per
consumed batch, its offsets committed (as the group's committed offsets on the broker show)
only once that call has returned; records that do not decode, and a sample the handler keeps
refusing, dead-lettered on ``hero.dlq`` with the reason while the rest go through; and hours
closed only while no batch is on its way into Valkey.

Every test has a topic, a consumer group and a windows namespace of its own (the stack is
shared). Samples travel as ``TelemetryPublisher`` sends them (the same envelope, keyed by
workload), but to the test's own topic on a chosen partition, so offsets start at 0.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis

from hero.domain.billing import hour_of
from hero.domain.clock import ManualClock
from hero.domain.usage import usage_fact
from hero.log.codec import encode_envelope
from hero.log.consumer import ConsumerStats
from hero.log.producer import new_producer
from hero.log.telemetry import sample_envelope
from hero.log.topics import TopicAdmin
from hero.readmodels.usage import SampleRow, UsageWindows
from hero.store import ANY_VERSION, MemoryEventStore, NewEvent
from schemas import (
    ContractCreated,
    Money,
    NodeStatusChanged,
    Resources,
    Sla,
    Topic,
    UsageRecorded,
    UtilizationSampled,
    new_id,
)
from streams.usage import SampleBatch, SampleConsumer, UsageAggregator, UsageWorker
from tests.integration._kafka import read_topic_until

if TYPE_CHECKING:
    from tests._engines import RunningStack

pytestmark = pytest.mark.integration

HOUR0 = datetime(2026, 11, 23, 10, tzinfo=UTC)
TIMEOUT_S = 30.0
Offsets = dict[TopicPartition, int]


@dataclass(frozen=True)
class Kafka:
    """A topic and a consumer group of the test's own, and a look at the group's commits."""

    bootstrap: str
    topic: str
    group: str
    observer: AIOKafkaConsumer  # in the group, never subscribed: it only reads its commits

    def tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self.topic, partition)

    async def committed(self, partitions: int = 2) -> Offsets:
        """The group's committed offsets, as the broker has them (partitions with none left out)."""
        found = {}
        for partition in range(partitions):
            offset = await self.observer.committed(self.tp(partition))
            if offset is not None:
                found[self.tp(partition)] = offset
        return found

    async def publish(self, records: Sequence[tuple[int, bytes]]) -> list[int]:
        """Each value to its partition, in order; returns their offsets."""
        producer = new_producer(self.bootstrap)
        await producer.start()
        try:
            sent = [
                await producer.send_and_wait(self.topic, value, partition=partition, key=b"w1")
                for partition, value in records
            ]
        finally:
            await producer.stop()
        return [metadata.offset for metadata in sent]


@pytest.fixture
async def kafka(stack: RunningStack) -> AsyncIterator[Kafka]:
    bootstrap = stack.endpoints.kafka_bootstrap
    tag = new_id("usageworker")
    topic = f"test.{tag}"
    admin = TopicAdmin(bootstrap, partitions=2)
    try:
        assert await admin.create([topic]) == {topic}
    finally:
        await admin.close()
    observer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=tag, enable_auto_commit=False)
    await observer.start()
    try:
        yield Kafka(bootstrap, topic, tag, observer)
    finally:
        await observer.stop()


CONTRACT = ContractCreated(
    contract_id="ctr-usage-worker",
    negotiation_id="nego-usage-worker",
    offer_id="offer-usage-worker",
    hold_id="offer-usage-worker",
    offtaker_id="off-usage-worker",
    workload_id="w1",
    farm_id="farm-usage-worker",
    node_id="n1",
    grid="grid4",
    resources=Resources.from_gb(cru=2, mru_gb=4, sru_gb=50),
    price_hour=Money.of("0.05", "USD"),
    term_hours=720,
    sla=Sla(uptime_pct=Decimal(99)),
    starts_at=HOUR0,
)


def sample(sample_id: str, at: datetime = HOUR0, replica: str = "r0") -> UtilizationSampled:
    return UtilizationSampled(
        sample_id=sample_id,
        workload_id="w1",
        replica_id=replica,
        contract_id=CONTRACT.contract_id,
        node_id="n1",
        cpu=Decimal("0.5"),
        memory=Decimal("0.5"),
        disk=Decimal("0.1"),
        network_bytes=1000 + len(sample_id),
        sampled_at=at,
        interval_s=600,
    )


def encoded(made: UtilizationSampled, sequence: int = 1) -> bytes:
    """The record ``TelemetryPublisher`` sends for a sample."""
    return encode_envelope(sample_envelope(made, sequence, actor="test", recorded_at=HOUR0))


def ids(samples: Sequence[SampleRow]) -> list[str]:
    return [row[0] for row in samples]


async def until(
    condition: Callable[[], bool], act: Callable[[], Awaitable[object]], what: str
) -> None:
    """``act`` until ``condition`` holds, for at most TIMEOUT_S."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out after {TIMEOUT_S}s waiting for {what}")
        await act()


async def test_a_batch_is_one_handler_call_and_its_offsets_commit_after_it(kafka: Kafka) -> None:
    layout = [(0, "a"), (1, "c"), (0, "b"), (1, "e"), (0, "d")]
    offsets = await kafka.publish([(p, encoded(sample(i))) for p, i in layout])
    calls: list[tuple[list[str], Offsets]] = []

    async def handler(samples: Sequence[SampleRow]) -> None:
        calls.append((ids(samples), await kafka.committed()))  # what the group has committed

    consumer = SampleConsumer(
        name=kafka.group,
        bootstrap=kafka.bootstrap,
        handler=handler,
        topics=[kafka.topic],
        max_records=2,  # several batches, each its own call and commit
    )
    batches: list[SampleBatch] = []
    await consumer.start()
    try:

        async def one_batch() -> None:
            batch = await consumer.fetch(timeout_ms=300)
            if batch is None:
                return
            before, called = await kafka.committed(), len(calls)
            await consumer.apply(batch)
            # One call, with this batch's samples, made before its offsets were committed...
            assert calls[called:] == [(ids(batch.samples), before)]
            # ...which are committed once it has returned.
            assert await kafka.committed() == {**before, **batch.offsets}
            batches.append(batch)

        await until(lambda: consumer.stats.applied == len(layout), one_batch, "every sample")
        assert len(batches) >= 2
        # Nothing more: no call and no commit.
        assert await consumer.poll(timeout_ms=300) == ConsumerStats()
        assert len(calls) == len(batches)
    finally:
        await consumer.stop()

    last = {p: max(o for (q, _), o in zip(layout, offsets, strict=True) if q == p) for p in (0, 1)}
    assert await kafka.committed() == {kafka.tp(p): last[p] + 1 for p in (0, 1)}
    handed = [sample for batch in batches for sample in batch.samples]
    for partition in (0, 1):  # each partition's samples once, in order, marked with it
        mine = [row[0] for row in handed if row[6] == partition]
        assert mine == [i for p, i in layout if p == partition]
    assert len(handed) == len(layout)


async def test_bad_records_and_a_sample_that_keeps_failing_are_dead_lettered(
    kafka: Kafka,
) -> None:
    status = NodeStatusChanged(node_id="n1", status="up")
    other = json.loads(encoded(sample("x")))
    other.update(type="NodeStatusChanged", payload=status.model_dump(mode="json"))
    values = [
        encoded(sample("a")),
        b"{not json",
        encoded(sample("poison")),
        json.dumps(other).encode(),  # not a sample: nothing for the handler
        encoded(sample("b")),
    ]
    offsets = await kafka.publish([(0, value) for value in values])
    assert offsets == [0, 1, 2, 3, 4]
    calls: list[list[str]] = []

    async def handler(samples: Sequence[SampleRow]) -> None:
        calls.append(ids(samples))
        if "poison" in calls[-1]:
            raise ValueError("a sum too large")

    attempts = 2
    consumer = SampleConsumer(
        name=kafka.group,
        bootstrap=kafka.bootstrap,
        handler=handler,
        topics=[kafka.topic],
        handler_attempts=attempts,
    )
    expected: list[list[str]] = []
    await consumer.start()
    try:

        async def one_batch() -> None:
            batch = await consumer.fetch(timeout_ms=300)
            if batch is None:
                return
            await consumer.apply(batch)
            handed = ids(batch.samples)
            if "poison" in handed:  # the batch fails; then one sample at a time
                expected.extend([handed] * attempts)
                for one in handed:
                    expected.extend([[one]] * (attempts if one == "poison" else 1))
            elif handed:
                expected.append(handed)

        def done() -> bool:
            return consumer.stats.applied + consumer.stats.dead_lettered == len(values)

        await until(done, one_batch, "every record")
    finally:
        await consumer.stop()

    assert calls == expected
    # The samples around the bad records went through (the last after them all).
    assert [i for call in calls if "poison" not in call for i in call] == ["a", "b"]
    assert (consumer.stats.applied, consumer.stats.dead_lettered) == (3, 2)  # a, b, status
    assert await kafka.committed() == {kafka.tp(0): len(values)}  # past every record
    letters = await read_topic_until(
        kafka.bootstrap,
        Topic.DLQ.value,
        lambda seen: len(seen) >= 2,
        keep=lambda row: row.get("consumer") == kafka.group,
    )
    assert [(row["reason"], row["topic"], row["offset"]) for row in letters] == [
        ("undecodable", kafka.topic, 1),
        ("handler_failed", kafka.topic, 2),
    ]
    assert letters[0]["value"] == "{not json"
    assert "a sum too large" in letters[1]["detail"]
    assert json.loads(letters[1]["value"])["payload"]["sample_id"] == "poison"


class WatchedConsumer(SampleConsumer):
    """The real consumer, noting when a batch is being applied (handed over and committed)
    and, when it fetches, whether one was."""

    def __init__(self, log: list[tuple[Any, ...]], **kwargs: Any):
        super().__init__(**kwargs)
        self.log, self.applying, self.applied = log, 0, Offsets()

    async def fetch(self, timeout_ms: int = 500) -> SampleBatch | None:
        self.log.append(("fetch", self.applying > 0))
        return await super().fetch(timeout_ms)

    async def apply(self, batch: SampleBatch) -> None:
        self.applying += 1
        try:
            await super().apply(batch)
        finally:
            self.applying -= 1
        self.applied.update(batch.offsets)


class WatchedAggregator(UsageAggregator):
    """The real aggregator, noting each close: was a batch being applied, were the batches
    handed over so far committed on the broker, and how many facts it wrote."""

    consumer: WatchedConsumer
    kafka: Kafka

    async def close_due(self) -> int:
        in_flight = self.consumer.applying > 0
        committed = await self.kafka.committed() == self.consumer.applied
        written = await super().close_due()
        self.consumer.log.append(("close", in_flight, committed, written))
        return written


async def test_hours_close_only_between_batches_with_the_last_one_committed(
    kafka: Kafka, redis: Redis
) -> None:
    # Two partitions (two replicas), a sample every 10 minutes for 2h10m: hours 0 and 1
    # close by event time once both partitions are 5 minutes past them.
    per_partition = [
        [sample(f"r{p}-{n}", HOUR0 + timedelta(minutes=10 * n), f"r{p}") for n in range(14)]
        for p in (0, 1)
    ]
    records = [
        [(p, encoded(made, n + 1)) for n, made in enumerate(per_partition[p])] for p in (0, 1)
    ]
    store = MemoryEventStore()
    event = NewEvent.of(CONTRACT, actor="test", occurred_at=HOUR0)
    store.append("node-n1", ANY_VERSION, [event], "contract")
    namespace = kafka.group
    log: list[tuple[Any, ...]] = []
    aggregator = WatchedAggregator(
        store,
        UsageWindows(redis, namespace),
        ManualClock(HOUR0 + timedelta(hours=3)),
        lateness=timedelta(minutes=5),
        idle_close=timedelta(days=30),  # hours close by event time only
    )
    consumer = WatchedConsumer(
        log,
        name=kafka.group,
        bootstrap=kafka.bootstrap,
        handler=aggregator.add_rows,
        topics=[kafka.topic],
        max_records=4,
    )
    aggregator.consumer, aggregator.kafka = consumer, kafka
    worker = UsageWorker(consumer, aggregator)
    await consumer.start()
    try:
        # Each partition's first sample, so both are in the watermark before either catches
        # up (the consumer drains a partition's fetched records before the next one's).
        await kafka.publish([records[0][0], records[1][0]])
        await until(lambda: aggregator.counts.added == 2, lambda: worker.step(200), "2 samples")
        await kafka.publish(records[0][1:] + records[1][1:])
        await until(lambda: aggregator.counts.facts == 2, lambda: worker.step(200), "2 facts")
        await until(lambda: aggregator.counts.added == 28, lambda: worker.step(200), "28 samples")
        await worker.flush()
    finally:
        await consumer.stop()
        doomed = [key async for key in redis.scan_iter(match=f"hero:usage:{namespace}:*")]
        if doomed:
            await redis.delete(*doomed)

    closes = [entry for entry in log if entry[0] == "close"]
    assert all(not in_flight for _, in_flight, _, _ in closes)  # never with a batch going in
    assert all(committed for _, _, committed, _ in closes)  # each after the last one's commit
    assert sum(written for *_, written in closes) == 2
    # The next batch was fetched (and decoded) while the one before went into Valkey.
    assert ("fetch", True) in log
    assert aggregator.counts.duplicates == aggregator.counts.late == 0

    facts = {}
    for row in store.read_all(1, 100):
        if row.type == "UsageRecorded":
            fact = row.envelope().decode()
            assert isinstance(fact, UsageRecorded)
            facts[fact.hour] = fact
    expected = {}
    for hour in (HOUR0, HOUR0 + timedelta(hours=1)):
        mine = [s for p in per_partition for s in p if hour_of(s.sampled_at) == hour]
        assert len(mine) == 12
        expected[hour] = usage_fact(
            CONTRACT,
            hour,
            sum(s.interval_s for s in mine),
            sum(s.network_bytes for s in mine),
            len(mine),
        )
    assert facts == expected


async def test_valkey_refusing_connections_is_waited_out_with_nothing_committed_or_dead_lettered(
    kafka: Kafka, redis: Redis
) -> None:
    # Before the fix, a handler failing on a Valkey that refused connections was tried three
    # times within 0.3 s, then the batch was dead-lettered and committed: its samples lost.
    from infra.ports import free_ports

    values = [encoded(sample(f"v{n}"), n + 1) for n in range(3)]
    await kafka.publish([(0, value) for value in values])
    down = Redis.from_url(f"redis://127.0.0.1:{free_ports(1, '127.0.0.1')[0]}/0")
    namespace = new_id("usagedown")
    valkey_back = asyncio.Event()

    async def handler(samples: Sequence[SampleRow]) -> None:
        # A real refused connection until the test says Valkey is back.
        windows = UsageWindows(redis if valkey_back.is_set() else down, namespace)
        await windows.add_rows(samples)

    consumer = SampleConsumer(
        name=kafka.group, bootstrap=kafka.bootstrap, handler=handler, topics=[kafka.topic]
    )
    await consumer.start()
    try:
        batch = None

        async def fetch() -> None:
            nonlocal batch
            batch = await consumer.fetch(timeout_ms=300)

        await until(lambda: batch is not None, fetch, "the batch")
        assert batch is not None
        assert len(batch.samples) == 3
        applying = asyncio.create_task(consumer.apply(batch))

        async def tick() -> None:
            await asyncio.wait([applying], timeout=0.05)

        await until(lambda: consumer.retry.retries >= 4, tick, "four retries")
        # Well past three attempts and 0.3 s: still waiting, nothing committed or dead-lettered.
        assert not applying.done()
        assert consumer.retry.waiting_on is not None
        assert "ConnectionError" in consumer.retry.waiting_on
        assert await kafka.committed() == {}
        assert consumer.stats.dead_lettered == 0
        valkey_back.set()
        await asyncio.wait_for(applying, TIMEOUT_S)
    finally:
        await consumer.stop()
        await down.aclose()
    assert consumer.retry.waiting_on is None
    assert (consumer.stats.applied, consumer.stats.dead_lettered) == (3, 0)
    assert await kafka.committed() == {kafka.tp(0): 3}
    window = await UsageWindows(redis, namespace).read(CONTRACT.contract_id, HOUR0)
    assert window.samples == 3
