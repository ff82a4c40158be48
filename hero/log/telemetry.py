"""Telemetry straight to Kafka: utilization samples are too many for the event store.

A sample travels in the same envelope as every event, keyed by its workload (so one
workload's samples stay in order on one partition). It is not in the store, so it has no
store position: its stream is ``telemetry-<replica>`` and its version and position are the
replica's own sample sequence number, which is what a consumer's applied-versions check needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from aiokafka import AIOKafkaProducer

from hero.domain.usage import sample_envelope
from hero.log.codec import encode_envelope
from hero.log.producer import new_producer
from schemas import Topic, UtilizationSampled

__all__ = ["TelemetryPublisher", "sample_envelope"]


class TelemetryPublisher:
    """Sends samples to ``hero.utilization``; ``send`` returns once the broker has them."""

    def __init__(self, bootstrap: str, *, actor: str = "telemetry"):
        self._bootstrap, self._actor = bootstrap, actor
        self._producer: AIOKafkaProducer | None = None

    async def send(
        self, samples: Sequence[tuple[UtilizationSampled, int]], recorded_at: datetime
    ) -> None:
        if self._producer is None:
            self._producer = new_producer(self._bootstrap)
            await self._producer.start()
        futures = [
            await self._producer.send(
                Topic.UTILIZATION.value,
                value=encode_envelope(
                    sample_envelope(sample, seq, actor=self._actor, recorded_at=recorded_at)
                ),
                key=sample.workload_id.encode(),
            )
            for sample, seq in samples
        ]
        for future in futures:
            await future

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
