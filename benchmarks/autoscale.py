"""Autoscaling: samples ingested and aggregated, and spike-to-decision latency.

    ./run bench-autoscale [--samples 100000] [--contracts 200] [--spikes 50] [--spike-rate 10]

In a temp dir, starts an embedded broker and Valkey, records the contracts in a fresh SQLite
store and publishes --samples utilization samples spread over --contracts contracts and
2 h 10 min of event time (in time order, as samplers report), so both whole hours close by
event time. Then measures, in the same run, on the very same records:

* the usage worker ``hero up`` runs: the plain aiokafka consumer loop
  (``streams.usage.UsageWorker``), in this process: batches of records decoded (the canonical
  sample form by one regex), added to the Valkey windows (one round trip a batch), committed
  once in Valkey, hours closed into the store -- samples/s from the consumer's start until
  every sample is counted and every usage fact (2 per contract) is in the store;
* the same aggregation as the Faust app's usage agent (``streams.app``, what
  ``HERO_USAGE_RUNNER=faust`` runs), timed the same way, on a store and windows of its own;
* a plain aiokafka consumer reading the topic from the start, decoding nothing.

Prints the rates and the ratios to the plain consumer (after the first record: the issue's
figure; goal >= 0.5 for the usage worker). Then spike-to-decision (``benchmarks/_spike.py``): on a
whole embedded stack of its own, --spikes autoscaled workloads each get a cpu spike, --spike-rate
per second, and the latency from the send to the recorded ScaleDecided is measured (p50, p99),
beside the same decision made in one process (no Kafka, no Ray) as the baseline of the run.
Goal: spike-to-decision p99 <= 1 s. ``--spikes 0`` skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from redis.asyncio import Redis

from hero.config import HeroSettings
from hero.domain.billing import hour_of
from hero.log.telemetry import TelemetryPublisher
from hero.log.topics import TopicAdmin
from hero.readmodels.usage import UsageWindows
from hero.store import ANY_VERSION, NewEvent, SqliteEventStore
from infra.processes import BrokerProcess, ValkeyProcess
from schemas import ContractCreated, Money, Resources, Sla, Topic, UtilizationSampled
from streams.app import UsageAgent

SPAN = timedelta(hours=2, minutes=10)
HOURS_CLOSED = 2


@dataclass
class Run:
    records: int
    seconds: float
    """From the consumer's start to the last record (the raw consumer) or the last fact."""
    startup: float
    """From the consumer's start to its first record."""

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def steady_rate(self) -> float:
        return self.records / max(self.seconds - self.startup, 1e-9)


def contracts(count: int, start: datetime) -> list[ContractCreated]:
    return [
        ContractCreated(
            contract_id=f"bench-ctr-{i}",
            negotiation_id=f"bench-nego-{i}",
            offer_id=f"bench-offer-{i}",
            hold_id=f"bench-offer-{i}",
            offtaker_id="bench-off",
            workload_id=f"bench-wl-{i}",
            farm_id=f"bench-farm-{i % 20}",
            node_id=f"bench-node-{i % 50}",
            grid="grid4",
            resources=Resources.from_gb(cru=2 + i % 4, mru_gb=4, sru_gb=50),
            price_hour=Money.of("0.05", "USD"),
            term_hours=720,
            sla=Sla(uptime_pct=Decimal(99)),
            starts_at=start,
        )
        for i in range(count)
    ]


