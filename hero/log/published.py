"""What a relay already put on the topics: per partition, the last store position there.

A relay saves its checkpoint after the broker confirms a batch, so a relay that dies leaves the
checkpoint behind what the broker holds. The next leader reads, per partition, the position of
the last record a relay wrote (each carries it in the ``hero-position`` header) and, when that
record is its own store's row (:class:`~hero.log.producer.KafkaPublisher`'s ``owns``), skips
the rows at or below it: a partition's records are a prefix, in store order, of the rows keyed
to it (the publisher sends one partition's batches one after the other), so those rows are
there.

Reading "the last record" differs by broker. Apache Kafka's end offset is the high watermark:
the last record sits just below it. Tansu's end offset is the last batch's base offset + 1:
reading from one below it yields that whole batch. Either way, reading from ``end - 1`` until
the consumer's position reaches ``end`` covers the last record on both. Other producers write
to some topics too (telemetry samples, the DLQ), so when the tail holds no relay record the
read goes further back, in growing windows, down to the partition's start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition

from hero.log.topics import wait_for_partitions

__all__ = ["POSITION_HEADER", "Published", "last_published"]

POSITION_HEADER = "hero-position"
_FIRST_WINDOW = 1
_WINDOW_GROWTH = 64
_FETCH_WAIT_MS = 20


class Published(NamedTuple):
    """The last relay record of a partition: its store position and its key (the stream)."""

    position: int
    stream: str


async def last_published(
    bootstrap: str, topics: Iterable[str], *, timeout_s: float = 30.0
) -> dict[tuple[str, int], Published]:
    """(topic, partition) -> the last relay record in it (absent: none).

    A topic the broker does not have holds nothing: it is left out."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        # A fetch in flight at the partition's end waits this long on the broker; the search
        # seeks and fetches again at once, and a takeover waits for it.
        fetch_max_wait_ms=_FETCH_WAIT_MS,
    )
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        listed = await consumer.topics()
        tps = [
            TopicPartition(topic, partition)
            for topic in sorted(set(topics) & listed)
            for partition in sorted(await wait_for_partitions(consumer, topic, timeout_s))
        ]
        if not tps:
            return {}
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        return await _search(consumer, starts, ends, deadline)
    finally:
        await consumer.stop()


async def _search(
    consumer: AIOKafkaConsumer,
    starts: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
    deadline: float,
) -> dict[tuple[str, int], Published]:
    """Every partition's tail at once (one round of fetches, not one per partition), then
    wider windows back for those whose tail held no relay record."""
    found: dict[tuple[str, int], Published] = {}
    windows = {tp: (max(starts[tp], ends[tp] - _FIRST_WINDOW), ends[tp]) for tp in ends}
    size = _FIRST_WINDOW
    while windows := {tp: (low, high) for tp, (low, high) in windows.items() if high > low}:
        for tp, last in (await _read(consumer, windows, deadline)).items():
            found[(tp.topic, tp.partition)] = last
            del windows[tp]
        size *= _WINDOW_GROWTH
        windows = {tp: (max(starts[tp], low - size), low) for tp, (low, _) in windows.items()}
    return found


async def _read(
    consumer: AIOKafkaConsumer,
    windows: dict[TopicPartition, tuple[int, int]],
    deadline: float,
) -> dict[TopicPartition, Published]:
    """Per partition, the highest relay position among the records from its ``low`` until
    the read passes its ``high``."""
    for tp, (low, _) in windows.items():
        consumer.seek(tp, low)
    consumer.pause(*(consumer.assignment() - set(windows)))
    consumer.resume(*windows)
    last: dict[TopicPartition, Published] = {}
    pending = set(windows)
    while pending:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            where = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(pending))
            raise TimeoutError(f"could not read the last records of {where}")
        batches = await consumer.getmany(*pending, timeout_ms=int(min(remaining, 1.0) * 1000))
        for tp, records in batches.items():
            for record in records:
                position = _position(record.headers)
                if position is not None and (tp not in last or position > last[tp].position):
                    key = record.key.decode("utf-8", "replace") if record.key else ""
                    last[tp] = Published(position, key)
        pending = {tp for tp in pending if await consumer.position(tp) < windows[tp][1]}
    return last


def _position(headers: Iterable[tuple[str, bytes]] | None) -> int | None:
    for key, value in headers or ():
        if key == POSITION_HEADER:
            text = value.decode("ascii", "replace")
            # A header another producer forged must not stop the relay: it is ignored.
            return int(text) if text.isdigit() and len(text) <= 19 else None
    return None
