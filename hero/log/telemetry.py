"""Telemetry straight to Kafka: utilization samples are too many for the event store.

A sample travels in the same envelope as every event, keyed by its workload (so one
workload's samples stay in order on one partition). It is not in the store, so it has no
store position: its stream is ``telemetry-<replica>`` and its version and position are the
replica's own sample sequence number, which is what a consumer's applied-versions check needs.

No sample is lost when the broker blinks. A broker that is away is waited out: the send is
retried with a capped backoff (``hero.log.retry``) for up to ``retry_for_s``. And since the
embedded broker keeps its log in memory, a publisher given a spool (``hero.store.spool``)
writes each sample there before sending it; the usage worker removes it once counted and
sends again what a restarted broker lost (``streams.redrive``), so a sample the broker took
and then lost is still counted, once (its window's sample ids dedupe the copies).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from datetime import datetime

from aiokafka import AIOKafkaProducer

from hero.domain.usage import sample_envelope
from hero.log.codec import encode_envelope
from hero.log.producer import new_producer
from hero.log.retry import InfrastructureError, retry_infrastructure
from hero.store.spool import SampleSpool, SpooledSample
from schemas import Topic, UtilizationSampled

__all__ = ["TelemetryNotSent", "TelemetryPublisher", "sample_envelope", "spooled"]


class TelemetryNotSent(InfrastructureError):
    """The broker did not take the samples in time (those spooled stay in the spool)."""


def spooled(
    samples: Sequence[tuple[UtilizationSampled, int]], *, actor: str, recorded_at: datetime
) -> list[SpooledSample]:
    """Each sample as the record it travels in, with what finds its window."""
    found = []
    for sample, seq in samples:
        envelope = sample_envelope(sample, seq, actor=actor, recorded_at=recorded_at)
        stamp = sample.sampled_at.timestamp()
        found.append(
            SpooledSample(
                sample_id=sample.sample_id,
                contract_id=sample.contract_id,
                hour=math.floor(stamp) // 3600 * 3600,
                key=sample.workload_id.encode(),
                value=encode_envelope(envelope),
            )
        )
    return found


class TelemetryPublisher:
    """Sends samples to ``topic`` (``hero.utilization``); ``send`` returns once the broker has
    them, having kept them in ``spool`` first when one is given."""

    def __init__(
        self,
        bootstrap: str,
        *,
        actor: str = "telemetry",
        spool: SampleSpool | None = None,
        retry_for_s: float = 60.0,
        topic: str = Topic.UTILIZATION.value,
    ):
        self._bootstrap, self._actor = bootstrap, actor
        self._spool, self._retry_for_s, self._topic = spool, retry_for_s, topic
        self._producer: AIOKafkaProducer | None = None

    async def send(
        self, samples: Sequence[tuple[UtilizationSampled, int]], recorded_at: datetime
    ) -> None:
        records = spooled(samples, actor=self._actor, recorded_at=recorded_at)
        if self._spool is not None:
            self._spool.add(records, time.time())
        await self.send_records(records)

    async def send_records(self, records: Sequence[SpooledSample]) -> None:
        """Send records as they are; a broker that is away is waited out for ``retry_for_s``,
        then TelemetryNotSent."""
        try:
            await asyncio.wait_for(
                retry_infrastructure(lambda: self._send_once(records), "telemetry: send"),
                self._retry_for_s,
            )
        except TimeoutError as error:
            await self.close()
            kept = " (they are kept in the spool)" if self._spool is not None else ""
            raise TelemetryNotSent(
                f"the broker at {self._bootstrap} did not take {len(records)} samples "
                f"within {self._retry_for_s:g} s{kept}"
            ) from error

    async def _send_once(self, records: Sequence[SpooledSample]) -> None:
        try:
            producer = self._producer or await self._started()
            futures = [
                await producer.send(self._topic, value=record.value, key=record.key)
                for record in records
            ]
            for future in futures:
                await future
        except BaseException:
            await self.close()  # a fresh producer for the retry: the broker may be a new one
            raise

    async def _started(self) -> AIOKafkaProducer:
        producer = new_producer(self._bootstrap)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        return producer

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
