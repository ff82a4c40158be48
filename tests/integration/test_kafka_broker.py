"""Apache Kafka as the broker (``hero up --broker kafka``): each Tansu work-around in hero.log
checked on a real Kafka (the relay's producer, the topic purge, the epoch markers, the tail's
``--from latest``), and the whole stack on it through the CLI: demo, down, up again.

Needs Java 17 and Maven (or HERO_KAFKA_HOME); the first run on a machine fetches Kafka's jars
into the cache (~20 s), later runs reuse them. Deselect with ``-m "not kafka"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from hero.config import HeroSettings
from hero.log.producer import KafkaPublisher, new_producer
from hero.log.tail import tail
from hero.log.topics import PLATFORM_TOPICS, TopicAdmin, wait_for_partitions
from hero.store import OutboxRelay, SqliteCheckpointStore, SqliteEventStore, open_store
from infra import KafkaProcess, LocalStack
from infra._procfs import running
from infra._state import StackState
from schemas import Topic, new_id
from tests._engines import kafka_missing
from tests.e2e._cli import HERO, hero, hero_json
from tests.integration._kafka import append_round_robin, by_stream, read_topic_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.kafka,
    pytest.mark.embedded_only(reason="starts an Apache Kafka of its own already"),
    pytest.mark.skipif(kafka_missing() is not None, reason=kafka_missing() or ""),
]

TOPIC = Topic.UTILIZATION.value  # where NodeStatusChanged lives


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaProcess]:
    settings = HeroSettings()
    broker = KafkaProcess(
        tmp_path_factory.mktemp("kafka"),
        kafka_home=settings.kafka_home,
        cache_dir=settings.cache_dir,
    )
    broker.start(timeout=120)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
async def admin(kafka: KafkaProcess) -> AsyncIterator[TopicAdmin]:
    client = TopicAdmin(str(kafka.address))
    try:
        yield client
    finally:
        await client.close()


def _streams(count: int) -> list[str]:
    tag = new_id("t")
    return [f"node-{tag}-{i}" for i in range(count)]


async def _end_offsets(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Records per topic (the sum of its partitions' end offsets; none is ever compacted)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        totals: dict[str, int] = {}
        for topic in topics:
            partitions = await wait_for_partitions(consumer, topic)
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
            totals[topic] = sum(ends.values())
        return totals
    finally:
        await consumer.stop()


async def test_relay_on_kafka_publishes_each_event_once_in_order(
    kafka: KafkaProcess, admin: TopicAdmin, tmp_path: Path
) -> None:
    bootstrap = str(kafka.address)
    await admin.ensure_topics()
    store = SqliteEventStore(tmp_path / "events.db")
    streams = _streams(5)
    total = append_round_robin(store, streams, per_stream=30)
    publisher = KafkaPublisher(bootstrap, idempotent=True)
    relay = OutboxRelay(store, SqliteCheckpointStore(store.path), publisher, batch_size=40)
    try:
        assert await relay.drain() == total
    finally:
        await publisher.close()
    keep = {*streams}
    rows = await read_topic_until(
        bootstrap, TOPIC, lambda seen: len(seen) >= total, keep=lambda r: r["stream"] in keep
    )
    assert by_stream(rows) == {stream: list(range(1, 31)) for stream in streams}
    assert len(rows) == total  # exactly once: nothing doubled
    # Idempotent batches carry the producer id the broker gave; others carry -1.
    ids = _producer_ids(kafka.log_dir, TOPIC)
    assert ids
    assert all(each >= 0 for each in ids), ids


def _producer_ids(log_dir: Path, topic: str) -> list[int]:
    """The producer id of every record batch in the topic's segments, read from Kafka's
    files (record batch v2: the id is the int64 at byte 43 of the batch)."""
    ids = []
    for segment in sorted(log_dir.glob(f"{topic}-*/*.log")):
        data, at = segment.read_bytes(), 0
        while at + 61 <= len(data):
            (length,) = struct.unpack_from(">i", data, at + 8)
            (producer_id,) = struct.unpack_from(">q", data, at + 43)
            ids.append(producer_id)
            at += 12 + length
    return ids


async def test_purge_on_kafka_waits_for_the_delete_then_recreates_everything(
    kafka: KafkaProcess, admin: TopicAdmin, tmp_path: Path
) -> None:
    """Kafka deletes topics asynchronously: the refill's purge must find them gone, then
    recreate them empty, with both markers gone and the relay's back."""
    bootstrap = str(kafka.address)
    await admin.ensure_topics()
    store = SqliteEventStore(tmp_path / "events.db")
    streams = _streams(3)
    first = append_round_robin(store, streams, per_stream=10)
    publisher = KafkaPublisher(bootstrap, purge_on_reset=True, idempotent=True)
    relay = OutboxRelay(store, SqliteCheckpointStore(store.path), publisher)
    try:
        assert await relay.drain() == first
        await admin.mark_telemetry_epoch()
        assert (await _end_offsets(bootstrap, [TOPIC]))[TOPIC] >= first
        await publisher.reset()
        assert not await admin.telemetry_marker_present()
        assert not await publisher.lost_data()  # the epoch marker is back
        assert set(PLATFORM_TOPICS) <= await admin.list_topics()
        assert await _end_offsets(bootstrap, list(PLATFORM_TOPICS)) == dict.fromkeys(
            PLATFORM_TOPICS, 0
        )
        await publisher.publish(store.read_all(1, limit=first))
    finally:
        await publisher.close()
    rows = await read_topic_until(bootstrap, TOPIC, lambda seen: len(seen) >= first)
    assert len(rows) == first
    assert by_stream(rows) == {stream: list(range(1, 11)) for stream in streams}


