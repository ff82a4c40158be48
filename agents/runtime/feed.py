"""Where a host's events come from: the store for history, Kafka for what happens next.

A host replays the store up to the position it read at start (P0) and then follows the
Kafka topics from their beginning, dropping what it already applied (see
:class:`agents.runtime.routing.AppliedVersions`). History comes from the store rather than
from Kafka because only the store knows exactly what "everything up to P0" is: the broker may
be behind the store (relay lag), may have been refilled, may hold records of other stores
(tests share one broker), and in production keeps only a retention window.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from agents.runtime.routing import AGENT_TOPICS
from hero.log.consumer import send_dead_letter
from hero.log.producer import new_producer
from hero.log.topics import wait_for_partitions
from hero.model.gcpause import collections_paused
from hero.store import (
    READ_BATCH,
    EventStore,
    PoisonRow,
    RecordedEvent,
    decode_trusted,
    skip_row,
)
from schemas import (
    REGISTRY,
    Envelope,
    Event,
    SchemaRegistry,
    Topic,
    UndecodableEvent,
)

__all__ = [
    "Admit",
    "BadRecord",
    "Delivery",
    "EventFeed",
    "FeedCounts",
    "History",
    "KafkaFeed",
    "StoreHistory",
    "decode",
    "decode_envelope",
]

log = logging.getLogger(__name__)

#: The name the agent hosts record their skipped rows (and dead letters) under.
SOURCE = "agents"

#: The host's "have I applied this?" check: True (and remembered) the first time only.
Admit = Callable[[str, Envelope], bool]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event as a host receives it: the topic it came on, its envelope, its payload."""

    topic: str
    envelope: Envelope
    event: Event


@dataclass
class FeedCounts:
    records: int = 0
    repeats: int = 0
    bad_records: int = 0


class BadRecord(ValueError):
    pass


def decode_envelope(raw: bytes | str | None) -> Envelope:
    """The envelope only: enough to drop a repeat before validating its payload."""
    if raw is None:
        raise BadRecord("record has no value")
    try:
        return Envelope.model_validate_json(raw)
    except ValidationError as error:
        raise BadRecord(f"invalid envelope: {error.error_count()} error(s)") from None


def decode(topic: str, envelope: Envelope, registry: SchemaRegistry = REGISTRY) -> Delivery:
    """The payload as its current class (upcast when older), or :class:`BadRecord`."""
    try:
        return Delivery(topic, envelope, envelope.decode(registry))
    except UndecodableEvent as error:
        raise BadRecord(str(error)) from None


def _admitted(
    topic: str, raw: bytes | str | None, admit: Admit, counts: FeedCounts, registry: SchemaRegistry
) -> Delivery | None:
    """The delivery if it is new; None for a repeat; :class:`BadRecord` if undecodable."""
    counts.records += 1
    envelope = decode_envelope(raw)
    if not admit(topic, envelope):
        counts.repeats += 1
        return None
    return decode(topic, envelope, registry)


def _skipped(counts: FeedCounts, where: str, error: BadRecord) -> None:
    # The feed dead-letters it too (hero.dlq); a host must above all not stop on one.
    counts.bad_records += 1
    log.warning("%s: skipped: %s", where, error)


class History(Protocol):
    """The past a host folds before it acts."""

    counts: FeedCounts

    async def position(self) -> int:
        """The store's last committed position (P0)."""
        ...

    def replay(self, upto: int, admit: Admit, *, after: int = 0) -> AsyncIterator[list[Delivery]]:
        """The admitted events of the host's topics with ``after`` < position <= ``upto``,
        in order (``after``: where a snapshot left off)."""
        ...


class EventFeed(Protocol):
    """What happens next, at least once: ``admit`` drops the repeats."""

    counts: FeedCounts

    async def start(self) -> None: ...

    async def poll(self, timeout_ms: int, admit: Admit) -> list[Delivery]: ...

    async def stop(self) -> None: ...


