"""Kill -9 the usage aggregator mid-hour: the hour's usage facts still equal an uninterrupted
run's on the same samples (the pure computation), with redelivered samples counted once. Run
against both usage runners: the plain consumer loop (``hero up``'s) and the Faust agent
(``HERO_USAGE_RUNNER=faust``), kept working."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from hero.domain.billing import hour_of
from hero.log.telemetry import TelemetryPublisher
from hero.log.topics import wait_for_partitions
from hero.store import ANY_VERSION, NewEvent
from schemas import Topic, UsageRecorded
from tests._wait import wait_until
from tests.integration._usage import expected_facts, usage_contract, usage_samples

pytestmark = pytest.mark.integration

CONTRACTS = 3
INTERVAL_S = 15
KILLS = 2
QUIET_S = 1.0


def _start(data_dir: Path, stack, store_url: str, tag: str, runner: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HERO_USAGE_RUNNER": runner,
        "HERO_DATA_DIR": str(data_dir),
        "HERO_STORE_URL": store_url,
        "HERO_KAFKA_BOOTSTRAP": stack.endpoints.kafka_bootstrap,
        "HERO_REDIS_URL": stack.endpoints.redis_url,
        "HERO_USAGE_IDLE_CLOSE_S": str(30 * 86400),  # old hours close by event time only
    }
    log = (data_dir / "usage.log").open("ab")
    command = [sys.executable, "-m", "streams", "usage", "--group", tag, "--namespace", tag]
    return subprocess.Popen(command, env=env, stdout=log, stderr=log)


async def _from_the_end(bootstrap: str, group: str) -> None:
    """Commit ``group``'s offsets past what ``hero.utilization`` holds now: its worker then
    reads this test's samples only. Samples an earlier test (the other runner's) left there
    carry the same hours and would move this worker's watermarks past hours whose samples are
    still to come. The end is found by reading to it (the embedded broker's reported end
    offsets are not to be trusted, DESIGN.md), within QUIET_S of no new record."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        topic = Topic.UTILIZATION.value
        partitions = [TopicPartition(topic, p) for p in await wait_for_partitions(consumer, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = asyncio.get_running_loop().time() + 60
        while await consumer.getmany(timeout_ms=int(QUIET_S * 1000), max_records=10_000):
            assert asyncio.get_running_loop().time() < deadline, "hero.utilization never ends"
        await consumer.commit({tp: await consumer.position(tp) for tp in partitions})
    finally:
        await consumer.stop()


def _health(data_dir: Path, pid: int) -> dict[str, int]:
    try:
        health = json.loads((data_dir / "run" / "usage.health").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return health if health.get("pid") == pid else {}


@pytest.mark.parametrize("runner", ["plain", "faust"])
async def test_usage_facts_survive_kill_9_mid_hour_and_count_each_sample_once(
    stack, store_factory, tmp_path: Path, runner: str
) -> None:
    rng = random.Random(7)
    tag = f"u{runner[0]}{rng.randrange(10**6)}"  # a group and windows of its own
    handle = store_factory()
    store = handle.open()
    first_hour = hour_of(datetime.now(UTC)) - timedelta(hours=4)
    contracts = [usage_contract(i, tag, first_hour) for i in range(CONTRACTS)]
    for contract in contracts:
        event = NewEvent.of(contract, actor="test", occurred_at=first_hour)
        store.append(f"node-{contract.node_id}", ANY_VERSION, [event], f"{contract.contract_id}:c")

    # Two whole hours, then 10 minutes of a third so every partition moves past them.
    samples = []
    for contract in contracts:
        samples += list(
            usage_samples(
                contract, first_hour, first_hour + timedelta(hours=2, minutes=10), INTERVAL_S, rng
            )
        )
    # Samplers report as time passes: on each partition, samples arrive in time order.
    samples.sort(key=lambda item: item[0].sampled_at)
    redelivered = rng.sample(samples, 200)  # a producer retrying what it already sent
    # Sent in three parts, one per worker life: a batched worker drains a backlog in well
    # under a second, so each kill lands after its part and before the next, with every
    # contract's hour open in Valkey (the parts end mid-hour).
    third = len(samples) // 3
    parts = [samples[:third], samples[third : 2 * third], samples[2 * third :] + redelivered]
    await _from_the_end(stack.endpoints.kafka_bootstrap, tag)
    publisher = TelemetryPublisher(stack.endpoints.kafka_bootstrap)
    worker = None
    kills = []
    try:
        for life, part in enumerate(parts):
            await publisher.send(part, datetime.now(UTC))
            worker = _start(tmp_path, stack, handle.url, tag, runner)
            if life == len(parts) - 1:
                break
            pid = worker.pid
            wait_until(lambda p=pid: _health(tmp_path, p).get("added", 0) >= 150, 60, "progress")
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            kills.append(_health(tmp_path, pid).get("added", 0))

        def facts() -> list[UsageRecorded]:
            rows = store.read_all(1, 10_000)
            return [r.envelope().decode() for r in rows if r.type == "UsageRecorded"]  # type: ignore[misc]

        wait_until(lambda: len(facts()) >= 2 * CONTRACTS, 120, "the two hours' facts")
    finally:
        await publisher.close()
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=10)

    assert len(kills) == 2
    assert all(added >= 150 for added in kills)  # each life counted its part
    got = {(f.contract_id, f.hour): f for f in facts()}
    expected = expected_facts(contracts, samples, first_hour)
    sent = sum(f.samples for f in expected.values())
    counted = sum(f.samples for f in got.values())
    print(f"\n{runner} worker kill -9 x2: the closed hours' samples sent {sent} counted {counted}")
    assert got == expected
    assert {f.seconds for f in got.values()} == {3600}
    assert {f.samples for f in got.values()} == {240}
