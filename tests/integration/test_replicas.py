"""Two gateways and two usage workers (``hero up --replicas 2``) on PostgreSQL + Apache Kafka:
either gateway answers any request (the same keys, idempotency records and read models), an
SSE stream resumes across them, a usage worker's partitions move to the other on a kill -9,
and every sample is counted once. Each kill is repeated three times, the killed replica
started again (``LocalStack.respawn``) before the next; the figures are printed (``-s``).

In the production pass (a stack of the module's own, on a database of the session's
PostgreSQL); deselect with ``-m "not kafka"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka.partitioner import DefaultPartitioner
from redis.asyncio import Redis

from hero.config import HeroSettings
from hero.domain.billing import hour_of
from hero.domain.ledger import Transfer
from hero.domain.usage import usage_stream
from hero.gateway.context import Role
from hero.log.telemetry import TelemetryPublisher
from hero.payments.ledger import LedgerService
from hero.payments.payouts import OUTSIDE_TFT
from hero.readmodels.keys import ApiKeys
from hero.readmodels.projections import PROJECTIONS
from hero.readmodels.projector import DEFAULT_PREFIX, Projector, live_keys
from hero.store import ANY_VERSION, EventStore, NewEvent, open_store
from infra import LocalStack
from infra._procfs import running
from infra._state import StackState
from schemas import (
    ContractCreated,
    FarmRegistered,
    Money,
    Topic,
    TransferKind,
    UsageRecorded,
    UtilizationSampled,
)
from schemas.resources import Grid
from tests._engines import FAILOVER_MARKS, stack_of_its_own
from tests._wait import until, wait_until
from tests.integration._usage import expected_facts, usage_contract, usage_samples

pytestmark = FAILOVER_MARKS

KILLS = 3
RUN = uuid.uuid4().hex[:8]
TOPIC = Topic.RESERVATIONS.value  # where FarmRegistered goes
PARTITIONS = 3  # HeroSettings.kafka_partitions' default: hero.utilization's partitions
CONTRACTS = 6
INTERVAL_S = 15
HOURLY = 200  # each key's requests an hour, beside the default per-second and per-minute rates


@dataclass
class Replicated:
    launcher: LocalStack
    settings: HeroSettings
    store: EventStore
    urls: list[str]
    admin_key: str
    redis_url: str
    figures: list[str] = field(default_factory=list)

    def record(self, label: str) -> tuple[int, int]:
        state = StackState.load(self.settings.data_dir)
        assert state is not None, "the stack is gone"
        found = state.processes[label]
        return found.pid, found.start_ticks

    def kill(self, label: str) -> float:
        """SIGKILL the replica ``label`` this test's stack started; when it is gone."""
        pid, ticks = self.record(label)
        assert running(pid, ticks), f"{label} (pid {pid}) is not running"
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: not running(pid, ticks), 10, f"{label} to die")
        return killed

    def health(self, label: str) -> dict[str, Any]:
        """The replica's report, if the process stack.json names wrote it."""
        pid, _ = self.record(label)
        try:
            report = json.loads((self.settings.data_dir / "run" / f"{label}.health").read_text())
        except (OSError, ValueError):
            return {}
        return report if isinstance(report, dict) and report.get("pid") == pid else {}

    def figure(self, line: str) -> None:
        print(line)
        self.figures.append(line)


async def _admin_key(redis_url: str) -> str:
    redis = Redis.from_url(redis_url)
    try:
        return (await ApiKeys(redis).create(Role.ADMIN, []))[0]
    finally:
        await redis.aclose()


@pytest.fixture(scope="module")
def replicated(store_factory, tmp_path_factory) -> Iterator[Replicated]:
    with stack_of_its_own(
        "hero-replicas-",
        store_factory().url,
        replicas=2,
        agent_shards=1,
        usage_idle_close_s=30 * 86400,  # old hours close by event time only
        gateway_rate=f"100/second;2000/minute;{HOURLY}/hour",
    ) as launcher:
        endpoints = launcher.endpoints()
        store = open_store(launcher.settings.effective_store_url)
        try:
            key = asyncio.run(_admin_key(endpoints.redis_url))
            world = Replicated(
                launcher, launcher.settings, store, endpoints.gateway_urls, key, endpoints.redis_url
            )
            yield world
            figures = tmp_path_factory.mktemp("replicas") / "figures.txt"
            figures.write_text("\n".join(world.figures) + "\n")
            print(f"\nfigures in {figures}:\n" + "\n".join(world.figures))
        finally:
            store.close()


