"""No sample lost when a dependency blinks: the Faust usage worker (``python -m streams
usage``) on a broker and a Valkey of the test's own, started by the launcher's process
classes, which the test kills and restarts while samples flow. Every sample sent is counted
once: the hours' usage facts equal those of the samples sent, and the hour still open holds
the rest.

* Valkey kill -9 and restart (from its append-only file): the worker waits it out, its
  health says ``degraded`` with the reason meanwhile, and nothing is dead-lettered. Before,
  the worker dead-lettered the batch and committed it after three tries within 0.3 s.
* The broker restarted (memory-only: it comes back empty) while the worker was down and 32
  samples had been sent: the publisher's spool keeps them, and the worker sends them again
  when it finds the broker without its telemetry marker. Before, they were gone.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from hero.domain.billing import hour_of
from hero.log.producer import new_producer
from hero.log.telemetry import TelemetryPublisher
from hero.log.topics import TopicAdmin
from hero.readmodels.usage import UsageWindows
from hero.store import ANY_VERSION, NewEvent
from hero.store.spool import SampleSpool, spool_path
from infra import KafkaProcess, ManagedProcess, ValkeyProcess
from schemas import (
    Topic,
    UsageRecorded,
    UtilizationSampled,
    new_id,
)
from tests._engines import TestStore
from tests.integration._isolated import until
from tests.integration._kafka import read_topic_until
from tests.integration._usage import expected_facts, usage_contract, usage_samples

pytestmark = pytest.mark.integration

CONTRACTS = 2
INTERVAL_S = 60
TIMEOUT_S = 90.0
Sent = list[tuple[UtilizationSampled, int]]


class Outage:
    """The test's own broker, Valkey, store and spool, and its usage worker process."""

    def __init__(
        self, directory: Path, broker: ManagedProcess, valkey: ValkeyProcess, store: TestStore
    ):
        self.directory, self.broker, self.valkey = directory, broker, valkey
        self.tag = new_id("o")[:14]  # ids derived from it stay within the 24 of schemas.ids
        self.store_url = store.url
        self.store = store.open()
        self.first_hour = hour_of(datetime.now(UTC)) - timedelta(hours=4)
        self.contracts = [usage_contract(i, self.tag, self.first_hour) for i in range(CONTRACTS)]
        for contract in self.contracts:
            event = NewEvent.of(contract, actor="test", occurred_at=self.first_hour)
            command = f"{contract.contract_id}:c"
            self.store.append(f"node-{contract.node_id}", ANY_VERSION, [event], command)
        # Two whole hours and 10 minutes of a third, so every partition moves past the two.
        self.samples: Sent = sorted(
            (
                s
                for c in self.contracts
                for s in usage_samples(
                    c, self.first_hour, self.first_hour + timedelta(minutes=130), INTERVAL_S
                )
            ),
            key=lambda item: item[0].sampled_at,
        )
        self.spool = SampleSpool(spool_path(directory))
        self.publisher = TelemetryPublisher(
            str(broker.address), actor="test", spool=self.spool, retry_for_s=TIMEOUT_S
        )
        self.worker: subprocess.Popen[bytes] | None = None
        self.sent = 0

    async def send(self, samples: Sent) -> None:
        await self.publisher.send(samples, datetime.now(UTC))
        self.sent += len(samples)

    def start_worker(self) -> int:
        env = {
            **os.environ,
            "HERO_DATA_DIR": str(self.directory),
            "HERO_STORE_URL": self.store_url,
            "HERO_KAFKA_BOOTSTRAP": str(self.broker.address),
            "HERO_REDIS_URL": str(self.valkey.url),
            "HERO_USAGE_IDLE_CLOSE_S": str(30 * 86400),  # old hours close by event time only
        }
        log = (self.directory / "usage.log").open("ab")
        command = [sys.executable, "-m", "streams", "usage", "--group", self.tag]
        command += ["--namespace", self.tag]
        self.worker = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        return self.worker.pid

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.terminate()
            self.worker.wait(timeout=30)
            self.worker = None

    def health(self) -> dict[str, Any]:
        try:
            health = json.loads((self.directory / "run" / "usage.health").read_text())
        except (FileNotFoundError, ValueError):
            return {}
        alive = self.worker is not None and health.get("pid") == self.worker.pid
        return health if alive else {}

    async def wait_health(self, what: str, condition: Callable[[dict[str, Any]], bool]) -> None:
        deadline = asyncio.get_running_loop().time() + TIMEOUT_S
        await until(lambda: condition(self.health()), what, deadline)

    def facts(self) -> list[UsageRecorded]:
        rows = self.store.read_all(1, 10_000)
        return [r.envelope().decode() for r in rows if r.type == "UsageRecorded"]  # type: ignore[misc]

    async def counted(self) -> int:
        """Samples in the usage facts, plus those in windows still open (a closed window's
        sums are deleted once its fact is in the store)."""
        redis = Redis.from_url(str(self.valkey.url))
        try:
            windows = UsageWindows(redis, self.tag)
            hours = [self.first_hour + timedelta(hours=n) for n in range(3)]
            open_ = [await windows.read(c.contract_id, h) for c in self.contracts for h in hours]
        finally:
            await redis.aclose()
        return sum(f.samples for f in self.facts()) + sum(w.samples for w in open_)

    async def wait_all_counted(self) -> int:
        async def done() -> bool:
            return len(self.facts()) >= 2 * CONTRACTS and await self.counted() >= self.sent

        deadline = asyncio.get_running_loop().time() + TIMEOUT_S
        await until(done, f"{self.sent} samples counted", deadline)
        return await self.counted()

    def expected_facts(self) -> dict[tuple[str, datetime], UsageRecorded]:
        return expected_facts(self.contracts, self.samples, self.first_hour)

    async def dead_letters(self) -> list[dict[str, Any]]:
        """What is on the broker's ``hero.dlq`` (read up to a marker the test sends last)."""
        mark = new_id("mark").encode()
        producer = new_producer(str(self.broker.address))
        await producer.start()
        try:
            await producer.send_and_wait(Topic.DLQ.value, value=b'{"mark":"' + mark + b'"}')
        finally:
            await producer.stop()
        rows = await read_topic_until(
            str(self.broker.address),
            Topic.DLQ.value,
            lambda seen: any(row.get("mark") == mark.decode() for row in seen),
        )
        return [row for row in rows if "mark" not in row]

    async def close(self) -> None:
        self.stop_worker()
        await self.publisher.close()
        self.spool.close()


