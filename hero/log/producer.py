"""Publishing to Kafka: the relay's publisher, over aiokafka.

No idempotent or transactional producer (the embedded broker does not support them with
aiokafka); ordering per stream comes from the key and aiokafka's one in-flight batch per
partition, and duplicates are removed downstream by store positions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from hero.log.topics import EPOCH_MARKER_TOPIC, PLATFORM_TOPICS, TopicAdmin
from hero.store.outbox import Publisher
from hero.store.port import RecordedEvent

__all__ = ["KafkaPublisher", "new_producer"]


def new_producer(bootstrap: str, *, request_timeout_ms: int = 10_000) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=1_048_576,
        request_timeout_ms=request_timeout_ms,
        retry_backoff_ms=200,
    )


class KafkaPublisher(Publisher):
    """``purge_on_reset`` deletes the platform topics before a refill, so records that reached
    a freshly restarted broker ahead of the refill cannot precede older ones. Only for a broker
    HERO owns (the embedded one); never on a shared cluster."""

    def __init__(self, bootstrap: str, *, partitions: int = 3, purge_on_reset: bool = False):
        self._bootstrap = bootstrap
        self._admin = TopicAdmin(bootstrap, partitions=partitions)
        self._purge = purge_on_reset
        self._producer: AIOKafkaProducer | None = None

    async def _ready(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = new_producer(self._bootstrap)
            await producer.start()
            self._producer = producer
        return self._producer

    async def publish(self, events: Sequence[RecordedEvent]) -> None:
        producer = await self._ready()
        try:
            pending = [
                await producer.send(
                    event.topic,
                    value=event.envelope_json.encode(),
                    key=event.stream.encode(),
                    headers=[("type", event.type.encode())],
                )
                for event in events
            ]
            await asyncio.gather(*pending)
        except BaseException:
            await self.close()
            raise

    async def lost_data(self) -> bool:
        return not await self._admin.marker_present()

    async def reset(self) -> None:
        if self._purge:
            await self._admin.delete([*PLATFORM_TOPICS, EPOCH_MARKER_TOPIC])
            await _wait_until_gone(self._admin, PLATFORM_TOPICS)
        await self._admin.mark_epoch()

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        await self._admin.close()


async def _wait_until_gone(admin: TopicAdmin, names: Sequence[str], timeout_s: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while set(names) & await admin.list_topics():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topics still present after delete: {sorted(names)}")
        await asyncio.sleep(0.05)