def _client(world: Replicated, url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"X-API-Key": world.admin_key}, timeout=30)


def _farms(farm: str, first: int, count: int) -> list[FarmRegistered]:
    return [
        FarmRegistered(farm_id=farm, name=f"farm {i}", grid=Grid.GRID3, country="BE", region="eu")
        for i in range(first, first + count)
    ]


def _append(store: EventStore, events: list[Any], stream: str) -> list[int]:
    new = [NewEvent.of(e, actor="test-replicas", occurred_at=datetime.now(UTC)) for e in events]
    result = store.append(stream, ANY_VERSION, new, command_id=f"cmd-{uuid.uuid4().hex}")
    return list(range(result.first_position, result.last_position + 1))


# -- the launcher ------------------------------------------------------------------------------


def test_up_with_two_replicas_runs_two_gateways_and_two_usage_workers(
    replicated: Replicated,
) -> None:
    statuses = {c.name: c for c in replicated.launcher.status()}
    for name in ("gateway", "gateway-2", "usage", "usage-2"):
        assert statuses[name].state == "up", statuses[name]
    assert statuses["gateway"].pid != statuses["gateway-2"].pid
    assert len(set(replicated.urls)) == 2, replicated.urls
    assert replicated.launcher.endpoints().gateway_url == replicated.urls[0]
    with pytest.raises(Exception, match="still running"):
        replicated.launcher.respawn("gateway-2")
    with pytest.raises(Exception, match="only the replicas"):
        replicated.launcher.respawn("treasury")


# -- gateways ------------------------------------------------------------------------------------


def test_either_gateway_answers_with_the_same_keys_read_models_and_idempotency(
    replicated: Replicated,
) -> None:
    farm = f"rep-{RUN}"
    _append(replicated.store, _farms(farm, 0, 1), f"farm-{farm}")
    target = replicated.store.current_position()
    clients = [_client(replicated, url) for url in replicated.urls]
    try:
        for client in clients:  # each runs the projector: both catch up with the store
            wait_until(
                lambda c=client: min(c.get("/health").json()["read_models"].values()) >= target,
                60,
                f"the read models of {client.base_url}",
            )
        answers = [client.get(f"/v1/farms/{farm}") for client in clients * 3]
        assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
        assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
        # A payout on one gateway, repeated with its Idempotency-Key on the other: paid once.
        account = f"farmer.{farm}.TFT"
        seed = Transfer(
            f"seed-{account}", OUTSIDE_TFT, account, Money.of("10", "TFT"), TransferKind.PAYMENT,
            f"seed-{account}",
        )  # fmt: skip
        LedgerService(replicated.store, actor="test-replicas").post([seed], f"seed-{account}")
        payout = {"farm_id": farm, "amount": {"amount": "4", "currency": "TFT"}}
        key = {"Idempotency-Key": f"rep-payout-{RUN}"}
        first = clients[0].post("/v1/payouts", json=payout, headers=key)
        assert first.status_code == 201, first.text
        again = clients[1].post("/v1/payouts", json=payout, headers=key)
        assert (again.status_code, again.json()) == (201, first.json())
        other = {**payout, "amount": {"amount": "5", "currency": "TFT"}}
        reused = clients[1].post("/v1/payouts", json=other, headers=key)
        assert reused.status_code == 422, reused.text
    finally:
        for client in clients:
            client.close()
    legs = [
        row
        for row in replicated.store.read_stream(f"account-{account}")
        if row.type == "TransferPosted" and row.envelope().payload["kind"] == "payout"
    ]
    assert len(legs) == 1, "paid out more than once"
    assert LedgerService(replicated.store).account(account).balance == Money.of("6", "TFT")