async def test_markers_and_records_survive_a_kafka_restart(
    kafka: KafkaProcess, admin: TopicAdmin
) -> None:
    """On Tansu a restart loses everything, which the markers reveal; Kafka keeps its log, so
    the markers stay and the relay does not refill."""
    bootstrap = str(kafka.address)
    publisher = KafkaPublisher(bootstrap, idempotent=True)
    try:
        await publisher.reset()  # no purge: marks the epoch
        await admin.mark_telemetry_epoch()
        before = await _end_offsets(bootstrap, list(PLATFORM_TOPICS))
    finally:
        await publisher.close()
    await admin.close()
    port = kafka.port
    kafka.stop()
    kafka.start(timeout=120)
    assert kafka.port == port
    publisher = KafkaPublisher(bootstrap, idempotent=True)
    try:
        assert not await publisher.lost_data()
        assert await admin.telemetry_marker_present()
        assert await _end_offsets(bootstrap, list(PLATFORM_TOPICS)) == before
    finally:
        await publisher.close()


async def test_tail_from_latest_on_kafka_starts_at_the_end_offsets(
    kafka: KafkaProcess, admin: TopicAdmin
) -> None:
    """Records stamped by a clock that is off: one ahead, sent before the tail starts, must
    not show; one behind, sent after, must. By timestamps (Tansu's way) it is the reverse."""
    bootstrap = str(kafka.address)
    topic = f"test.tail.{new_id('t')}"
    await admin.create([topic], partitions=1)
    producer = new_producer(bootstrap, idempotent=True)
    await producer.start()
    records = tail(bootstrap, topic, start="latest", end_offsets=True)
    try:
        now_ms = int(time.time() * 1000)
        await producer.send_and_wait(topic, b'{"n": "before"}', timestamp_ms=now_ms + 600_000)
        first = asyncio.ensure_future(anext(records))
        deadline = time.monotonic() + 30
        # The tail takes the end offsets at its start, unseen from here: send until it shows.
        while not first.done():
            assert time.monotonic() < deadline, "the tail showed nothing in 30 s"
            await producer.send_and_wait(topic, b'{"n": "after"}', timestamp_ms=now_ms - 600_000)
            await asyncio.wait({first}, timeout=0.2)
        assert first.result().value == {"n": "after"}
    finally:
        await producer.stop()
        await records.aclose()


