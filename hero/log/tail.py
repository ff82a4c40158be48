"""Reading a topic as a person would: from the start, or only what arrives from now on.

"From now on" is decided by record timestamps, not by the broker's end offsets, which the
embedded broker reports wrongly (DESIGN.md).
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
) -> AsyncIterator[TailRecord]:
    """Yield the topic's records; stops after ``limit`` or ``idle_timeout_s`` without news."""
    since_ms = int(time.time() * 1000) if start == "latest" else 0
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await wait_for_partitions(consumer, topic)
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
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