async def test_a_keys_rate_limit_counts_its_requests_on_both_gateways(
    replicated: Replicated,
) -> None:
    """The limits live in Valkey: requests alternating between the gateways are counted
    together, so the key gets HOURLY answers in all, not HOURLY from each."""
    key = await _admin_key(replicated.redis_url)
    codes: list[int] = []
    headers = {"X-API-Key": key}
    async with (
        httpx.AsyncClient(base_url=replicated.urls[0], headers=headers, timeout=10) as first,
        httpx.AsyncClient(base_url=replicated.urls[1], headers=headers, timeout=10) as second,
    ):
        for i in range(HOURLY + 40):
            answer = await (first, second)[i % 2].get("/v1/contracts", params={"limit": 1})
            codes.append(answer.status_code)
            await asyncio.sleep(0.02)  # pacing: under the per-second rate
    replicated.figure(
        f"rate limit {HOURLY}/hour per key, {len(codes)} requests alternating over 2 gateways: "
        f"{codes.count(200)} answered, {codes.count(429)} refused"
    )
    assert (codes.count(200), codes.count(429)) == (HOURLY, 40)
    assert codes[HOURLY:] == [429] * 40


async def _sse(url: str, key: str, farm: str, after: int | None, got: list[int]) -> None:
    """Read the farm's events from ``url`` into ``got`` until cancelled or the connection
    ends (a cut connection raises: the caller resumes elsewhere)."""
    headers = {"X-API-Key": key}
    if after is not None:
        headers["Last-Event-ID"] = str(after)
    params = {"farm": farm, "start": "earliest"}
    async with (
        httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30, read=60)) as http,
        http.stream("GET", f"/v1/streams/{TOPIC}", headers=headers, params=params) as answer,
    ):
        assert answer.status_code == 200, await answer.aread()
        message: dict[str, str] = {}
        async for line in answer.aiter_lines():
            if line == "":  # a message ends; the position marker first has an id, no data
                if "data" in message:
                    got.append(int(message["id"]))
                message = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                message[name] = value


async def _keep_asking(url: str, key: str, stop: asyncio.Event, tally: dict[str, int]) -> None:
    """The client that keeps working against the survivor: every answer must be a 200."""
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=10) as http:
        while not stop.is_set():
            try:
                answer = await http.get("/v1/contracts", params={"limit": 5})
                ok = answer.status_code == 200
            except httpx.HTTPError:
                ok = False
            tally["requests"] += 1
            tally["failed"] += 0 if ok else 1
            await asyncio.sleep(0.02)  # pacing, not synchronisation


async def test_kill_9_of_a_gateway_fails_no_request_on_the_other_and_sse_moves_over(
    replicated: Replicated,
) -> None:
    farm = f"rep-sse-{RUN}"
    stream = f"farm-{farm}"
    labels = ["gateway", "gateway-2"]
    expected: list[int] = []
    got: list[int] = []
    for round_ in range(KILLS):
        victim, survivor = labels[1 - round_ % 2], labels[round_ % 2]
        victim_url = replicated.urls[labels.index(victim)]
        survivor_url = replicated.urls[labels.index(survivor)]
        stop, writing = asyncio.Event(), threading.Event()
        tally = {"requests": 0, "failed": 0}
        asker_key = await _admin_key(replicated.redis_url)  # a fresh hour of requests
        asker = asyncio.create_task(_keep_asking(survivor_url, asker_key, stop, tally))

        def writer(done: threading.Event = writing) -> None:
            for batch in range(60):  # 60 x 2 events, one batch every 50 ms, across the kill
                expected.extend(_append(replicated.store, _farms(farm, batch, 2), stream))
                time.sleep(0.05)  # the pace of the writes, not a wait on anything
            done.set()

        before = len(got)
        resume = got[-1] if got else None
        reading = asyncio.create_task(_sse(victim_url, replicated.admin_key, farm, resume, got))
        writing_task = asyncio.create_task(asyncio.to_thread(writer))
        await until(lambda n=before: len(got) >= n + 10, 30, f"events from {victim}")
        killed = await asyncio.to_thread(replicated.kill, victim)
        with contextlib.suppress(httpx.HTTPError):
            await asyncio.wait_for(reading, 30)  # the cut connection ends the read
        cut = len(got)
        moved = asyncio.create_task(_sse(survivor_url, replicated.admin_key, farm, got[-1], got))
        await until(lambda n=cut, w=writing: len(got) > n or w.is_set(), 30, "the resumed stream")
        resumed_after = time.monotonic() - killed
        await writing_task
        await until(lambda: len(got) >= len(expected), 60, "every event on the survivor")
        moved.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await moved
        stop.set()
        await asker
        restarted = time.monotonic()
        await asyncio.to_thread(replicated.launcher.respawn, victim)
        restart_s = time.monotonic() - restarted
        missed = len(set(expected) - set(got))
        duplicated = len(got) - len(set(got))
        replicated.figure(
            f"gateway kill -9 #{round_ + 1} ({victim}): survivor {tally['requests']} requests, "
            f"{tally['failed']} failed; SSE moved over {resumed_after:.2f} s after the kill, "
            f"{len(expected)} events expected, missed {missed}, duplicated {duplicated}; "
            f"{victim} back in {restart_s:.1f} s"
        )
        assert tally["failed"] == 0
        assert tally["requests"] > 10
        assert (missed, duplicated) == (0, 0)
        assert got == expected, "out of order"
    statuses = {c.name: c.state for c in replicated.launcher.status()}
    assert (statuses["gateway"], statuses["gateway-2"]) == ("up", "up")


