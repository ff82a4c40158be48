"""Helpers for integration tests: append test events and read topics back from the broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from hero.log.topics import wait_for_partitions
from hero.store import EventStore, NewEvent
from schemas import NodeStatusChanged, new_id


def status_event(node: str, status: str = "up") -> NewEvent:
    return NewEvent.of(
        NodeStatusChanged(node_id=node, status=status),  # type: ignore[arg-type]
        actor="test",
        occurred_at=datetime.now(UTC),
    )


def append_round_robin(store: EventStore, streams: list[str], per_stream: int) -> int:
    """Interleave appends across streams, one event per append, like independent aggregates."""
    for version in range(per_stream):
        for stream in streams:
            store.append(stream, version, [status_event(stream)], new_id("cmd"))
    return len(streams) * per_stream


async def read_topic_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[dict[str, Any]]], bool],
    *,
    keep: Callable[[dict[str, Any]], bool] = lambda _: True,
    timeout_s: float = 30.0,
) -> list[dict[str, Any]]:
    """Read ``topic`` from the beginning of every partition until ``done(records)`` holds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await wait_for_partitions(consumer, topic, timeout_s)
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        seen: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not done(seen):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(
                    f"{topic}: condition not met after {timeout_s}s, {len(seen)} kept"
                )
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                for record in records:
                    row = _row(record)
                    if keep(row):
                        seen.append(row)
        return seen
    finally:
        await consumer.stop()


def _row(record: Any) -> dict[str, Any]:
    try:
        body = json.loads(record.value)
    except (ValueError, TypeError):
        body = {"raw": record.value}
    if not isinstance(body, dict):
        body = {"raw": body}
    body["_partition"] = record.partition
    body["_offset"] = record.offset
    body["_key"] = record.key.decode() if record.key else None
    return body


def by_stream(rows: list[dict[str, Any]]) -> dict[str, list[int]]:
    versions: dict[str, list[int]] = {}
    for row in sorted(rows, key=lambda r: (r["_partition"], r["_offset"])):
        versions.setdefault(row["stream"], []).append(row["version"])
    return versions