def samples(
    made: list[ContractCreated], total: int, start: datetime
) -> list[tuple[UtilizationSampled, int]]:
    """``total // len(made)`` samples per contract, evenly over SPAN, sorted by time."""
    per_contract = max(total // len(made), 1)
    step = SPAN.total_seconds() / per_contract
    out = []
    for contract in made:
        replica = f"{contract.workload_id}-r0"
        for seq in range(1, per_contract + 1):
            moment = start + timedelta(seconds=(seq - 1) * step)
            sample = UtilizationSampled(
                sample_id=f"{replica}-{seq}",
                workload_id=contract.workload_id,
                replica_id=replica,
                contract_id=contract.contract_id,
                node_id=contract.node_id,
                cpu=Decimal("0.5"),
                memory=Decimal("0.5"),
                disk=Decimal("0.1"),
                network_bytes=1_000_000,
                sampled_at=moment,
                interval_s=max(round(step), 1),
            )
            out.append((sample, seq))
    out.sort(key=lambda item: item[0].sampled_at)
    return out


async def publish(bootstrap: str, batch: list[tuple[UtilizationSampled, int]]) -> float:
    publisher = TelemetryPublisher(bootstrap, actor="bench")
    try:
        started = time.perf_counter()
        await publisher.send(batch, datetime.now(UTC))
        return time.perf_counter() - started
    finally:
        await publisher.close()


async def usage_worker(
    bootstrap: str, redis_url: str, store: SqliteEventStore, count: int, facts: int
) -> Run:
    """The loop of ``streams.usage.serve`` (``UsageWorker.step``: fetch a batch, add it, close
    what is due), timed until every sample is counted and every fact written."""
    from streams.usage import SampleConsumer, UsageAggregator, UsageWorker

    redis = Redis.from_url(redis_url)
    aggregator = UsageAggregator(
        store,
        UsageWindows(redis, "bench"),
        lateness=timedelta(minutes=5),
        idle_close=timedelta(days=30),  # the hours close by event time only
    )
    consumer = SampleConsumer(name="bench-usage", bootstrap=bootstrap, handler=aggregator.add_rows)
    worker = UsageWorker(consumer, aggregator)
    started = time.perf_counter()
    await consumer.start()
    try:
        # Every sample in (the last 10 min come after the hours close) and every fact out.
        while aggregator.counts.facts < facts or aggregator.counts.added < count:
            await worker.step(timeout_ms=200)
            if time.perf_counter() - started > 600:
                raise TimeoutError(f"usage worker: {aggregator.counts} after 600 s")
        ended = time.perf_counter()
        await worker.flush()
    finally:
        await consumer.stop()
        await redis.aclose()
    if aggregator.counts.added != count:
        raise RuntimeError(f"usage worker added {aggregator.counts}, expected {count} samples")
    assert consumer.first_record_at is not None
    return Run(count, ended - started, consumer.first_record_at - started)


def faust_worker(settings: HeroSettings, count: int, facts: int) -> Run:
    """The Faust usage agent in this process (the app started without a web server), timed
    until every sample is counted and every fact written."""
    from streams.app import build

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app, agent = build(
        settings, "usage", loop=loop, group="bench-faust", namespace="bench-faust", name="bench"
    )
    assert isinstance(agent, UsageAgent)

    async def run() -> Run:
        await agent.start()
        started = time.perf_counter()
        await app.start()
        try:
            counts = agent.aggregator.counts
            while counts.facts < facts or counts.added < count:
                await asyncio.sleep(0.005)  # a benchmark's poll: the agent runs meanwhile
                if time.perf_counter() - started > 600:
                    raise TimeoutError(f"faust usage worker: {counts} after 600 s")
            ended = time.perf_counter()
        finally:
            await app.stop()
        if counts.added != count:
            raise RuntimeError(f"faust usage worker added {counts}, expected {count} samples")
        assert agent.first_record_at is not None
        return Run(count, ended - started, agent.first_record_at - started)

    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def fresh_store(path: Path, made: list[ContractCreated], at: datetime) -> SqliteEventStore:
    store = SqliteEventStore(path)
    for contract in made:
        event = NewEvent.of(contract, actor="bench", occurred_at=at)
        store.append(f"node-{contract.node_id}", ANY_VERSION, [event], f"{contract.contract_id}:c")
    return store


def facts_in(store: SqliteEventStore, limit: int) -> int:
    return sum(1 for row in store.read_all(1, limit) if row.type == "UsageRecorded")


async def plain_consumer(bootstrap: str, count: int) -> Run:
    consumer = AIOKafkaConsumer(
        Topic.UTILIZATION.value,
        bootstrap_servers=bootstrap,
        group_id="bench-plain",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    started = time.perf_counter()
    await consumer.start()
    seen, first = 0, 0.0
    try:
        while seen < count:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            got = sum(len(records) for records in batches.values())
            if got and not seen:
                first = time.perf_counter()
            seen += got
            if time.perf_counter() - started > 600:
                raise TimeoutError(f"plain consumer: {seen} of {count} after 600 s")
        ended = time.perf_counter()
    finally:
        await consumer.stop()
    return Run(count, ended - started, first - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--contracts", type=int, default=200)
    parser.add_argument("--spikes", type=int, default=50, help="workloads spiked; 0: skip")
    parser.add_argument("--spike-rate", type=float, default=10.0, help="spikes per second")
    args = parser.parse_args()
    if args.samples < 1 or args.contracts < 1:
        parser.error("--samples and --contracts must be positive")
    if args.spikes < 0 or args.spike_rate <= 0:
        parser.error("--spikes must be >= 0 and --spike-rate positive")

    first_hour = hour_of(datetime.now(UTC)) - timedelta(hours=4)
    made = contracts(args.contracts, first_hour)
    batch = samples(made, args.samples, first_hour)
    count, facts = len(batch), HOURS_CLOSED * len(made)

    with tempfile.TemporaryDirectory(prefix="hero-bench-") as tmp:
        broker = BrokerProcess(Path(tmp) / "broker")
        valkey = ValkeyProcess(Path(tmp) / "valkey")
        try:
            broker.start()
            valkey.start()
            assert broker.address is not None
            assert valkey.url is not None
            asyncio.run(TopicAdmin(broker.address).ensure_topics())
            publish_s = asyncio.run(publish(broker.address, batch))
            # Each worker on a store of its own: the facts are written once per store.
            faust_store = fresh_store(Path(tmp) / "faust.db", made, first_hour)
            settings = HeroSettings(
                data_dir=Path(tmp) / "data",
                kafka_bootstrap=broker.address,
                redis_url=valkey.url,
                store_url=f"sqlite:///{Path(tmp) / 'faust.db'}",
                usage_lateness_s=300,
                usage_idle_close_s=30 * 86400,  # the hours close by event time only
            )
            worker = faust_worker(settings, count, facts)
            written = facts_in(faust_store, count)
            faust_store.close()
            store = fresh_store(Path(tmp) / "events.db", made, first_hour)
            before = asyncio.run(usage_worker(broker.address, valkey.url, store, count, facts))
            written_before = facts_in(store, count)
            store.close()
            plain = asyncio.run(plain_consumer(broker.address, count))
        finally:
            valkey.stop()
            broker.stop()

    print(
        f"samples: {count} for {len(made)} contracts over {SPAN} of event time "
        f"({count // len(made)} per contract), {facts} hourly facts expected"
    )
    print(
        f"publish (TelemetryPublisher): {count / publish_s:>10,.0f} samples/s ({publish_s:.2f} s)"
    )
    print(
        f"usage worker, Faust agent:           {worker.rate:>10,.0f} samples/s "
        f"({worker.seconds:.2f} s to the last of {written} facts; first record after "
        f"{worker.startup:.2f} s; {worker.steady_rate:,.0f} samples/s after it)"
    )
    print(
        f"usage worker, plain aiokafka group:  {before.rate:>10,.0f} samples/s "
        f"({before.seconds:.2f} s to the last of {written_before} facts; first record after "
        f"{before.startup:.2f} s; {before.steady_rate:,.0f} samples/s after it)"
    )
    print(
        f"plain aiokafka consumer:             {plain.rate:>10,.0f} samples/s "
        f"({plain.seconds:.2f} s; first record after {plain.startup:.2f} s; "
        f"{plain.steady_rate:,.0f} samples/s after it)"
    )
    print(
        f"ratio usage worker (Faust)/plain:    {worker.rate / plain.rate:>10.2f} "
        f"(after the first record: {worker.steady_rate / plain.steady_rate:.2f})"
    )
    print(
        f"ratio usage worker (aiokafka)/plain: {before.rate / plain.rate:>10.2f} "
        f"(after the first record: {before.steady_rate / plain.steady_rate:.2f}; goal >= 0.5: "
        + ("met" if before.steady_rate / plain.steady_rate >= 0.5 else "NOT met")
        + ")"
    )
    if args.spikes:
        spike_to_decision(args.spikes, args.spike_rate)


def spike_to_decision(spikes: int, rate: float) -> None:
    from _spike import in_process, on_stack

    with tempfile.TemporaryDirectory(prefix="hero-bench-spike-") as tmp:
        stack = on_stack(Path(tmp), spikes, rate)
        baseline = in_process(Path(tmp), spikes)
    print(
        f"spike-to-decision on the stack (Kafka -> agent hosts on Ray -> store), {spikes} "
        f"spikes at {rate:g}/s: p50 {stack.p50 * 1000:,.0f} ms, p99 {stack.p99 * 1000:,.0f} ms, "
        f"max {max(stack.seconds) * 1000:,.0f} ms"
    )
    print(
        f"same decision in one process (baseline):   p50 {baseline.p50 * 1000:,.1f} ms, "
        f"p99 {baseline.p99 * 1000:,.1f} ms"
    )
    print(
        f"ratio stack/baseline: p50 {stack.p50 / baseline.p50:,.0f}x, "
        f"p99 {stack.p99 / baseline.p99:,.0f}x; goal p99 <= 1 s: "
        + ("met" if stack.p99 <= 1.0 else "NOT met")
    )


if __name__ == "__main__":
    main()