async def _served(redis: Redis, prefix: str) -> dict[str, Any]:
    """Per projection: its position, documents and links as served (byte for byte)."""
    found: dict[str, Any] = {}
    for name in PROJECTIONS:
        keys = await live_keys(redis, name, prefix)
        async with redis.pipeline(transaction=True) as pipe:  # one snapshot per projection
            pipe.get(keys.position).hgetall(keys.docs).hgetall(keys.links)
            found[name] = tuple(await pipe.execute())
    return found


async def test_two_gateways_projectors_leave_what_one_projector_makes(
    replicated: Replicated,
) -> None:
    """Both gateways fold the log into the same keys (and were killed mid-way above): the read
    models they serve equal, byte for byte, those one fresh projector makes of the same log."""
    target = replicated.store.current_position()
    for url in replicated.urls:
        with _client(replicated, url) as client:
            wait_until(
                lambda c=client: min(c.get("/health").json()["read_models"].values()) >= target,
                60,
                f"the read models of {url}",
            )
    redis = Redis.from_url(replicated.redis_url)
    check = f"check-{RUN}"
    try:
        for _ in range(5):  # the stack's own processes may append meanwhile: then again
            served = await _served(redis, DEFAULT_PREFIX)
            positions = await Projector(replicated.store, redis, prefix=check).catch_up()
            if set(positions.values()) == {int(p[0]) for p in served.values()}:
                break
        assert await _served(redis, check) == served
        assert len(served["farms"][1]) > 0  # what the tests above wrote is in it
    finally:
        async for key in redis.scan_iter(match=f"{check}:*"):
            await redis.delete(key)
        await redis.aclose()


# -- usage workers ---------------------------------------------------------------------------------


def _on_every_partition(tag: str, start: datetime) -> list[ContractCreated]:
    """CONTRACTS contracts whose samples (keyed by workload) land evenly on every partition,
    by the producer's own partitioner: whichever partitions a worker holds, it has work."""
    chosen: list[ContractCreated] = []
    by_partition = dict.fromkeys(range(PARTITIONS), 0)
    partitioner, every = DefaultPartitioner(), list(range(PARTITIONS))
    for i in range(100 * CONTRACTS):
        contract = usage_contract(i, tag, start)
        partition = partitioner(contract.workload_id.encode(), every, every)
        if by_partition[partition] < CONTRACTS // PARTITIONS:
            by_partition[partition] += 1
            chosen.append(contract)
        if len(chosen) == CONTRACTS:
            return chosen
    raise AssertionError(f"no {CONTRACTS} contracts spread over {PARTITIONS} partitions")


def _partitions(world: Replicated, label: str) -> set[int]:
    found = world.health(label).get("partitions")
    return set(found) if isinstance(found, list) else set()


def _shared(world: Replicated) -> bool:
    """Each worker holds some partitions, and together all of them, none twice."""
    first, second = _partitions(world, "usage"), _partitions(world, "usage-2")
    return (
        bool(first)
        and bool(second)
        and first | second == set(range(PARTITIONS))
        and not (first & second)
    )


async def _send_paced(publisher: TelemetryPublisher, part: list[Any]) -> None:
    for i in range(0, len(part), 10):
        await publisher.send(part[i : i + 10], datetime.now(UTC))
        await asyncio.sleep(0.05)  # the pace of the samplers: they keep flowing across the kill


