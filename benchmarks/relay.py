"""Relay throughput: the store + outbox relay against a plain aiokafka producer, same run.

    ./run bench [--stacks embedded,production] [--events 100000] [--payload-bytes 300]
                [--batch-size 1000] [--quick]

For each stack (embedded: SQLite + Tansu; production: PostgreSQL + Apache Kafka 4.4, both
started here by the project's launcher and stopped by pid), appends N events (payloads of
about --payload-bytes bytes) to a fresh store, relays them to the broker and waits for every
acknowledgement; then produces the very same records (same topic, keys and bytes) with a
plain aiokafka producer of the same settings (idempotent on Apache Kafka, as the relay's).
Prints events/s for each, one column per stack, and the ratio relay / plain (goal >= 0.5).
``--quick``: 10,000 events, a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from _stacks import Broker, add_stacks_argument, broker, postgres, table

from hero.log.producer import KafkaPublisher, new_producer
from hero.log.topics import TopicAdmin
from hero.store import (
    NO_STREAM,
    EventStore,
    MemoryCheckpointStore,
    NewEvent,
    OutboxRelay,
    PostgresEventStore,
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


def append_all(store: EventStore, count: int, payload_bytes: int) -> float:
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


async def relay_all(store: EventStore, target: Broker, batch_size: int) -> float:
    publisher = KafkaPublisher(target.bootstrap, idempotent=target.idempotent)
    relay = OutboxRelay(store, MemoryCheckpointStore(), publisher, batch_size=batch_size)
    await publisher.publish(store.read_all(1, 1))  # connect before the clock starts
    started = time.perf_counter()
    await relay.drain()
    elapsed = time.perf_counter() - started
    await publisher.close()
    return elapsed


async def produce_plain(records: list[RecordedEvent], target: Broker) -> float:
    producer = new_producer(target.bootstrap, idempotent=target.idempotent)
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


@contextmanager
def fresh_store(stack: str, tmp: Path) -> Iterator[EventStore]:
    if stack == "embedded":
        store: EventStore = SqliteEventStore(tmp / "events.db")
        try:
            yield store
        finally:
            store.close()
        return
    with postgres() as server:
        store = PostgresEventStore(server.database("relay"))
        try:
            yield store
        finally:
            store.close()


def measure(stack: str, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hero-bench-") as name:
        tmp = Path(name)
        with broker(stack, tmp) as target, fresh_store(stack, tmp) as store:
            asyncio.run(TopicAdmin(target.bootstrap).ensure_topics())
            append_s = append_all(store, args.events, args.payload_bytes)
            records = store.read_all(1, args.events)
            relay_s = asyncio.run(relay_all(store, target, args.batch_size))
            plain_s = asyncio.run(produce_plain(records, target))
    n = args.events
    return {
        "envelope_bytes": sum(len(r.envelope_json) for r in records) / n,
        "append_s": append_s,
        "relay_s": relay_s,
        "plain_s": plain_s,
        "append_rate": n / append_s,
        "relay_rate": n / relay_s,
        "plain_rate": n / plain_s,
    }


def report(results: dict[str, dict[str, float]], n: int) -> str:
    stacks = list(results)

    def row(label: str, cell: str) -> tuple[str, list[str]]:
        return label, [cell.format(**results[s]) for s in stacks]

    lines = [
        row("envelope bytes", "{envelope_bytes:.0f}"),
        row("store append, events/s", "{append_rate:,.0f} ({append_s:.2f} s)"),
        row("relay store->broker, events/s", "{relay_rate:,.0f} ({relay_s:.2f} s)"),
        row("plain aiokafka, events/s", "{plain_rate:,.0f} ({plain_s:.2f} s)"),
    ]
    ratios = [f"{r['relay_rate'] / r['plain_rate']:.2f}" for r in results.values()]
    ends = []
    for r in results.values():
        rate = n / (r["append_s"] + r["relay_s"])
        ends.append(f"{rate:,.0f} (x{rate / r['plain_rate']:.2f} plain)")
    lines += [("ratio relay/plain (goal >= 0.5)", ratios), ("append+relay, events/s", ends)]
    return table(lines, stacks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--payload-bytes", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="10,000 events: a smoke run")
    add_stacks_argument(parser)
    args = parser.parse_args()
    if args.quick:
        args.events = 10_000
    if args.events < 1:
        parser.error(f"--events must be at least 1, got {args.events}")
    results = {stack: measure(stack, args) for stack in args.stacks}
    print(f"relay: {args.events} events, payload ~{args.payload_bytes} B, batch {args.batch_size}")
    print(report(results, args.events))


if __name__ == "__main__":
    main()