def _processes_under(data_dir: Path) -> list[int]:
    """Pids of processes whose command line names the data dir (the JVM's does)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if str(data_dir).encode() in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def _relay_health(data_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((data_dir / "run" / "relay.health").read_text())
    return data


@pytest.mark.e2e
async def test_hero_up_broker_kafka_runs_the_demo_and_keeps_its_log(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    report = hero_json("up", "--broker", "kafka", data_dir=data_dir)
    try:
        components = {c["name"]: c for c in report["components"]}
        assert all(c["state"] == "up" for c in components.values()), components
        assert "Apache Kafka" in components["broker"]["detail"]
        assert report["endpoints"]["broker"] == "kafka"
        assert _relay_health(data_dir)["idempotent"] is True
        demo = hero("demo", data_dir=data_dir, timeout=300)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert "demo ok" in demo.stdout
        endpoints = LocalStack(HeroSettings(data_dir=data_dir)).endpoints()
        assert endpoints.broker == "kafka"  # from stack.json, whatever HERO_BROKER says
        assert (await _end_offsets(endpoints.kafka_bootstrap, STORED))[STORED[0]] > 0
        state = StackState.load(data_dir)
        assert state is not None
        started = [(record.pid, record.start_ticks) for record in state.processes.values()]
        assert components["broker"]["pid"] in _processes_under(data_dir)
    finally:
        down = hero("down", data_dir=data_dir)
    assert down.returncode == 0, down.stdout + down.stderr
    assert [pid for pid, ticks in started if running(pid, ticks)] == []
    assert _processes_under(data_dir) == []
    # A plain `up`: the data dir holds a Kafka log, so it stays on Kafka.
    again = hero_json("up", data_dir=data_dir)
    try:
        assert {c["state"] for c in again["components"]} == {"up"}
        assert again["endpoints"]["broker"] == "kafka"
        bootstrap = LocalStack(HeroSettings(data_dir=data_dir)).endpoints().kafka_bootstrap
        # Every stored event once on Kafka: nothing lost with the restart, nothing doubled.
        await _wait_until_topics_match_the_store(bootstrap, data_dir)
        health = _relay_health(data_dir)
        assert health["refills"] == 0, health  # the epoch marker survived: no refill
        _tail_from_latest_shows_only_what_comes_after(data_dir)
    finally:
        down = hero("down", data_dir=data_dir)
    assert down.returncode == 0, down.stdout + down.stderr
    assert _processes_under(data_dir) == []


# The topics only the relay writes to (hero.utilization takes the telemetry's samples too).
STORED = [Topic.RESERVATIONS.value, Topic.PAYMENTS.value, Topic.POLICIES.value]


def _stored_counts(data_dir: Path) -> dict[str, int]:
    store = open_store(HeroSettings(data_dir=data_dir).effective_store_url)
    try:
        counts = dict.fromkeys(STORED, 0)
        position = 1
        while batch := store.read_all(position, limit=1000):
            for event in batch:
                if event.topic in counts:
                    counts[event.topic] += 1
            position = batch[-1].position + 1
        return counts
    finally:
        store.close()


async def _wait_until_topics_match_the_store(bootstrap: str, data_dir: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        stored = _stored_counts(data_dir)
        on_kafka = await _end_offsets(bootstrap, STORED)
        if on_kafka == stored:
            return
        assert time.monotonic() < deadline, f"kafka {on_kafka} != store {stored}"
        await asyncio.sleep(0.2)  # polling a condition, bounded by the deadline


def _tail_from_latest_shows_only_what_comes_after(data_dir: Path) -> None:
    """`hero tail --from latest` on the Kafka stack: the reservations already there (the
    demo's) do not show; a node status appended after the tail started does."""
    env = {**os.environ, "HERO_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    command = [HERO, "tail", "hero.utilization", "--from", "latest", "--limit", "1", "--json"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as tailing:
        try:
            deadline, sent = time.monotonic() + 60, 0
            # Its start (the end offsets) is unseen from here: append until it prints.
            while tailing.poll() is None:
                assert time.monotonic() < deadline, "hero tail --from latest showed nothing"
                payload = {"node_id": "n-k", "status": "down", "reason": f"after-{sent}"}
                added = hero("events", "append", "node-n-k", "NodeStatusChanged", "--payload",
                             json.dumps(payload), data_dir=data_dir)  # fmt: skip
                assert added.returncode == 0, added.stderr
                sent += 1
                with contextlib.suppress(subprocess.TimeoutExpired):
                    tailing.wait(timeout=1.0)
            out = tailing.stdout.read() if tailing.stdout else ""
        finally:
            if tailing.poll() is None:
                tailing.kill()
    assert tailing.returncode == 0
    record = json.loads(out.splitlines()[0])
    assert record["stream"] == "node-n-k"
    assert record["payload"]["reason"].startswith("after-")