@pytest.fixture
async def outage(
    tmp_path: Path,
    broker_factory: Callable[..., ManagedProcess],
    store_factory: Callable[[], TestStore],
) -> AsyncIterator[Outage]:
    broker = broker_factory()
    admin = TopicAdmin(str(broker.address))
    try:
        await admin.ensure_topics()
    finally:
        await admin.close()
    valkey = ValkeyProcess(tmp_path / "valkey")
    valkey.start()
    try:  # a set-up that fails half-way still stops what it started
        world = Outage(tmp_path, broker, valkey, store_factory())
        try:
            yield world
        finally:
            await world.close()
    finally:
        valkey.stop()
        broker.stop()


async def test_valkey_killed_while_samples_flow_every_sample_counted_once_none_dead_lettered(
    outage: Outage,
) -> None:
    samples = outage.samples
    first, second, rest = samples[:80], samples[80:160], samples[160:]
    outage.start_worker()
    await outage.send(first)
    await outage.wait_health("the first samples", lambda h: h.get("added", 0) >= len(first))

    outage.valkey.kill()  # kill -9, by the pid the launcher's process class started
    await outage.send(second)  # the broker takes them; the worker cannot add them
    await outage.wait_health(
        "the worker to say it waits on Valkey", lambda h: h.get("status") == "degraded"
    )
    degraded = outage.health()
    outage.valkey.start()  # the same port and directory: it reloads its append-only file
    await outage.send(rest)
    counted = await outage.wait_all_counted()
    health = outage.health()
    print(f"\nValkey kill -9: sent {outage.sent} counted {counted}; while down: {degraded}")

    assert "Connection" in degraded["reason"]
    assert degraded["dead_lettered"] == 0
    assert health["status"] == "ok"
    assert health["dead_lettered"] == 0
    assert health["infra_retries"] >= 1
    assert counted == outage.sent == len(samples)
    got = {(f.contract_id, f.hour): f for f in outage.facts()}
    assert got == outage.expected_facts()
    assert await outage.dead_letters() == []


