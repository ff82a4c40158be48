"""The usage worker's loop over a stand-in Kafka consumer: one handler call per batch, offsets
committed only after it returns, bad records and bad samples dead-lettered, and windows closed
only while no batch is on its way into Valkey."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from hero.log.codec import encode_envelope
from hero.log.telemetry import sample_envelope
from schemas import NodeStatusChanged, Topic, UtilizationSampled
from streams.usage import Sample, SampleConsumer, UsageCounts, UsageWorker

TOPIC = Topic.UTILIZATION.value
NOW = datetime(2026, 11, 23, 10, tzinfo=UTC)
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


def sample(sample_id: str) -> UtilizationSampled:
    return UtilizationSampled(
        sample_id=sample_id,
        workload_id="w1",
        replica_id="w1-r0",
        contract_id="c1",
        node_id="n1",
        cpu=Decimal("0.5"),
        memory=Decimal("0.5"),
        disk=Decimal("0.1"),
        network_bytes=1000,
        sampled_at=NOW,
    )


def record(tp: TopicPartition, offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, None, value, None, 0, 0, ())


def sample_record(tp: TopicPartition, offset: int, sample_id: str) -> ConsumerRecord[bytes, bytes]:
    envelope = sample_envelope(sample(sample_id), offset + 1, actor="test", recorded_at=NOW)
    return record(tp, offset, encode_envelope(envelope))


class Kafka:
    """What the worker uses of an AIOKafkaConsumer."""

    def __init__(self, batches: list[dict[TopicPartition, list[Any]]], log: list[Any]):
        self.batches, self.log = batches, log
        self.assigned = {P0, P1}

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, Any]:
        return self.batches.pop(0) if self.batches else {}

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.log.append(("commit", offsets))


class DeadLetters:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_and_wait(self, topic: str, *, value: bytes, key: bytes) -> None:
        self.sent.append(json.loads(value))


def consumer(kafka: Kafka, handler: Any) -> tuple[SampleConsumer, DeadLetters]:
    made = SampleConsumer(name="test-usage", bootstrap="unused:9092", handler=handler)
    dlq = DeadLetters()
    made._consumer = kafka  # type: ignore[assignment]
    made._dlq = dlq  # type: ignore[assignment]
    return made, dlq


async def test_a_batch_is_one_handler_call_and_its_offsets_commit_after_it() -> None:
    log: list[Any] = []

    async def handler(samples: Sequence[Sample]) -> None:
        log.append(("handled", [(s.sample_id, p) for s, p in samples]))

    kafka = Kafka(
        [
            {
                P0: [sample_record(P0, 10, "a"), sample_record(P0, 11, "b")],
                P1: [sample_record(P1, 4, "c")],
            }
        ],
        log,
    )
    worker, _ = consumer(kafka, handler)
    counts = await worker.poll()
    assert log == [
        ("handled", [("a", 0), ("b", 0), ("c", 1)]),
        ("commit", {P0: 12, P1: 5}),
    ]
    assert counts.applied == 3
    assert await worker.poll() == counts.__class__()  # nothing more: no call, no commit
    assert len(log) == 2


async def test_bad_records_and_a_sample_that_keeps_failing_are_dead_lettered() -> None:
    log: list[Any] = []

    async def handler(samples: Sequence[Sample]) -> None:
        ids = [s.sample_id for s, _ in samples]
        log.append(("handled", ids))
        if "poison" in ids:
            raise ValueError("a sum too large")

    status = NodeStatusChanged(node_id="n1", status="up")
    other = json.loads(encode_envelope(sample_envelope(sample("x"), 1, actor="t", recorded_at=NOW)))
    other.update(type="NodeStatusChanged", payload=status.model_dump(mode="json"))
    kafka = Kafka(
        [
            {
                P0: [
                    sample_record(P0, 0, "a"),
                    record(P0, 1, b"{not json"),
                    sample_record(P0, 2, "poison"),
                    record(P0, 3, json.dumps(other).encode()),
                    sample_record(P0, 4, "b"),
                ]
            }
        ],
        log,
    )
    worker, dlq = consumer(kafka, handler)
    counts = await worker.poll()
    handled = [entry[1] for entry in log if entry[0] == "handled"]
    assert handled == [["a", "poison", "b"]] * 3 + [["a"]] + [["poison"]] * 3 + [["b"]]
    assert log[-1] == ("commit", {P0: 5})
    assert [(d["reason"], d["offset"]) for d in dlq.sent] == [
        ("undecodable", 1),
        ("handler_failed", 2),
    ]
    assert "a sum too large" in dlq.sent[1]["detail"]
    assert (counts.applied, counts.dead_lettered) == (3, 2)  # a, b and the status change


async def test_a_partition_taken_away_meanwhile_is_not_committed() -> None:
    log: list[Any] = []
    kafka = Kafka([{P0: [sample_record(P0, 0, "a")], P1: [sample_record(P1, 0, "b")]}], log)

    async def handler(samples: Sequence[Sample]) -> None:
        kafka.assigned = {P1}  # a rebalance while the batch goes in

    worker, _ = consumer(kafka, handler)
    await worker.poll()
    assert log == [("commit", {P1: 1})]


class Aggregator:
    """Records when windows close, and whether a batch was on its way in then."""

    def __init__(self, log: list[Any]):
        self.log = log
        self.counts = UsageCounts()
        self.in_flight = False

    async def add_many(self, samples: Sequence[Sample]) -> None:
        self.in_flight = True
        self.log.append(("sent", [s.sample_id for s, _ in samples]))
        await asyncio.sleep(0.01)  # Valkey at work
        self.counts.added += len(samples)
        self.in_flight = False

    async def close_due(self) -> int:
        self.log.append(("close", self.in_flight))
        return 0


async def test_the_next_batch_is_fetched_while_one_goes_in_and_windows_close_between() -> None:
    log: list[Any] = []
    kafka = Kafka(
        [
            {P0: [sample_record(P0, 0, "a")]},
            {P0: [sample_record(P0, 1, "b")]},
            {},
            {P0: [sample_record(P0, 2, "c")]},
        ],
        log,
    )
    aggregator = Aggregator(log)
    made, _ = consumer(kafka, aggregator.add_many)
    fetch = made.fetch

    async def fetch_logged(timeout_ms: int = 500) -> Any:
        log.append(("fetch", aggregator.in_flight))
        return await fetch(timeout_ms)

    made.fetch = fetch_logged  # type: ignore[method-assign]
    worker = UsageWorker(made, aggregator)  # type: ignore[arg-type]
    for _ in range(4):
        await worker.step(timeout_ms=1)
    await worker.flush()
    assert aggregator.counts.added == 3
    # Every close ran with nothing in flight; a batch's commit came before the next close.
    assert all(entry == ("close", False) for entry in log if entry[0] == "close")
    assert log == [
        ("fetch", False),
        ("close", False),
        ("sent", ["a"]),
        ("fetch", True),  # b is fetched and decoded while a goes in
        ("commit", {P0: 1}),
        ("close", False),
        ("sent", ["b"]),
        ("fetch", True),
        ("commit", {P0: 2}),
        ("close", False),
        ("fetch", False),
        ("close", False),
        ("sent", ["c"]),
        ("commit", {P0: 3}),
    ]
