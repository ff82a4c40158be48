"""Shared by the relay failover tests: a relay that dies between the broker's acknowledgement
and its checkpoint, and its successor."""

from __future__ import annotations

from typing import Any

from hero.log.producer import KafkaPublisher, new_producer, store_owns
from hero.log.topics import TopicAdmin
from hero.store import CheckpointStore, EventStore, OutboxRelay
from schemas import Topic, new_id
from tests._engines import TestStore
from tests.integration._kafka import append_round_robin, by_stream, read_topic_until

__all__ = ["Died", "successor_leaves_out_what_was_published"]

TOPIC = Topic.UTILIZATION.value  # where NodeStatusChanged lives
FOREIGN = 300  # ~100 a partition: past the first two windows the tail search reads


async def _send_foreign(bootstrap: str, count: int) -> None:
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        for i in range(count):
            await producer.send(TOPIC, key=f"sample-{i}".encode(), value=b'{"kind": "sample"}')
        await producer.flush()
    finally:
        await producer.stop()


class Died(RuntimeError):
    """Stands for the kill: the relay is gone before it saved its checkpoint."""


class _DiesBeforeSaving(CheckpointStore):
    """Saves ``keep`` checkpoints, then the process 'dies' at the next save."""

    def __init__(self, inner: CheckpointStore, keep: int):
        self._inner = inner
        self._keep = keep

    def load(self, name: str) -> int:
        return self._inner.load(name)

    def save(self, name: str, position: int) -> None:
        if self._keep == 0:
            raise Died(f"killed after the broker confirmed up to {position}")
        self._keep -= 1
        self._inner.save(name, position)


async def successor_leaves_out_what_was_published(
    bootstrap: str, handle: TestStore, *, idempotent: bool
) -> dict[str, Any]:
    """The first relay confirms one batch, publishes the next and dies before saving it;
    then another producer writes FOREIGN records (no store position, like telemetry samples)
    to the same topic, so the partitions' tails hold none of the relay's; the next relay starts
    from the lagging checkpoint. On the store ``handle`` gives (``store_factory``'s), closed
    afterwards. Returns the figures; asserts none is lost, doubled or reordered and that the
    successor left the published batch out."""
    store, checkpoints = handle.open(), handle.checkpoints()
    try:
        return await _successor(bootstrap, store, checkpoints, idempotent=idempotent)
    finally:
        store.close()
        checkpoints.close()


async def _successor(
    bootstrap: str, store: EventStore, checkpoints: CheckpointStore, *, idempotent: bool
) -> dict[str, Any]:
    admin = TopicAdmin(bootstrap)
    try:
        await admin.mark_epoch()  # the broker holds what relays confirm: no refill
    finally:
        await admin.close()
    tag = new_id("t")
    streams = [f"node-{tag}-{i}" for i in range(12)]
    total = append_round_robin(store, streams, per_stream=25)
    batch = 100
    first_publisher = KafkaPublisher(bootstrap, idempotent=idempotent, owns=store_owns(store))
    first = OutboxRelay(
        store, _DiesBeforeSaving(checkpoints, keep=1), first_publisher, batch_size=batch
    )
    try:
        assert await first.publish_batch() == batch
        try:
            await first.publish_batch()
        except Died:
            pass
        else:
            raise AssertionError("the first relay should have died before its checkpoint")
    finally:
        await first_publisher.close()
    assert checkpoints.load("relay") == batch, "the checkpoint lags what the broker holds"
    await _send_foreign(bootstrap, FOREIGN)

    publisher = KafkaPublisher(bootstrap, idempotent=idempotent, owns=store_owns(store))
    successor = OutboxRelay(store, checkpoints, publisher, batch_size=batch)
    try:
        assert await successor.drain() == total - batch
    finally:
        await publisher.close()
    ours = set(streams)
    rows = await read_topic_until(
        bootstrap, TOPIC, lambda seen: len(seen) >= total, keep=lambda r: r.get("stream") in ours
    )
    figures = {
        "events": total,
        "records": len(rows),
        "left_out_by_successor": publisher.skipped,
        "duplicates": len(rows) - len({(r["stream"], r["version"]) for r in rows}),
    }
    assert publisher.skipped == batch, figures
    assert by_stream(rows) == {stream: list(range(1, 26)) for stream in streams}, figures
    assert len(rows) == total, figures
    return figures