async def test_broker_restarted_empty_while_the_worker_was_down_every_sample_counted_once(
    outage: Outage,
) -> None:
    """On Tansu the broker comes back empty and the spool sends the lost samples again; on
    Apache Kafka it comes back with its log, and nothing is sent twice."""
    samples = outage.samples
    first, lost, rest = samples[:100], samples[100:132], samples[132:]
    outage.start_worker()
    await outage.send(first)
    await outage.wait_health("the first samples", lambda h: h.get("added", 0) >= len(first))
    outage.stop_worker()

    await outage.send(lost)  # 32 samples the broker takes while no worker consumes
    keeps_its_log = isinstance(outage.broker, KafkaProcess)
    outage.broker.stop()
    outage.broker.start(timeout=120)  # on the same port; Tansu's memory-only: empty
    in_spool = outage.spool.count()
    outage.start_worker()
    if not keeps_its_log:
        # The worker finds the broker without its telemetry marker and sends the spool's
        # uncounted samples again; then the rest flows.
        await outage.wait_health("the 32 sent again", lambda h: h.get("spool_resent", 0) >= 32)
    await outage.send(rest)
    counted = await outage.wait_all_counted()
    health = outage.health()
    print(
        f"\nbroker restart: sent {outage.sent} counted {counted}; "
        f"kept in the spool at the restart {in_spool}, sent again {health['spool_resent']}"
    )

    assert in_spool >= len(lost)
    assert counted == outage.sent == len(samples)
    if keeps_its_log:  # the 32 were still there: the marker too, so nothing was sent again
        assert health["spool_resent"] == 0, health
    got = {(f.contract_id, f.hour): f for f in outage.facts()}
    assert got == outage.expected_facts()
    assert health["dead_lettered"] == 0

    async def spool_drained() -> bool:
        return outage.spool.count() == 0

    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    await until(spool_drained, "the spool to forget what was counted", deadline)


async def test_valkey_the_broker_and_the_worker_go_down_in_turn_while_samples_flow(
    outage: Outage,
) -> None:
    samples = outage.samples
    parts = [samples[:60], samples[60:120], samples[120:180], samples[180:]]

    async def all_counted_so_far(what: str) -> None:
        async def done() -> bool:
            return await outage.counted() >= outage.sent

        await until(done, what, asyncio.get_running_loop().time() + TIMEOUT_S)

    outage.start_worker()
    await outage.send(parts[0])
    await all_counted_so_far("the first part")

    outage.valkey.kill()  # Valkey: kill -9, then back from its append-only file
    await outage.send(parts[1])
    await outage.wait_health(
        "the worker waiting on Valkey", lambda h: h.get("status") == "degraded"
    )
    outage.valkey.start()
    await all_counted_so_far("the second part, once Valkey is back")

    outage.broker.stop()  # the broker: stopped and started again, empty, under the worker
    outage.broker.start()
    await outage.send(parts[2])
    await all_counted_so_far("the third part, on the new broker")

    assert outage.worker is not None
    outage.worker.kill()  # the worker: kill -9, then a new one
    outage.worker.wait(timeout=10)
    outage.start_worker()
    await outage.send(parts[3])
    counted = await outage.wait_all_counted()
    print(f"\nValkey, broker, worker down in turn: sent {outage.sent} counted {counted}")

    assert counted == outage.sent == len(samples)
    got = {(f.contract_id, f.hour): f for f in outage.facts()}
    assert got == outage.expected_facts()
    assert outage.health()["dead_lettered"] == 0
    assert await outage.dead_letters() == []


async def test_the_worker_sets_aside_a_record_it_cannot_decode_and_goes_on(outage: Outage) -> None:
    samples = outage.samples
    outage.start_worker()
    await outage.send(samples[:100])
    producer = new_producer(str(outage.broker.address))
    await producer.start()
    try:  # a broken sampler's record, on the partition of the first contract's samples
        key = outage.contracts[0].workload_id.encode()
        await producer.send_and_wait(Topic.UTILIZATION.value, value=b"{not a sample", key=key)
    finally:
        await producer.stop()
    await outage.send(samples[100:])
    counted = await outage.wait_all_counted()
    await outage.wait_health("the dead letter counted", lambda h: h.get("dead_lettered") == 1)
    print(f"\npoison record: sent {outage.sent} counted {counted}")

    assert counted == outage.sent == len(samples)
    letters = await outage.dead_letters()
    assert [(row["reason"], row["consumer"], row["value"]) for row in letters] == [
        ("undecodable", outage.tag, "{not a sample")
    ]
    assert outage.health()["status"] == "ok"


async def test_samples_published_while_the_broker_is_down_wait_for_it_and_are_counted(
    outage: Outage,
) -> None:
    samples = outage.samples
    outage.start_worker()
    await outage.send(samples[:100])
    outage.broker.stop()
    sending = asyncio.create_task(outage.send(samples[100:132]))
    done, _ = await asyncio.wait([sending], timeout=2)
    assert not done  # no broker: the publisher waits (and has the samples in its spool)
    assert outage.spool.count() >= 32
    outage.broker.start()  # back, empty
    await asyncio.wait_for(sending, TIMEOUT_S)
    await outage.send(samples[132:])
    counted = await outage.wait_all_counted()
    print(f"\nbroker down while publishing: sent {outage.sent} counted {counted}")

    assert counted == outage.sent == len(samples)
    got = {(f.contract_id, f.hour): f for f in outage.facts()}
    assert got == outage.expected_facts()
