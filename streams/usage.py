"""Hourly usage facts from utilization samples: Kafka in, Valkey windows, the store out.

The usage worker (``python -m streams usage``: this loop, ``streams._usage_plain``, or with
``HERO_USAGE_RUNNER=faust`` the Faust agent of ``streams.app`` around the same core): it
consumes ``hero.utilization`` as group ``hero-usage``. Each sample
is added to its contract-hour window in Valkey (counted once, by sample id); an hour closes
when every partition's samples have moved past it by ``HERO_USAGE_LATENESS_S`` (samplers
report as time passes, so a partition's samples arrive in time order, give or take that), or at the
latest ``HERO_USAGE_IDLE_CLOSE_S`` after it by the wall clock; it then enters the store as
one ``UsageRecorded`` per contract and hour (the command id is the contract and the hour, so
a close repeated after a crash writes nothing). A kill -9 at any point loses nothing: the
windows live in Valkey, and Kafka redelivers what was not committed.

Several workers (``hero up --replicas N``, ``--name usage-2``) share the group's partitions and
the windows: a sample counts once whoever consumes it, and a window is sealed before it is read
for its fact, so a sample another worker adds meanwhile is LATE, never added to sums the fact
no longer holds; two workers closing one hour write its fact once (its command id).

A dependency that blinks loses nothing either. Valkey, the broker or the store unavailable
is waited out with a capped backoff (``hero.log.retry``), with nothing committed or
dead-lettered meanwhile, and the health file says ``degraded`` with the reason; only a record
that fails by itself is dead-lettered. A broker that comes back empty (the embedded one is
memory-only) has lost the samples it had not delivered: publishers keep each sample in the
telemetry spool first, and this worker sends again the ones its windows do not hold
(``streams.redrive``), which the windows then count once.

The samples of one consumed batch reach Valkey in one script call (one round trip), and the
batch's offsets are committed only once that call has returned: a sample is in its window
before its offset is committed, and one redelivered is a duplicate there. While a batch goes
into Valkey the next one is fetched and decoded; windows close only between the two, with no
batch in flight. A sample is decoded in one validation pass (the envelope with its payload
typed); a record that pass refuses is decoded the general way, which says why it fails, and is
dead-lettered as any consumer does. Before either, a sample in the canonical form its publisher
writes is read by one regex straight into the numbers its window needs (``streams._sample_row``,
every id and limit checked as the schema checks it), and hours close together: their windows
sealed, read and closed in one round trip each, their facts in one store commit.

Why Valkey and not a Faust table: a table is restored from its changelog topic, and the
embedded broker's wrong end offsets break that restore (DESIGN.md); the windows' home is
Valkey, which the stack already runs with its append-only file on.

``SampleConsumer`` and ``UsageWorker`` are the loop over a plain aiokafka consumer group:
``hero up``'s usage worker, the benchmark's measure (``benchmarks/autoscale.py``) and the
in-process tests' driver.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from pydantic import ValidationError

from hero.domain.clock import Clock, SystemClock
from hero.domain.usage import usage_fact, usage_stream
from hero.log.codec import DecodeError, decode_record
from hero.log.consumer import (
    ConsumerStats,
    GroupMember,
    call_with_retries,
    commit_or_redeliver,
)
from hero.log.retry import retry_infrastructure
from hero.model import MarketState, apply
from hero.readmodels.usage import SampleRow, UsageWindows, row_of
from hero.store import ANY_VERSION, EventStore, NewEvent, recorded_after
from schemas import REGISTRY, Envelope, Message, Topic, UtilizationSampled
from streams._sample_row import sample_row

__all__ = [
    "Sample",
    "SampleBatch",
    "SampleConsumer",
    "UsageAggregator",
    "UsageCounts",
    "UsageWorker",
    "decode_sample",
    "sample_row",
]

log = logging.getLogger("streams.usage")
HOUR = timedelta(hours=1)

Sample = tuple[UtilizationSampled, int]
"""A sample and the partition it came from (whose watermark it moves)."""


@dataclass
class UsageCounts:
    added: int = 0
    duplicates: int = 0
    late: int = 0
    facts: int = 0


class UsageAggregator:
    def __init__(
        self,
        store: EventStore,
        windows: UsageWindows,
        clock: Clock | None = None,
        *,
        lateness: timedelta = timedelta(minutes=5),
        idle_close: timedelta = timedelta(hours=1),
        actor: str = "usage",
    ):
        self._store, self._windows = store, windows
        self._clock = clock or SystemClock()
        self._lateness, self._idle_close, self._actor = lateness, idle_close, actor
        # The market model, fed the contracts recorded so far: the only facts a usage fact
        # needs (its contract's resources), and the only rows this worker decodes.
        self._market = MarketState()
        self._position = 0
        self.counts = UsageCounts()

    async def add(self, sample: UtilizationSampled, partition: int) -> None:
        await self.add_rows([row_of(sample, partition)])

    async def add_many(self, samples: Sequence[Sample]) -> None:
        """Add a batch of samples in one round trip to Valkey; counted as one by one."""
        await self.add_rows([row_of(sample, partition) for sample, partition in samples])

    async def add_rows(self, rows: Sequence[SampleRow]) -> None:
        """``add_many`` of samples given as rows (``decode_row`` gives them)."""
        outcomes = await self._windows.add_rows(rows)
        added, duplicates = outcomes.count("1"), outcomes.count("0")
        counts = self.counts
        counts.added += added
        counts.duplicates += duplicates
        if added + duplicates == len(outcomes):
            return
        counts.late += len(outcomes) - added - duplicates
        for row, outcome in zip(rows, outcomes, strict=True):
            if outcome == "2":
                log.warning("late sample %s for %s: its hour is closed", row[0], row[1])

    async def close_due(self) -> int:
        """Record every window that may close now; returns how many facts were written."""
        now = self._clock.now()
        watermark = await self._windows.watermark()
        by_events = watermark - self._lateness if watermark is not None else None
        by_clock = now - self._idle_close
        limit = max(by_clock, by_events) if by_events is not None else by_clock
        due = await self._windows.open_before(limit - HOUR + timedelta(seconds=1))
        if any(contract_id not in self._market.contracts for contract_id, _ in due):
            self._follow_contracts()  # once per close, not once per window
        ready = [(c, hour) for c, hour in due if c in self._market.contracts]
        if not ready:
            return 0  # none, or their contracts are not in the store yet: they stay open
        # Sealed before they are read: another worker's sample for one is LATE from now on,
        # not added to sums its fact would not hold. A close cut short finds them sealed,
        # still open, and does it again on the same sums.
        await self._windows.seal_many(ready)
        windows = await self._windows.read_many(ready)
        written = 0
        with self._store.group_commit():  # one commit for the lot, not one per fact
            for window in windows:
                contract_id, hour = window.contract_id, window.hour
                contract = self._market.contracts[contract_id]
                fact = usage_fact(
                    contract, hour, window.seconds, window.network_bytes, window.samples
                )
                command_id = f"usage-{contract_id}-{hour:%Y%m%dT%H}"
                event = NewEvent.of(
                    fact, actor=self._actor, occurred_at=now, causation_id=command_id
                )
                stream = usage_stream(contract_id)
                result = self._store.append(stream, ANY_VERSION, [event], command_id)
                written += not result.duplicate
        await self._windows.close_many(ready)  # only once their facts are durable
        self.counts.facts += written
        return written

    def _follow_contracts(self) -> None:
        """Read the contracts recorded since the last look."""
        for row in recorded_after(self._store, self._position):
            self._position = row.position
            if row.type == "ContractCreated":
                envelope = row.envelope()
                apply(self._market, envelope, envelope.decode())


class _SampleEnvelope(Envelope):
    """An envelope whose payload is validated as a sample in the same pass (no dict between)."""

    payload: UtilizationSampled  # type: ignore[assignment]


_SAMPLE = REGISTRY.entry("UtilizationSampled")


def decode_sample(value: bytes | None) -> Message:
    """The record's message, as ``decode_record`` gives it; a sample at its current schema
    version takes one validation pass, anything else (and any failure) the general path,
    which raises DecodeError with the reason."""
    if value is not None:
        try:
            fast = _SampleEnvelope.model_validate_json(value)
        except ValidationError:
            pass
        else:
            if fast.type == _SAMPLE.type and fast.schema_version == _SAMPLE.version:
                return fast.payload
    return decode_record(value).message


BatchHandler = Callable[[Sequence[SampleRow]], Awaitable[None]]


@dataclass
class SampleBatch:
    """One consumed batch, decoded: its samples (with the records they came from), the offsets
    that commit it, and its counts so far (records dead-lettered or not samples)."""

    samples: list[SampleRow]
    records: list[ConsumerRecord[Any, Any]]
    offsets: dict[TopicPartition, int]
    counts: ConsumerStats


class SampleConsumer(GroupMember):
    """Consumes ``hero.utilization`` as group ``name``, a batch at a time: ``fetch`` decodes a
    batch's records (dead-letters those that do not decode); ``apply`` hands its samples to
    ``handler`` in one call and, once that call has returned, commits the batch's offsets.

    A handler that keeps failing on a batch is called again with one sample at a time, and a
    sample that still fails is dead-lettered (``handler_failed``), as ``EventConsumer`` does
    with a record: one bad sample does not hold up the rest. A handler that fails because a
    dependency is down (Valkey refusing connections, loading, asking for auth) is not failing:
    the call is retried with a capped backoff until it passes, nothing is dead-lettered and
    nothing committed meanwhile (``retry`` says what it waits on, for the health file).
    """

    def __init__(
        self,
        *,
        name: str,
        bootstrap: str,
        handler: BatchHandler,
        topics: Sequence[str] = (Topic.UTILIZATION.value,),
        max_records: int = 8000,
        session_timeout_ms: int = 6000,
        handler_attempts: int = 3,
        dlq_topic: str = Topic.DLQ.value,
    ):
        super().__init__(
            name=name,
            topics=topics,
            bootstrap=bootstrap,
            session_timeout_ms=session_timeout_ms,
            dlq_topic=dlq_topic,
        )
        self.first_record_at: float | None = None
        """``time.perf_counter()`` when the first records arrived."""
        self._handler = handler
        self._max_records = max_records
        self._attempts = handler_attempts

    def partitions(self) -> list[int]:
        """The partitions assigned to this consumer now (none before it joined)."""
        if self._consumer is None:
            return []
        return sorted(tp.partition for tp in self._consumer.assignment())

    async def poll(self, timeout_ms: int = 500) -> ConsumerStats:
        """Fetch one batch and apply it; returns this batch's counts."""
        batch = await self.fetch(timeout_ms)
        if batch is None:
            return ConsumerStats()
        await self.apply(batch)
        return batch.counts

    async def fetch(self, timeout_ms: int = 500) -> SampleBatch | None:
        """The next batch of records, decoded; None when none came within ``timeout_ms``."""
        if self._consumer is None:
            raise RuntimeError(f"consumer {self.name!r} is not started")
        fetched = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self._max_records)
        if not fetched:
            return None
        if self.first_record_at is None:
            self.first_record_at = time.perf_counter()
        batch = SampleBatch([], [], {}, ConsumerStats())
        rows, kept, counts = batch.samples, batch.records, batch.counts
        for partition, records in fetched.items():
            number = partition.partition
            for record in records:
                value = record.value
                row = sample_row(value, number) if value is not None else None
                if row is None:
                    try:
                        message = decode_sample(value)
                    except DecodeError as error:
                        await self._dead_letter(record, error.failure.value, error.detail)
                        counts.dead_lettered += 1
                        continue
                    if not isinstance(message, UtilizationSampled):
                        counts.applied += 1  # not a sample: nothing to do with it here
                        continue
                    row = row_of(message, number)
                rows.append(row)
                kept.append(record)
            batch.offsets[partition] = records[-1].offset + 1
        return batch

    async def apply(self, batch: SampleBatch) -> None:
        """Hand the batch's samples over, then commit its offsets (those of partitions this
        consumer still has: a partition taken away meanwhile is redelivered to its new owner,
        whose windows find its samples counted)."""
        if self._consumer is None:
            raise RuntimeError(f"consumer {self.name!r} is not started")
        counts = batch.counts
        if batch.samples and await self._call(batch.samples) is None:
            counts.applied += len(batch.samples)
        elif batch.samples:
            for sample, record in zip(batch.samples, batch.records, strict=True):
                failure = await self._call([sample])
                if failure is None:
                    counts.applied += 1
                else:
                    await self._dead_letter(record, "handler_failed", failure)
                    counts.dead_lettered += 1
        assigned = self._consumer.assignment()
        offsets = {tp: offset for tp, offset in batch.offsets.items() if tp in assigned}
        if offsets:  # the batch is in Valkey: its offsets may go
            await commit_or_redeliver(self._consumer, self.name, offsets)
        self.stats.add(counts)

    async def _call(self, samples: Sequence[SampleRow]) -> str | None:
        return await call_with_retries(
            lambda: self._handler(samples),
            self._attempts,
            f"{self.name}: handler on {len(samples)} samples",
            state=self.retry,
        )


class UsageWorker:
    """``streams.usage``'s loop, one ``step`` at a time: fetch and decode a batch while the one
    before it is going into Valkey; wait for that one (and its commit); close what is due, with
    no batch in flight, so a window is read and closed whole; then send the new batch off.
    """

    def __init__(self, consumer: SampleConsumer, aggregator: UsageAggregator):
        self.consumer, self.aggregator = consumer, aggregator
        self._applying: asyncio.Task[None] | None = None

    async def step(self, timeout_ms: int = 200) -> None:
        batch = await self.consumer.fetch(timeout_ms)
        await self.flush()
        await retry_infrastructure(
            self.aggregator.close_due, "usage: closing hours", state=self.consumer.retry
        )
        if batch is not None:
            self._applying = asyncio.create_task(self.consumer.apply(batch))
            await asyncio.sleep(0)  # the task sends its call before the next batch is decoded

    async def flush(self) -> None:
        """Wait for the batch in flight, if any, to be in Valkey and committed."""
        applying, self._applying = self._applying, None
        if applying is not None:
            await applying
