"""The usage aggregation as a Faust agent: ``streams.usage``'s core (Valkey windows, closes,
facts to the store, redrive from the telemetry spool) fed by Faust in batches.

The agent takes up to ``max_records`` records at a time (``noack_take``: Faust acks
nothing by itself), decodes them, adds the batch's samples to their windows in one script
call, and only then acks their records; Faust commits acked offsets every half second. A
kill -9 at any point loses nothing: what was not acked is redelivered, and a sample
redelivered is a duplicate in its window. Hours close between batches (a lock keeps a close
and a batch apart, so a window is read whole), once the stream has been quiet for a moment,
or every few seconds at the latest while records keep coming. Faust hands a backlog over in
many small batches (it moves records one at a time), where the plain consumer took it in one
fetch: closing after each of them would close an hour before the rest of the backlog is in
(an hour past its idle close, or one a newer sample's time moved past while older samples
the spool sent again come behind it), and make those samples late.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import faust
from redis.asyncio import Redis

from hero.config import HeroSettings
from hero.log.codec import DecodeError
from hero.log.consumer import ConsumerStats, call_with_retries
from hero.log.retry import RetryState, retry_infrastructure
from hero.log.telemetry import TelemetryPublisher
from hero.log.topics import TopicAdmin
from hero.readmodels.usage import UsageWindows
from hero.store import open_store
from hero.store.spool import SampleSpool, spool_path
from schemas import Topic, UtilizationSampled
from streams._faust import DeadLetters, every, partitions_of, raw_topic
from streams._health import write_health
from streams.redrive import SpoolRedriver
from streams.usage import Sample, UsageAggregator, decode_sample

log = logging.getLogger("streams.usage")

QUIET_S = 0.5
"""No record for this long: the backlog is drained, hours may close."""
CLOSE_EVERY_S = 5.0
"""Hours close at least this often, even while records keep coming."""


class UsageAgent:
    """The state one usage worker keeps: the aggregator, its counts, and the services it
    talks to. ``install`` puts its agent and timers on a Faust app."""

    def __init__(
        self,
        settings: HeroSettings,
        *,
        group: str,
        namespace: str,
        name: str,
        max_records: int = 2000,
        handler_attempts: int = 3,
    ):
        if not settings.kafka_bootstrap or not settings.redis_url:
            raise SystemExit("streams usage needs HERO_KAFKA_BOOTSTRAP and HERO_REDIS_URL")
        self.group, self.name, self.max_records = group, name, max_records
        self._attempts = handler_attempts
        self.retry = RetryState()
        self.stats = ConsumerStats()
        self._redis = Redis.from_url(settings.redis_url)
        self.windows = UsageWindows(self._redis, namespace)
        self.aggregator = UsageAggregator(
            open_store(settings.effective_store_url),
            self.windows,
            lateness=timedelta(seconds=settings.usage_lateness_s),
            idle_close=timedelta(seconds=settings.usage_idle_close_s),
        )
        self.dead_letters = DeadLetters(
            settings.kafka_bootstrap, group, Topic.DLQ.value, self.retry
        )
        self._spool = SampleSpool(spool_path(settings.data_dir))
        self._admin = TopicAdmin(settings.kafka_bootstrap)
        self._resender = TelemetryPublisher(settings.kafka_bootstrap, actor="usage", retry_for_s=10)
        self.redriver = SpoolRedriver(self._spool, self.windows, self._admin, self._resender)
        self.health_path = settings.data_dir / "run" / f"{name}.health"
        self.first_record_at: float | None = None
        """``time.perf_counter()`` when the first batch arrived (the benchmark's mark)."""
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._redriving: asyncio.Task[None] | None = None
        self._closed_at = 0.0
        self._record_at = time.monotonic()

    async def batch(self, messages: Sequence[Any]) -> None:
        """Decode ``messages``, dead-letter those that do not decode, add the samples to
        their windows (one round trip), then close what is due."""
        if self.first_record_at is None:
            self.first_record_at = time.perf_counter()
        self._record_at = time.monotonic()
        samples: list[Sample] = []
        kept: list[Any] = []
        counts = ConsumerStats()
        for message in messages:
            try:
                decoded = decode_sample(message.value)
            except DecodeError as error:
                await self.dead_letters.send(message, error.failure.value, error.detail)
                counts.dead_lettered += 1
                continue
            if isinstance(decoded, UtilizationSampled):
                samples.append((decoded, message.partition))
                kept.append(message)
            else:
                counts.applied += 1  # not a sample: nothing to do with it here
        async with self._lock:
            await self._add(samples, kept, counts)
        self.stats.add(counts)

    async def _add(self, samples: list[Sample], messages: list[Any], counts: ConsumerStats) -> None:
        """A batch that keeps failing is added one sample at a time; a sample that still
        fails is dead-lettered (``handler_failed``): one bad sample does not hold up the
        rest. Valkey down is waited out (``call_with_retries``), not a failure."""
        if not samples:
            return
        if await self._call(samples) is None:
            counts.applied += len(samples)
            return
        for sample, message in zip(samples, messages, strict=True):
            failure = await self._call([sample])
            if failure is None:
                counts.applied += 1
            else:
                await self.dead_letters.send(message, "handler_failed", failure)
                counts.dead_lettered += 1

    async def _call(self, samples: Sequence[Sample]) -> str | None:
        return await call_with_retries(
            lambda: self.aggregator.add_many(samples),
            self._attempts,
            f"{self.group}: handler on {len(samples)} samples",
            state=self.retry,
        )

    async def close_due(self) -> None:
        """Close every hour that may close now, with no batch going into Valkey meanwhile."""
        async with self._lock:
            await retry_infrastructure(
                self.aggregator.close_due, "usage: closing hours", state=self.retry
            )
            self._closed_at = time.monotonic()

    def report(self, app: faust.App) -> None:
        body = {
            **asdict(self.aggregator.counts),
            "dead_lettered": self.stats.dead_lettered,
            "spool_counted": self.redriver.counts.counted,
            "spool_resent": self.redriver.counts.resent,
            # What Kafka gave this member of the group: replicas share the partitions out.
            "partitions": partitions_of(app, Topic.UTILIZATION.value),
            "engine": "faust",
        }
        write_health(self.health_path, self.retry, body)

    async def start(self) -> None:
        """Before the app starts: the spool's redrive runs (from the first moment: a broker
        that comes back empty gets the samples it lost before newer ones, so a partition's
        samples stay in time order), and the topics exist (a broker that came back empty
        has none, and the group would wait for them)."""
        self._redriving = asyncio.create_task(self.redriver.run(self._stop))
        await retry_infrastructure(self._admin.ensure_topics, f"{self.group}: topics")

    async def close(self) -> None:
        await self.dead_letters.close()
        await self._resender.close()
        await self._admin.close()
        self._spool.close()
        await self._redis.aclose()

    def install(self, app: faust.App) -> None:
        topic = raw_topic(app, Topic.UTILIZATION.value)

        async def usage(stream: Any) -> None:
            async for events in stream.noack_take(self.max_records, within=0.05):
                await self.batch([event.message for event in events])
                for event in events:  # the samples are in Valkey: their offsets may go
                    await stream.ack(event)

        app.agent(topic, name="usage")(usage)

        async def background() -> None:
            try:
                await asyncio.gather(every(0.25, lambda: self.report(app)), self._idle_closes())
            finally:
                self._stop.set()
                if self._redriving is not None:
                    await self._redriving
                self.report(app)
                await self.close()

        app.task(background)

    async def _idle_closes(self) -> None:
        """Hours close here: once the stream is quiet, or every ``CLOSE_EVERY_S`` at the latest."""
        while True:
            await asyncio.sleep(0.2)
            now = time.monotonic()
            quiet = now - self._record_at >= QUIET_S
            if quiet or now - self._closed_at >= CLOSE_EVERY_S:
                await self.close_due()
