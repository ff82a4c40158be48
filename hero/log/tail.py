"""Reading a topic as a person would: from the start, or only what arrives from now on.

"From now on" is, on Apache Kafka, the partitions' end offsets when the tail starts. The
embedded Tansu reports end offsets wrongly (DESIGN.md), so there it is decided by record
timestamps instead (which a producer's clock skew can fool, hence not on Kafka).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, TopicPartition

from hero.log.topics import wait_for_partitions

__all__ = ["TailRecord", "tail"]


@dataclass(frozen=True)
class TailRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    value: dict[str, Any] | None
    raw: bytes | None

    @property
    def order(self) -> tuple[int, int, int]:
        position = self.value.get("position") if self.value else None
        return (position if isinstance(position, int) else 1 << 62, self.partition, self.offset)


def _parse(raw: bytes | None) -> dict[str, Any] | None:
    try:
        value = json.loads(raw) if raw is not None else None
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


async def tail(
    bootstrap: str,
    topic: str,
    *,
    start: Literal["earliest", "latest"] = "earliest",
    limit: int | None = None,
    idle_timeout_s: float | None = None,
    end_offsets: bool = False,
) -> AsyncIterator[TailRecord]:
    """Yield the topic's records; stops after ``limit`` or ``idle_timeout_s`` without news.

    ``end_offsets``: the broker's end offsets are right (Apache Kafka, not Tansu), so
    ``latest`` starts at them rather than at records stamped from now on.
    """
    by_offset = start == "latest" and end_offsets
    since_ms = int(time.time() * 1000) if start == "latest" and not by_offset else 0
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await wait_for_partitions(consumer, topic)
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        if by_offset:
            for partition, offset in (await consumer.end_offsets(assigned)).items():
                consumer.seek(partition, offset)
        else:
            await consumer.seek_to_beginning()
        count, idle_since = 0, time.monotonic()
        while limit is None or count < limit:
            batches = await consumer.getmany(timeout_ms=200)
            records = [r for rs in batches.values() for r in rs if r.timestamp >= since_ms]
            if not records:
                if idle_timeout_s is not None and time.monotonic() - idle_since > idle_timeout_s:
                    return
                continue
            idle_since = time.monotonic()
            for record in records:
                yield TailRecord(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    timestamp_ms=record.timestamp,
                    key=record.key.decode(errors="replace") if record.key else None,
                    value=_parse(record.value),
                    raw=record.value,
                )
                count += 1
                if limit is not None and count >= limit:
                    return
    finally:
        await consumer.stop()
