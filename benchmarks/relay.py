"""Relay throughput: the store + outbox relay against plain aiokafka, in the same run.

    ./run bench [--events 100000] [--payload-bytes 300] [--bootstrap HOST:PORT]

Appends N events (payloads of about --payload-bytes bytes) to a fresh SQLite store, relays
them to Kafka and waits for every acknowledgement; then produces the very same records
(same topic, keys and bytes) with a plain aiokafka producer. Prints events/s for each and the
ratio relay / plain (goal >= 0.5). Without --bootstrap it starts its own embedded broker.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from hero.log.producer import KafkaPublisher, new_producer
from hero.log.topics import TopicAdmin
from hero.store import (
    NO_STREAM,
    MemoryCheckpointStore,
    NewEvent,
    OutboxRelay,
    RecordedEvent,
    SqliteEventStore,
)
from schemas import OfferDeclined, new_id

STREAMS = 1000


def _event(payload_bytes: int, index: int) -> NewEvent:
    base = OfferDeclined(
        negotiation_id=f"nego-{index % STREAMS}", farm_id="farm-1", reasons=["below_floor"]
    )
    padding = max(payload_bytes - len(base.model_dump_json()), 0)
    event = base.model_copy(update={"detail": "x" * padding})
    return NewEvent.of(event, actor="bench", occurred_at=datetime.now(UTC))


def append_all(store: SqliteEventStore, count: int, payload_bytes: int) -> float:
    """Appends of up to 100 events to one stream at a time, across 1000 streams; the events
    are built before the clock starts, so only the store is timed."""
    per_append = max(1, min(100, count // STREAMS or 1))
    events = [_event(payload_bytes, i) for i in range(count)]
    plan = []
    versions: dict[str, int] = {}
    for start in range(0, count, per_append):
        stream = f"nego-{(start // per_append) % STREAMS}"
        batch = events[start : start + per_append]
        version = versions.get(stream, NO_STREAM)
        plan.append((stream, version, batch))
        versions[stream] = version + len(batch)
    started = time.perf_counter()
    for stream, version, batch in plan:
        store.append(stream, version, batch, new_id("cmd"))
    return time.perf_counter() - started


async def relay_all(store: SqliteEventStore, bootstrap: str, batch_size: int) -> float:
    publisher = KafkaPublisher(bootstrap)
    relay = OutboxRelay(store, MemoryCheckpointStore(), publisher, batch_size=batch_size)
    await publisher.publish(store.read_all(1, 1))  # connect before the clock starts
    started = time.perf_counter()
    await relay.drain()
    elapsed = time.perf_counter() - started
    await publisher.close()
    return elapsed


async def produce_plain(records: list[RecordedEvent], bootstrap: str) -> float:
    producer = new_producer(bootstrap)
    await producer.start()
    first = records[0]
    await producer.send_and_wait(first.topic, first.envelope_json.encode(), key=b"warmup")
    started = time.perf_counter()
    pending = [
        await producer.send(r.topic, value=r.envelope_json.encode(), key=r.stream.encode())
        for r in records
    ]
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - started
    await producer.stop()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--payload-bytes", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--bootstrap", help="an existing broker; default: start one")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hero-bench-") as tmp:
        broker = None
        bootstrap = args.bootstrap
        if bootstrap is None:
            from infra.processes import BrokerProcess

            broker = BrokerProcess(Path(tmp) / "broker")
            broker.start()
            bootstrap = broker.address
        try:
            asyncio.run(TopicAdmin(bootstrap).ensure_topics())
            store = SqliteEventStore(Path(tmp) / "events.db")
            append_s = append_all(store, args.events, args.payload_bytes)
            records = store.read_all(1, args.events)
            relay_s = asyncio.run(relay_all(store, bootstrap, args.batch_size))
            plain_s = asyncio.run(produce_plain(records, bootstrap))
        finally:
            if broker is not None:
                broker.stop()

    n = args.events
    size = sum(len(r.envelope_json) for r in records) / n
    relay_rate, plain_rate = n / relay_s, n / plain_s
    print(f"events: {n}, payload ~{args.payload_bytes} B, envelope ~{size:.0f} B")
    print(f"store append:          {n / append_s:>10,.0f} events/s ({append_s:.2f} s)")
    print(f"relay (store->Kafka):  {relay_rate:>10,.0f} events/s ({relay_s:.2f} s)")
    print(f"plain aiokafka:        {plain_rate:>10,.0f} events/s ({plain_s:.2f} s)")
    print(f"ratio relay/plain:     {relay_rate / plain_rate:>10.2f} (goal >= 0.5)")
    end_to_end = n / (append_s + relay_s)
    print(
        f"append+relay:          {end_to_end:>10,.0f} events/s; ratio to plain "
        f"{end_to_end / plain_rate:.2f}"
    )


if __name__ == "__main__":
    main()