class StoreHistory:
    """Reads the event store in batches, in a worker thread (the store's calls block)."""

    def __init__(
        self,
        store: EventStore,
        topics: Sequence[str] = AGENT_TOPICS,
        *,
        batch_size: int = READ_BATCH,
        registry: SchemaRegistry = REGISTRY,
    ):
        self._store = store
        self._topics = frozenset(topics)
        self._batch = batch_size
        self._registry = registry
        self.counts = FeedCounts()

    async def position(self) -> int:
        return await asyncio.to_thread(self._store.current_position)

    async def replay(
        self, upto: int, admit: Admit, *, after: int = 0
    ) -> AsyncIterator[list[Delivery]]:
        """Large batches, each row decoded once (the envelope first: a repeat is dropped
        before its payload is validated). The cyclic collector is paused while the host
        folds them (see :mod:`hero.model.gcpause`): the host folds each batch before asking for
        the next, so the pause spans its whole catch-up and ends with it. ``after``: the position
        a snapshot already holds; only what follows it is read."""
        batches = self._store.read_batches(after + 1, self._batch, upto)
        with collections_paused():
            while (rows := await asyncio.to_thread(next, batches, None)) is not None:
                batch: list[Delivery] = []
                for row in rows:
                    if row.topic not in self._topics:
                        continue
                    try:
                        delivery = self._stored(row, admit)
                    except BadRecord as error:
                        self.counts.bad_records += 1
                        await asyncio.to_thread(
                            skip_row, self._store, SOURCE, row, PoisonRow("bad_record", str(error))
                        )
                        continue
                    if delivery is not None:
                        batch.append(delivery)
                if batch:
                    yield batch

    def _stored(self, row: RecordedEvent, admit: Admit) -> Delivery | None:
        """As :func:`_admitted`, the row decoded the trusted way (:func:`decode_trusted`: our
        store validated it on append); one it cannot read goes the validated way, which
        says why."""
        try:
            envelope, event = decode_trusted(row, self._registry)
        except PoisonRow:
            return _admitted(row.topic, row.envelope_json, admit, self.counts, self._registry)
        self.counts.records += 1
        if not admit(row.topic, envelope):
            self.counts.repeats += 1
            return None
        return Delivery(row.topic, envelope, event)


class KafkaFeed:
    """The agent topics from their first offset, by manual assignment: no consumer group.

    Every host must see every event, so a group (which splits partitions between members)
    is wrong here, and without one there is no rebalance to wait for. The embedded broker
    reports wrong end offsets, so nothing here asks for them: the feed starts at the
    beginning and the host drops what it already applied. A broker that restarted empty
    answers "offset out of range", and ``auto_offset_reset="earliest"`` starts over.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str] = AGENT_TOPICS,
        *,
        max_records: int = 2000,
        registry: SchemaRegistry = REGISTRY,
        dead_letters: bool = True,
    ):
        self._bootstrap = bootstrap
        self._topics = list(topics)
        self._max_records = max_records
        self._registry = registry
        self._consumer: AIOKafkaConsumer | None = None
        self._dead_letters = dead_letters
        self._dlq: AIOKafkaProducer | None = None
        self.counts = FeedCounts()

    async def start(self) -> None:
        if self._dead_letters and self._dlq is None:
            self._dlq = new_producer(self._bootstrap)
            try:
                await self._dlq.start()
            except BaseException:
                self._dlq = None
                raise
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            partitions = [
                TopicPartition(topic, p)
                for topic in self._topics
                for p in sorted(await wait_for_partitions(consumer, topic))
            ]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        dlq, self._dlq = self._dlq, None
        if consumer is not None:
            await consumer.stop()
        if dlq is not None:
            await dlq.stop()

    async def poll(self, timeout_ms: int, admit: Admit) -> list[Delivery]:
        """One batch of new events, sorted by store position.

        Within a partition records already follow position order; sorting the batch also
        puts a node's registration (reservations) before its status change (utilization)
        when both arrive together. A stream's versions grow with its positions, so the sort
        never reorders one stream.
        """
        if self._consumer is None:
            raise RuntimeError("KafkaFeed.poll before start")
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self._max_records)
        deliveries: list[Delivery] = []
        for records in batches.values():
            for record in records:
                try:
                    delivery = _admitted(
                        record.topic, record.value, admit, self.counts, self._registry
                    )
                except BadRecord as error:
                    _skipped(self.counts, _where(record), error)
                    await self._dead_letter(record, error)
                    continue
                if delivery is not None:
                    deliveries.append(delivery)
        deliveries.sort(key=lambda d: d.envelope.position)
        return deliveries

    async def _dead_letter(self, record: ConsumerRecord[Any, Any], error: BadRecord) -> None:
        """Park the record on ``hero.dlq``; a broker that refuses it is logged, not fatal:
        the feed goes on either way."""
        if self._dlq is None:
            return
        try:
            await send_dead_letter(
                self._dlq, Topic.DLQ.value, record, SOURCE, "bad_record", str(error)
            )
        except Exception:
            log.exception("%s: could not dead-letter %s", SOURCE, _where(record))


def _where(record: ConsumerRecord[Any, Any]) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"
