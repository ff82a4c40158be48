"""The outbox relay against the real embedded broker: order, crashes, and a broker that forgot."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hero.log.producer import KafkaPublisher
from hero.log.topics import TopicAdmin
from hero.store import OutboxRelay, SqliteCheckpointStore, SqliteEventStore
from schemas import Topic, new_id
from tests._wait import eventually
from tests.integration._kafka import (
    append_round_robin,
    by_stream,
    read_topic_until,
    status_event,
)

pytestmark = pytest.mark.integration

TOPIC = Topic.UTILIZATION.value  # where NodeStatusChanged lives


def _streams(count: int) -> list[str]:
    tag = new_id("t")
    return [f"node-{tag}-{i}" for i in range(count)]


def _ours(streams: list[str]):  # type: ignore[no-untyped-def]
    wanted = set(streams)
    return lambda row: row.get("stream") in wanted


async def test_relay_publishes_each_stream_in_order_keyed_by_stream(stack, store_factory) -> None:
    handle = store_factory()
    store = handle.open()
    streams = _streams(6)
    total = append_round_robin(store, streams, per_stream=40)
    publisher = KafkaPublisher(stack.endpoints.kafka_bootstrap)
    relay = OutboxRelay(store, handle.checkpoints(), publisher, batch_size=50)
    try:
        assert await relay.drain() == total
    finally:
        await publisher.close()
    rows = await read_topic_until(
        stack.endpoints.kafka_bootstrap, TOPIC, lambda seen: len(seen) >= total, keep=_ours(streams)
    )
    assert all(row["_key"] == row["stream"] for row in rows)
    assert by_stream(rows) == {stream: list(range(1, 41)) for stream in streams}
    # One stream, one partition: the key keeps a stream's history together.
    partitions = {row["stream"]: set() for row in rows}
    for row in rows:
        partitions[row["stream"]].add(row["_partition"])
    assert all(len(found) == 1 for found in partitions.values())


def _start_relay(
    data_dir: Path, store_url: str, bootstrap: str, batch_size: int
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HERO_DATA_DIR": str(data_dir),
        "HERO_STORE_URL": store_url,
        "HERO_KAFKA_BOOTSTRAP": bootstrap,
        "HERO_RELAY_BATCH_SIZE": str(batch_size),
    }
    log = (data_dir / "relay.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "hero.relay"], env=env, stdout=log, stderr=log)


def _health(data_dir: Path) -> dict[str, int]:
    try:
        return json.loads((data_dir / "run" / "relay.health").read_text())
    except (FileNotFoundError, ValueError):
        return {"pid": 0, "position": 0}


def _confirmed_by(data_dir: Path, pid: int) -> int:
    health = _health(data_dir)
    return health["position"] if health["pid"] == pid else -1


async def test_relay_killed_mid_stream_loses_nothing_after_restart(
    stack, store_factory, tmp_path: Path
) -> None:
    handle = store_factory()
    store = handle.open()
    streams = _streams(10)
    total = append_round_robin(store, streams, per_stream=300)
    bootstrap = stack.endpoints.kafka_bootstrap

    first = _start_relay(tmp_path, handle.url, bootstrap, batch_size=20)
    try:
        await eventually(lambda: _health(tmp_path)["position"] >= 200, 30, "relay progress")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    confirmed = handle.checkpoints().load("relay")
    assert 0 < confirmed < total, "the kill must land mid-stream"

    second = _start_relay(tmp_path, handle.url, bootstrap, batch_size=500)
    try:
        await eventually(
            lambda: _confirmed_by(tmp_path, second.pid) == total,
            60,
            "the restarted relay to confirm every event",
        )
    finally:
        second.terminate()
        second.wait(timeout=10)

    expected_ids = {row.envelope().id for row in store.read_all(1, total)}
    rows = await read_topic_until(
        bootstrap,
        TOPIC,
        lambda seen: expected_ids <= {row["id"] for row in seen},
        keep=_ours(streams),
        timeout_s=60,
    )
    assert {row["id"] for row in rows} == expected_ids  # every event at least once
    versions = by_stream(rows)
    for stream in streams:
        # Redelivery may repeat the unconfirmed tail, but a stream never goes backwards
        # except to repeat it: the distinct versions are exactly 1..300.
        assert sorted(set(versions[stream])) == list(range(1, 301))


@pytest.mark.embedded_only(
    reason="Tansu forgets everything on a restart; Apache Kafka keeps its log (on Kafka the "
    "markers survive a restart and nothing is refilled: test_kafka_broker)"
)
async def test_relay_refills_a_broker_that_restarted_empty(broker_factory, tmp_path: Path) -> None:
    broker = broker_factory()
    bootstrap = broker.address
    await TopicAdmin(bootstrap).ensure_topics()
    store = SqliteEventStore(tmp_path / "events.db")
    streams = _streams(4)
    first_half = append_round_robin(store, streams, per_stream=25)
    publisher = KafkaPublisher(bootstrap, purge_on_reset=True)
    relay = OutboxRelay(
        store, SqliteCheckpointStore(store.path), publisher, epoch_check_interval_s=0.2
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: relay.position == first_half, 30, "first half relayed")
        broker.kill()
        broker.start()  # same port, empty memory
        await eventually(lambda: relay.progress.refills >= 1, 60, "refill")
        for stream in streams:
            store.append(stream, 25, [status_event(stream, "down")], new_id("cmd"))
        total = first_half + len(streams)
        await eventually(lambda: relay.position == total, 60, "everything relayed")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await publisher.close()
    rows = await read_topic_until(
        bootstrap, TOPIC, lambda seen: len(seen) >= total, keep=_ours(streams)
    )
    assert by_stream(rows) == {stream: list(range(1, 27)) for stream in streams}
