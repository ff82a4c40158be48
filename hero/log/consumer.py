"""A small consumer over aiokafka: decode envelopes, skip what was applied, dead-letter the rest.

A record that cannot be decoded, or whose payload breaks its schema, goes to ``hero.dlq`` with
the reason and where it came from; the consumer then carries on with the next record. A
dependency that is down (Valkey, the broker, a locked store) is not the record's fault: the
call is retried with a capped backoff for as long as it takes (``hero.log.retry``), and the
batch's offsets are committed only once every record of it was applied, skipped or
dead-lettered, so nothing is dead-lettered, nor committed unapplied, while a server blinks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError

from hero.log.codec import Decoded, DecodeError, decode_record
from hero.log.positions import AppliedPositions
from hero.log.producer import new_producer
from hero.log.retry import RetryState, is_infrastructure_error, retry_infrastructure
from schemas import REGISTRY, SchemaRegistry, Topic

__all__ = [
    "ConsumerStats",
    "DeadLetter",
    "EventConsumer",
    "GroupMember",
    "Handler",
    "call_with_retries",
    "commit_or_redeliver",
    "join_group",
    "leave_group",
    "send_dead_letter",
]

log = logging.getLogger(__name__)

Handler = Callable[[Decoded], Awaitable[None]]


@dataclass
class ConsumerStats:
    applied: int = 0
    skipped: int = 0
    dead_lettered: int = 0

    def add(self, other: ConsumerStats) -> None:
        self.applied += other.applied
        self.skipped += other.skipped
        self.dead_lettered += other.dead_lettered


@dataclass(frozen=True)
class DeadLetter:
    """What lands on ``hero.dlq``: the reason, the consumer and the source record."""

    reason: str
    detail: str
    consumer: str
    topic: str
    partition: int
    offset: int
    key: str | None
    value: str | None
    value_encoding: Literal["utf-8", "base64"]
    failed_at: str

    @classmethod
    def of(
        cls, record: ConsumerRecord[Any, Any], consumer: str, reason: str, detail: str
    ) -> DeadLetter:
        value, encoding = _text(record.value)
        key, _ = _text(record.key)
        return cls(
            reason=reason,
            detail=detail,
            consumer=consumer,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=key,
            value=value,
            value_encoding=encoding,
            failed_at=datetime.now(UTC).isoformat(),
        )

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, separators=(",", ":")).encode()


def _text(raw: bytes | None) -> tuple[str | None, Literal["utf-8", "base64"]]:
    if raw is None:
        return None, "utf-8"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), "base64"


async def call_with_retries(
    call: Callable[[], Awaitable[None]],
    attempts: int,
    what: str,
    *,
    state: RetryState | None = None,
) -> str | None:
    """None once ``call`` succeeds; after ``attempts`` failures, the last failure's text (for
    its dead letter). An infrastructure error is not a failure: it is retried, with a capped
    backoff, until the dependency answers (``retry_infrastructure``). Any other error may
    still pass on a retry (a store conflict): it is given a short, growing pause between
    attempts."""
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            await retry_infrastructure(call, what, state=state)
            return None
        except Exception as error:
            log.warning("%s failed (attempt %d): %r", what, attempt, error)
            last = f"{type(error).__name__}: {error}"
            await asyncio.sleep(0.05 * attempt)
    return last


async def commit_or_redeliver(consumer: AIOKafkaConsumer, what: str, offsets: Any = None) -> bool:
    """Commit (the given offsets, else the consumed positions); False, with a log line, when
    the broker cannot take the commit now. Every record up to those offsets was dealt with and
    its effect is idempotent, so an offset left uncommitted only means a redelivery."""
    try:
        if offsets is None:
            await consumer.commit()
        else:
            await consumer.commit(offsets)
    except Exception as error:
        if not (is_infrastructure_error(error) or isinstance(error, KafkaError)):
            raise
        log.warning("%s: commit not taken (%r); those records will be redelivered", what, error)
        return False
    return True


async def join_group(
    topics: Sequence[str],
    *,
    bootstrap: str,
    group: str,
    start_from: str = "earliest",
    session_timeout_ms: int,
) -> tuple[AIOKafkaConsumer, AIOKafkaProducer]:
    """A started member of consumer group ``group`` that commits by hand, and the producer of
    its dead letters. The heartbeat is a third of the session timeout, as Kafka advises."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset=start_from,
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=max(session_timeout_ms // 3, 100),
    )
    dlq = new_producer(bootstrap)
    await dlq.start()
    try:
        await consumer.start()
    except BaseException:
        await dlq.stop()
        raise
    return consumer, dlq


async def leave_group(consumer: AIOKafkaConsumer | None, dlq: AIOKafkaProducer | None) -> None:
    if consumer is not None:
        await consumer.stop()
    if dlq is not None:
        await dlq.stop()


