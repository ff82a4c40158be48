"""Spike-to-decision latency: a spike sent to Kafka until its ScaleDecided is in the store.

On the embedded stack (its own, in a temp dir: broker, Valkey, Ray, relay, agent hosts),
``offtakers`` offtakers each autoscale one workload of 2 replicas on cpu (target 0.5). Once
their contracts run, each workload in turn (``rate`` per second) gets a spike: both replicas
report 95% with a ``TelemetryPublisher``. The latency of a spike is from just before its send to
the ``recorded_at`` of the ``ScaleDecided`` (scale_up 2 -> 4) the autoscaler on the agent hosts
recorded for it; both are this machine's wall clock.

The baseline of the same run is the same decision in one process: the autoscaler and the
offtaker fed straight (``LocalMarket``: no Kafka, no Ray) over a SQLite store, the spike
delivered and the decision written in one step.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from agents.local import LocalMarket
from hero.config import HeroSettings
from hero.domain.clock import SystemClock
from hero.log.telemetry import TelemetryPublisher
from hero.market.service import MarketService
from hero.store import EventStore, SqliteEventStore, open_store, recorded_after
from infra import LocalStack
from schemas import (
    Command,
    ContractCreated,
    FarmerPolicy,
    Grid,
    Mandate,
    Money,
    RegisterFarm,
    RegisterNode,
    Resources,
    ScaleDecided,
    ScalingPolicy,
    SetFarmerPolicy,
    SetOfftakerMandate,
    UtilizationSampled,
    WorkloadSpec,
)

__all__ = ["Latencies", "in_process", "on_stack"]

REPLICA = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)
REGION = "spike"
FARMS = 20


@dataclass
class Latencies:
    seconds: list[float]

    def at(self, share: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p99(self) -> float:
        return self.at(0.99)


def market(offtakers: int) -> list[Command]:
    """Farms on both grids with room for every workload at its maximum, and the mandates."""
    commands: list[Command] = []
    room = REPLICA.times(max(4, -(-offtakers * 4 // FARMS) + 2))
    for i in range(FARMS):
        farm, grid = f"spike-farm-{i}", (Grid.GRID3, Grid.GRID4)[i % 2]
        place = {"grid": grid, "country": "BE", "region": REGION}
        commands.append(RegisterFarm(command_id=f"{farm}:f", farm_id=farm, name=farm, **place))
        commands.append(
            RegisterNode(
                command_id=f"{farm}:n", node_id=f"{farm}-n", farm_id=farm, total=room, **place
            )
        )
        policy = FarmerPolicy(price_cu_hour=Money.of(f"0.0{10 + i % 5}", "USD"))
        commands.append(SetFarmerPolicy(command_id=f"{farm}:p", farm_id=farm, policy=policy))
    cpu = ScalingPolicy(metric="cpu", target=Decimal("0.5"), min_replicas=1, max_replicas=4)
    for i in range(offtakers):
        mandate = Mandate(
            workloads=[
                WorkloadSpec(
                    workload_id="web",
                    resources=REPLICA,
                    replicas=2,
                    regions=[REGION],
                    autoscale=cpu,
                )
            ],
            budget_month=Money.of("1000", "USD"),
            max_price_cu_hour=Money.of("0.05", "USD"),
            offer_window_s=Decimal("0.3"),
        )
        commands.append(
            SetOfftakerMandate(
                command_id=f"spike-off-{i}:m", offtaker_id=f"spike-off-{i}", mandate=mandate
            )
        )
    return commands


class Watch:
    """The store read forward: contracts per offtaker, and when each scale-up was recorded."""

    def __init__(self, store: EventStore) -> None:
        self.store, self.position = store, 0
        self.contracts: dict[str, list[ContractCreated]] = {}
        self.decided: dict[str, datetime] = {}

    def poll(self) -> None:
        for row in recorded_after(self.store, self.position, 5000):
            self.position = row.position
            if row.type == "ContractCreated":
                made = row.envelope().decode()
                assert isinstance(made, ContractCreated)
                self.contracts.setdefault(made.offtaker_id, []).append(made)
            elif row.type == "ScaleDecided":
                envelope = row.envelope()
                decision = envelope.decode()
                assert isinstance(decision, ScaleDecided)
                if decision.reason == "scale_up":
                    self.decided.setdefault(decision.offtaker_id, envelope.recorded_at)

    def running(self, offtakers: int) -> bool:
        self.poll()
        return sum(len(c) >= 2 for c in self.contracts.values()) >= offtakers


def spike(contracts: list[ContractCreated], at: datetime) -> list[tuple[UtilizationSampled, int]]:
    sequence = int(at.timestamp() * 1000)
    return [
        (
            UtilizationSampled(
                sample_id=f"{c.contract_id}.{sequence}",
                workload_id=c.workload_id,
                replica_id=c.contract_id,
                contract_id=c.contract_id,
                node_id=c.node_id,
                cpu=Decimal("0.95"),
                memory=Decimal("0.5"),
                disk=Decimal("0.1"),
                network_bytes=0,
                sampled_at=at,
            ),
            sequence,
        )
        for c in contracts[:2]
    ]


def wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def on_stack(tmp: Path, offtakers: int, rate: float, shards: int = 2) -> Latencies:
    settings = HeroSettings(data_dir=tmp / "stack", agent_shards=shards)
    stack = LocalStack(settings)
    stack.up()
    try:
        endpoints = stack.endpoints()
        store = open_store(endpoints.store_url)
        service = MarketService(store)
        with store.group_commit():
            for command in market(offtakers):
                service.handle(command, actor="bench")
        watch = Watch(store)
        wait(lambda: watch.running(offtakers), 300, "every workload's first 2 replicas")
        sent = asyncio.run(_send_spikes(endpoints.kafka_bootstrap, watch, offtakers, rate))
        wait(lambda: (watch.poll(), len(watch.decided) >= offtakers)[1], 60, "every decision")
        store.close()
        return Latencies([(watch.decided[o] - at).total_seconds() for o, at in sent.items()])
    finally:
        stack.down()


async def _send_spikes(
    bootstrap: str, watch: Watch, offtakers: int, rate: float
) -> dict[str, datetime]:
    publisher = TelemetryPublisher(bootstrap, actor="bench")
    sent: dict[str, datetime] = {}
    try:
        for i in range(offtakers):
            offtaker = f"spike-off-{i}"
            at = datetime.now(UTC)
            sent[offtaker] = at
            await publisher.send(spike(watch.contracts[offtaker], at), at)
            await asyncio.sleep(1 / rate)  # paced: the latency of one spike, not of a queue
    finally:
        await publisher.close()
    return sent


def in_process(tmp: Path, offtakers: int) -> Latencies:
    clock = SystemClock()
    store = SqliteEventStore(tmp / "spike-baseline.db", clock)
    local = LocalMarket(store, clock)
    for command in market(offtakers):
        local.service.handle(command, actor="bench")
    watch = Watch(store)
    deadline = time.monotonic() + 300
    while not watch.running(offtakers):
        if local.step() == 0:
            time.sleep(0.01)  # nothing due: let the offer window pass
        if time.monotonic() > deadline:
            raise TimeoutError("in-process baseline: contracts never ran")
    seconds = []
    for i in range(offtakers):
        offtaker = f"spike-off-{i}"
        started = time.perf_counter()
        local.sample(spike(watch.contracts[offtaker], datetime.now(UTC)), datetime.now(UTC))
        local.step()
        seconds.append(time.perf_counter() - started)
        watch.poll()
        if offtaker not in watch.decided:
            raise RuntimeError(f"in-process baseline: no scale-up for {offtaker}")
    store.close()
    return Latencies(seconds)
