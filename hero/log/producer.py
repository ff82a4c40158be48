"""Publishing to Kafka: the relay's publisher, over aiokafka.

On Apache Kafka the relay's producer is idempotent: a batch the broker appended but whose
acknowledgement was lost is not appended twice when aiokafka retries it. Tansu does not
support that with aiokafka, so there duplicates are possible, and on both order per stream is
kept here: a stream's records go to one partition (by their
key, with Kafka's default partitioner), each partition's records leave as explicit batches,
and a partition's next batch is sent only once the one before it is acknowledged. A batch is
appended whole or not at all; a failed one fails the publish before anything after it is
sent, and the relay sends it all again, so a later record never lands ahead of an earlier one
(with aiokafka's own batching, a batch queued behind a failed one could). Duplicates are
removed downstream by store positions.

Each record carries its store position in a header. Before its first batch, and again after a
failed one, the publisher reads the last position each partition holds
(:mod:`hero.log.published`) and leaves out the rows already there: a relay that takes over
from a dead one, or retries a batch the broker took but did not confirm, sends nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from hero.log.published import POSITION_HEADER, Published, last_published
from hero.log.topics import (
    EPOCH_MARKER_TOPIC,
    PLATFORM_TOPICS,
    TELEMETRY_MARKER_TOPIC,
    TopicAdmin,
)
from hero.store.outbox import Publisher
from hero.store.port import EventStore, RecordedEvent

__all__ = ["KafkaPublisher", "new_producer", "store_owns"]

_PARTITIONER = DefaultPartitioner()


def new_producer(
    bootstrap: str, *, request_timeout_ms: int = 10_000, idempotent: bool = False
) -> AIOKafkaProducer:
    """``idempotent`` only on Apache Kafka (the embedded Tansu refuses it)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=idempotent,
        linger_ms=5,
        max_batch_size=1_048_576,
        request_timeout_ms=request_timeout_ms,
        retry_backoff_ms=200,
    )


class KafkaPublisher(Publisher):
    """``purge_on_reset`` deletes the platform topics before a refill, so records that reached
    a freshly restarted broker ahead of the refill cannot precede older ones. Only for a broker
    HERO owns (the embedded one); never on a shared cluster. ``idempotent``: the broker is
    Apache Kafka (HERO_BROKER=kafka), whose idempotent producer the relay then uses.
    ``owns``: whether a record found last in a partition is this store's (its row at that
    position has that stream); given, rows at or below such a record are not sent again.
    None: every row is sent (a publisher sharing its broker with other stores' relays, as
    tests do, must not skip by their records)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        partitions: int = 3,
        purge_on_reset: bool = False,
        idempotent: bool = False,
        owns: Callable[[Published], bool] | None = None,
    ):
        self._bootstrap = bootstrap
        self._admin = TopicAdmin(bootstrap, partitions=partitions)
        self._purge = purge_on_reset
        self._idempotent = idempotent
        self._producer: AIOKafkaProducer | None = None
        self._partitions: dict[str, list[int]] = {}
        # (topic, partition) -> the last position there; None: to be read before sending.
        self._owns = owns
        self._published: dict[tuple[str, int], int] | None = None
        self.skipped = 0
        """Rows left out because their partition already held them (since construction)."""

    async def _ready(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = new_producer(self._bootstrap, idempotent=self._idempotent)
            await producer.start()
            self._producer = producer
        return self._producer

    async def publish(self, events: Sequence[RecordedEvent]) -> None:
        producer = await self._ready()
        try:
            if self._published is None:
                self._published = await self._read_published(events)
            by_partition: dict[tuple[str, int], list[RecordedEvent]] = {}
            for event in events:
                partition = await self._partition(producer, event)
                if event.position <= self._published.get((event.topic, partition), 0):
                    self.skipped += 1
                    continue
                by_partition.setdefault((event.topic, partition), []).append(event)
            await asyncio.gather(
                *(
                    _send_in_order(producer, topic, partition, records)
                    for (topic, partition), records in by_partition.items()
                )
            )
        except BaseException:
            await self.close()
            raise

    async def _read_published(self, events: Sequence[RecordedEvent]) -> dict[tuple[str, int], int]:
        owns = self._owns
        if owns is None:
            return {}
        topics = {*PLATFORM_TOPICS, *(event.topic for event in events)}
        found = await last_published(self._bootstrap, topics)
        return {
            where: last.position
            for where, last in found.items()
            if await asyncio.to_thread(owns, last)
        }

    async def warm_up(self) -> None:
        """Connect and learn the platform topics' partitions now (a standby relay, so that its
        takeover does not wait for it)."""
        producer = await self._ready()
        for topic in PLATFORM_TOPICS:
            await self._partitions_of(producer, topic)
        await self._admin.list_topics()

    async def _partitions_of(self, producer: AIOKafkaProducer, topic: str) -> list[int]:
        partitions = self._partitions.get(topic)
        if partitions is None:
            found = await producer.partitions_for(topic)
            partitions = self._partitions[topic] = sorted(found)
        return partitions

    async def _partition(self, producer: AIOKafkaProducer, event: RecordedEvent) -> int:
        partitions = await self._partitions_of(producer, event.topic)
        return int(_PARTITIONER(event.stream.encode(), partitions, partitions))

    async def lost_data(self) -> bool:
        return not await self._admin.marker_present()

    async def reset(self) -> None:
        if self._purge:
            # hero.utilization goes too: its telemetry marker with it, so the usage worker
            # sends the samples it has not counted again (streams.redrive).
            # On Apache Kafka the delete returns once the broker lists none of them (it
            # deletes asynchronously), so the recreation below makes new, empty ones.
            await self._admin.delete([*PLATFORM_TOPICS, EPOCH_MARKER_TOPIC, TELEMETRY_MARKER_TOPIC])
        await self._admin.mark_epoch()
        # A refill sends everything again from position 1: nothing on the broker counts.
        self._published = {}

    async def close(self) -> None:
        self._partitions.clear()  # a restarted broker may have recreated the topics
        self._published = None  # what reached the broker is read again before the next batch
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        await self._admin.close()


def store_owns(store: EventStore) -> Callable[[Published], bool]:
    """``owns`` for :class:`KafkaPublisher`: the record is ``store``'s row at its position."""

    def owns(last: Published) -> bool:
        rows = store.read_all(last.position, 1)
        return bool(rows) and rows[0].position == last.position and rows[0].stream == last.stream

    return owns


async def _send_in_order(
    producer: AIOKafkaProducer, topic: str, partition: int, events: Sequence[RecordedEvent]
) -> None:
    """One partition's records, in order, as batches sent one after the other."""
    batch = producer.create_batch()
    for event in events:
        record = {
            "timestamp": None,
            "key": event.stream.encode(),
            "value": event.envelope_json.encode(),
            "headers": [
                ("type", event.type.encode()),
                (POSITION_HEADER, str(event.position).encode()),
            ],
        }
        if batch.append(**record) is None:  # full: send it, wait, start the next one
            await (await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            if batch.append(**record) is None:
                raise ValueError(f"event {event.stream}@{event.position} exceeds a batch")
    if batch.record_count():
        await (await producer.send_batch(batch, topic, partition=partition))