async def send_dead_letter(
    producer: AIOKafkaProducer,
    topic: str,
    record: ConsumerRecord[Any, Any],
    consumer: str,
    reason: str,
    detail: str,
    *,
    state: RetryState | None = None,
) -> None:
    """Park ``record`` on the dead-letter ``topic`` with the reason, keyed by its source topic;
    waits out a broker that is away (the record's offset must not be committed before its
    dead letter is on the topic)."""
    letter = DeadLetter.of(record, consumer, reason, detail)
    log.warning(
        "%s: %s at %s[%d]@%d: %s",
        consumer,
        reason,
        record.topic,
        record.partition,
        record.offset,
        detail,
    )
    value, key = letter.to_json(), record.topic.encode()
    await retry_infrastructure(
        lambda: producer.send_and_wait(topic, value=value, key=key),
        f"{consumer}: dead letter",
        state=state,
    )


class GroupMember:
    """A member of consumer group ``name`` over ``topics``, with the producer of its dead
    letters: ``start`` joins the group, ``stop`` leaves it (a second ``stop`` does nothing),
    ``_dead_letter`` parks a record. The consumers of ``hero`` and ``streams`` build on it and
    add how they poll and what they count in ``stats``."""

    def __init__(
        self,
        *,
        name: str,
        topics: Sequence[str],
        bootstrap: str,
        start_from: Literal["earliest", "latest"] = "earliest",
        session_timeout_ms: int = 6000,
        dlq_topic: str = Topic.DLQ.value,
    ):
        self.name = name
        self.stats = ConsumerStats()
        self.retry = RetryState()
        """Infrastructure retries so far, and what it is waiting on now (for its health)."""
        self._dlq_topic = dlq_topic
        self._topics = list(topics)
        self._bootstrap = bootstrap
        self._start_from = start_from
        self._session_timeout_ms = session_timeout_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._consumer, self._dlq = await join_group(
            self._topics,
            bootstrap=self._bootstrap,
            group=self.name,
            start_from=self._start_from,
            session_timeout_ms=self._session_timeout_ms,
        )

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        dlq, self._dlq = self._dlq, None
        await leave_group(consumer, dlq)

    async def _dead_letter(
        self, record: ConsumerRecord[Any, Any], reason: str, detail: str
    ) -> None:
        assert self._dlq is not None
        await send_dead_letter(
            self._dlq, self._dlq_topic, record, self.name, reason, detail, state=self.retry
        )


class EventConsumer(GroupMember):
    """Consumes ``topics`` as consumer group ``name``; calls ``handler`` once per new event."""

    def __init__(
        self,
        *,
        name: str,
        topics: Sequence[str],
        bootstrap: str,
        handler: Handler,
        positions: AppliedPositions,
        registry: SchemaRegistry = REGISTRY,
        start_from: Literal["earliest", "latest"] = "earliest",
        session_timeout_ms: int = 6000,
        handler_attempts: int = 3,
        dlq_topic: str = Topic.DLQ.value,
    ):
        super().__init__(
            name=name,
            topics=topics,
            bootstrap=bootstrap,
            start_from=start_from,
            session_timeout_ms=session_timeout_ms,
            dlq_topic=dlq_topic,
        )
        self._handler = handler
        self._positions = positions
        self._registry = registry
        self._attempts = handler_attempts
        self.current: ConsumerRecord[Any, Any] | None = None
        """The record being handled, for a handler that needs its partition or offset."""

    async def __aenter__(self) -> EventConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def poll(self, timeout_ms: int = 500) -> ConsumerStats:
        """Handle one batch of records; returns this batch's counts."""
        if self._consumer is None:
            raise RuntimeError(f"consumer {self.name!r} is not started")
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=500)
        counts = ConsumerStats()
        for records in batches.values():
            for record in records:
                await self._handle(record, counts)
        if batches:
            await commit_or_redeliver(self._consumer, self.name)
        self.stats.add(counts)
        return counts

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll()

    async def _handle(self, record: ConsumerRecord[Any, Any], counts: ConsumerStats) -> None:
        self.current = record
        try:
            decoded = decode_record(record.value, self._registry)
        except DecodeError as error:
            await self._dead_letter(record, error.failure.value, error.detail)
            counts.dead_lettered += 1
            return
        envelope = decoded.envelope
        if await retry_infrastructure(
            lambda: self._positions.is_applied(envelope),
            f"{self.name}: positions",
            state=self.retry,
        ):
            counts.skipped += 1
            return
        failure = await self._call_handler(decoded)
        if failure is not None:
            await self._dead_letter(record, "handler_failed", failure)
            counts.dead_lettered += 1
            return
        await retry_infrastructure(
            lambda: self._positions.mark_applied(envelope),
            f"{self.name}: positions",
            state=self.retry,
        )
        counts.applied += 1

    async def _call_handler(self, decoded: Decoded) -> str | None:
        return await call_with_retries(
            lambda: self._handler(decoded),
            self._attempts,
            f"{self.name}: handler",
            state=self.retry,
        )
