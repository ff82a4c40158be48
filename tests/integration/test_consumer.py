"""The consumer helper against the real broker and Valkey: dedupe by position, dead letters."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from hero.log.codec import Decoded
from hero.log.consumer import EventConsumer
from hero.log.producer import KafkaPublisher
from hero.readmodels.positions import RedisAppliedPositions
from hero.store import EventStore, MemoryCheckpointStore, OutboxRelay
from schemas import Topic, new_id
from tests.integration._kafka import append_round_robin, read_topic_until, status_event

pytestmark = pytest.mark.integration


async def _relay_all(store: EventStore, bootstrap: str) -> int:
    """Publish the whole store from position 1, as a relay that lost its checkpoint would."""
    publisher = KafkaPublisher(bootstrap)
    try:
        return await OutboxRelay(store, MemoryCheckpointStore(), publisher).drain()
    finally:
        await publisher.close()


async def _consume_until(consumer: EventConsumer, condition, timeout_s: float = 30) -> None:  # type: ignore[no-untyped-def]
    loop_deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > loop_deadline:
            raise TimeoutError(f"consumer {consumer.name}: {consumer.stats}")
        await consumer.poll(timeout_ms=300)


async def test_consumer_skips_positions_it_already_applied(stack, store_factory) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    store = store_factory().open()
    tag = new_id("c")
    streams = [f"node-{tag}-{i}" for i in range(3)]
    total = append_round_robin(store, streams, per_stream=10)
    await _relay_all(store, bootstrap)

    redis = Redis.from_url(stack.endpoints.redis_url)
    seen: list[tuple[str, int]] = []

    async def handle(decoded: Decoded) -> None:
        if decoded.envelope.stream in streams:
            seen.append((decoded.envelope.stream, decoded.envelope.version))

    name = f"test-dedupe-{tag}"
    positions = RedisAppliedPositions(redis, name)
    async with EventConsumer(
        name=name,
        topics=[Topic.UTILIZATION],
        bootstrap=bootstrap,
        handler=handle,
        positions=positions,
    ) as consumer:
        await _consume_until(consumer, lambda: len(seen) >= total)
    assert sorted(seen) == sorted((s, v) for s in streams for v in range(1, 11))

    # Redeliver everything (a relay restarted from scratch) and read it with fresh Kafka
    # offsets but the same applied positions, kept in Valkey: nothing is applied twice.
    await _relay_all(store, bootstrap)
    replayed = EventConsumer(
        name=f"{name}-again",
        topics=[Topic.UTILIZATION],
        bootstrap=bootstrap,
        handler=handle,
        positions=RedisAppliedPositions(redis, name),
    )
    async with replayed:
        await _consume_until(replayed, lambda: replayed.stats.skipped >= 2 * total)
    assert len(seen) == total
    fresh = RedisAppliedPositions(redis, name)  # read back from Valkey, not a local cache
    assert [await fresh.applied_version(s) for s in streams] == [10, 10, 10]
    assert await fresh.last_position() >= store.current_position()
    await redis.aclose()


async def test_garbage_and_invalid_records_go_to_the_dead_letter_topic(
    stack, store_factory
) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    topic = Topic.RESERVATIONS.value
    tag = new_id("d")
    store = store_factory().open()
    store.append(f"node-{tag}", 0, [status_event(f"node-{tag}")], new_id("cmd"))
    good = json.loads(store.read_all(1, 1)[0].envelope_json)
    invalid = dict(
        good,
        id=new_id("evt"),
        type="NodeRegistered",
        stream=f"node-{tag}-x",
        payload={"node_id": f"node-{tag}-x", "grid": "grid9", "total": "lots"},
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        key = f"node-{tag}".encode()
        garbage_md = await producer.send_and_wait(topic, b"\xff\x00not json", key=key)
        invalid_md = await producer.send_and_wait(topic, json.dumps(invalid).encode(), key=key)
        await producer.send_and_wait(topic, json.dumps(good).encode(), key=key)
    finally:
        await producer.stop()

    applied: list[str] = []

    async def handle(decoded: Decoded) -> None:
        applied.append(decoded.envelope.id)

    redis = Redis.from_url(stack.endpoints.redis_url)
    async with EventConsumer(
        name=f"test-dlq-{tag}",
        topics=[topic],
        bootstrap=bootstrap,
        handler=handle,
        positions=RedisAppliedPositions(redis, f"test-dlq-{tag}"),
    ) as consumer:
        await _consume_until(consumer, lambda: good["id"] in applied)
    await redis.aclose()

    letters = await read_topic_until(
        bootstrap,
        Topic.DLQ.value,
        lambda seen: len(seen) >= 2,
        keep=lambda row: row.get("consumer") == f"test-dlq-{tag}",
    )
    by_offset = {(row["partition"], row["offset"]): row for row in letters}
    garbage = by_offset[(garbage_md.partition, garbage_md.offset)]
    assert garbage["reason"] == "undecodable"
    assert garbage["topic"] == topic
    assert garbage["value_encoding"] == "base64"
    assert garbage["_key"] == topic
    schema = by_offset[(invalid_md.partition, invalid_md.offset)]
    assert schema["reason"] == "schema_invalid"
    assert "grid" in schema["detail"]
    assert "total" in schema["detail"]
    assert json.loads(schema["value"])["id"] == invalid["id"]
