"""Faust's own ceiling: records/s through a Faust agent that does nothing, beside a plain
aiokafka consumer, on the same records of an embedded broker.

    .venv/bin/python benchmarks/faust_ceiling.py [--records 100000] [--batch 2000]
        [--mode noack_take|take|each]

The minimal reproduction of why the Faust usage worker cannot reach 0.5 of a plain
consumer's records/s (issue 16, point 4): the agent below decodes nothing, writes nothing
and acks each record after its batch (``noack_take``), yet stays far below the plain
consumer, because Faust moves every record alone through its pipeline: the fetcher awaits
``mode.Service.wait_first(callback(message), suspend_flow.wait())`` per record (two tasks and
an ``asyncio.wait`` each), the conductor puts it on the topic's channel queue, the stream
wraps it in an ``Event`` and runs its processors, and the ack updates the consumer's
per-partition offset sets. None of that can be batched from the app's side.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from infra.processes import BrokerProcess

TOPIC = "ceiling"


async def publish(bootstrap: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        value = b'{"x":' + b"1" * 300 + b"}"  # about a sample's size
        for i in range(count):
            await producer.send(TOPIC, value=value, key=str(i % 97).encode())
        await producer.flush()
    finally:
        await producer.stop()


def through_faust(
    bootstrap: str, count: int, batch: int, datadir: Path, mode: str
) -> tuple[float, float]:
    """(seconds to the first record, seconds from it to the last), through an agent."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = faust.App(
        "ceiling-faust",
        broker=f"kafka://{bootstrap}",
        loop=loop,
        autodiscover=False,
        datadir=str(datadir),
        store="memory://",
        web_enabled=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=0.5,
        broker_session_timeout=6.0,  # the embedded broker's join waits half of it
        broker_heartbeat_interval=2.0,
        stream_buffer_maxsize=16_384,
        stream_recovery_delay=0.0,
    )
    topic = app.topic(
        TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    seen = {"n": 0, "first": 0.0, "last": 0.0}

    def note(n: int) -> None:
        if not seen["n"]:
            seen["first"] = time.perf_counter()
        seen["n"] += n
        if seen["n"] >= count and not seen["last"]:
            seen["last"] = time.perf_counter()

    async def agent(stream: Any) -> None:
        if mode == "each":  # Faust acks each record as the next one comes
            async for _ in stream:
                note(1)
        elif mode == "take":  # Faust acks a batch when the next is asked for
            async for values in stream.take(batch, within=0.05):
                note(len(values))
        else:  # the usage agent's way: acked by hand after the batch
            async for events in stream.noack_take(batch, within=0.05):
                for event in events:
                    await stream.ack(event)
                note(len(events))

    app.agent(topic, name="ceiling")(agent)

    async def run() -> tuple[float, float]:
        started = time.perf_counter()
        await app.start()
        try:
            while not seen["last"]:
                await asyncio.sleep(0.005)
                if time.perf_counter() - started > 600:
                    raise TimeoutError(f"faust: {seen['n']} of {count} after 600 s")
        finally:
            await app.stop()
        return seen["first"] - started, seen["last"] - seen["first"]

    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()
        asyncio.set_event_loop(None)


async def plain(bootstrap: str, count: int, batch: int) -> tuple[float, float]:
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id="ceiling-plain",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    started = time.perf_counter()
    await consumer.start()
    seen, first = 0, 0.0
    try:
        while seen < count:
            got = await consumer.getmany(timeout_ms=200, max_records=batch)
            n = sum(len(records) for records in got.values())
            if n and not seen:
                first = time.perf_counter()
            seen += n
            if n:
                await consumer.commit()
        last = time.perf_counter()
    finally:
        await consumer.stop()
    return first - started, last - first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--mode", choices=("noack_take", "take", "each"), default="noack_take")
    args = parser.parse_args()
    if args.records < 1 or args.batch < 1:
        parser.error("--records and --batch must be positive")
    with tempfile.TemporaryDirectory(prefix="hero-bench-faust-") as tmp:
        broker = BrokerProcess(Path(tmp) / "broker")
        try:
            broker.start()
            assert broker.address is not None
            asyncio.run(publish(broker.address, args.records))
            faust_start, faust_s = through_faust(
                broker.address, args.records, args.batch, Path(tmp) / "faust", args.mode
            )
            plain_start, plain_s = asyncio.run(plain(broker.address, args.records, args.batch))
        finally:
            broker.stop()
    faust_rate, plain_rate = args.records / faust_s, args.records / plain_s
    print(f"records: {args.records}, batches of up to {args.batch}, faust mode {args.mode}")
    print(
        f"faust agent, no work:    {faust_rate:>10,.0f} records/s after the first record "
        f"(first after {faust_start:.2f} s)"
    )
    print(
        f"plain aiokafka consumer: {plain_rate:>10,.0f} records/s after the first record "
        f"(first after {plain_start:.2f} s)"
    )
    print(f"ratio faust/plain:       {faust_rate / plain_rate:>10.2f}")


if __name__ == "__main__":
    main()