async def test_kill_9_of_a_usage_worker_moves_its_partitions_and_counts_each_sample_once(
    replicated: Replicated,
) -> None:
    rng = random.Random(14)
    tag = f"rep{RUN}"
    first_hour = hour_of(datetime.now(UTC)) - timedelta(hours=4)
    contracts = _on_every_partition(tag, first_hour)
    for contract in contracts:
        event = NewEvent.of(contract, actor="test-replicas", occurred_at=first_hour)
        replicated.store.append(
            f"node-{contract.node_id}", ANY_VERSION, [event], f"{contract.contract_id}:c"
        )
    samples: list[tuple[UtilizationSampled, int]] = []
    for contract in contracts:
        end = first_hour + timedelta(hours=2, minutes=10)
        samples += usage_samples(contract, first_hour, end, INTERVAL_S, rng)
    samples.sort(key=lambda item: item[0].sampled_at)  # samplers report as time passes
    redelivered = rng.sample(samples, 200)  # a producer retrying what it already sent
    size = len(samples) // (KILLS + 1)
    parts = [samples[i * size : (i + 1) * size] for i in range(KILLS)]
    parts.append(samples[KILLS * size :] + redelivered)
    await until(lambda: _shared(replicated), 60, "both workers to hold partitions")
    publisher = TelemetryPublisher(replicated.launcher.endpoints().kafka_bootstrap)
    labels = ["usage", "usage-2"]
    try:
        for round_ in range(KILLS):
            victim, survivor = labels[round_ % 2], labels[1 - round_ % 2]
            before = {label: _partitions(replicated, label) for label in labels}
            sending = asyncio.create_task(_send_paced(publisher, parts[round_]))
            await until(lambda v=victim: replicated.health(v).get("added", 0) > 0, 60, "work")
            killed = await asyncio.to_thread(replicated.kill, victim)
            flowing = not sending.done()
            await until(
                lambda s=survivor: _partitions(replicated, s) == set(range(PARTITIONS)),
                60,
                f"{survivor} to take every partition",
            )
            takeover = time.monotonic() - killed
            await sending
            restarted = time.monotonic()
            await asyncio.to_thread(replicated.launcher.respawn, victim)
            await until(lambda: _shared(replicated), 60, "the partitions shared again")
            replicated.figure(
                f"usage kill -9 #{round_ + 1} ({victim}, partitions {sorted(before[victim])}): "
                f"{survivor} held all {PARTITIONS} partitions {takeover:.2f} s after the kill "
                f"(samples still flowing at the kill: {flowing}); "
                f"{victim} back and sharing in {time.monotonic() - restarted:.1f} s"
            )
            assert flowing, "the kill came after the part was sent"
            # Kafka drops the dead member after the session timeout, then the survivor rejoins.
            session_s = replicated.settings.kafka_session_timeout_ms / 1000
            assert takeover < session_s + 10
        await _send_paced(publisher, parts[-1])
    finally:
        await publisher.close()

    def facts() -> dict[tuple[str, datetime], UsageRecorded]:
        found = {}
        for contract in contracts:
            for row in replicated.store.read_stream(usage_stream(contract.contract_id)):
                fact = row.envelope().decode()
                assert isinstance(fact, UsageRecorded)
                found[(fact.contract_id, fact.hour)] = fact
        return found

    await until(lambda: len(facts()) >= 2 * CONTRACTS, 180, "the two hours' facts")
    expected = expected_facts(contracts, samples, first_hour)
    got = facts()
    sent = sum(f.samples for f in expected.values())
    counted = sum(got[k].samples for k in expected if k in got)
    fact_rows = sum(
        len(replicated.store.read_stream(usage_stream(c.contract_id))) for c in contracts
    )
    replicated.figure(
        f"usage kill -9 x{KILLS}: the closed hours' samples sent {sent} (+200 sent twice), "
        f"counted {counted}: lost {max(sent - counted, 0)}, duplicates "
        f"{max(counted - sent, 0)}; {fact_rows} facts for {len(expected)} contract-hours"
    )
    assert fact_rows == len(expected), "a contract-hour recorded twice"
    assert got == expected
