"""On the real stack: telemetry on Kafka drives the autoscaler on the agent hosts (Ray).

A spike scales a workload out across Grid 3 and Grid 4 with new contracts; a drop scales it in
only after the 300 s stabilization window; a node marked down has its replica re-placed first,
then its contract ended with the SLA penalty recorded. The autoscaler's clock is the samples'
time, so the test moves time by the samples it sends (no waiting five minutes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from hero.domain.placement import CRITERIA
from hero.log.telemetry import TelemetryPublisher
from hero.market.service import MarketService
from hero.store import EventStore, open_store
from schemas import (
    ChangeNodeStatus,
    ContractCancelled,
    ContractCreated,
    Event,
    FarmerPolicy,
    Grid,
    Mandate,
    Money,
    NodeStatus,
    RegisterFarm,
    RegisterNode,
    ReplicaMigrated,
    ReplicaPlaced,
    Resources,
    ScaleDecided,
    ScalingPolicy,
    SetFarmerPolicy,
    SetOfftakerMandate,
    Sla,
    SlaOutcomeRecorded,
    WorkloadSpec,
    new_id,
)
from tests._samples import cpu_samples

pytestmark = pytest.mark.integration

REPLICA = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)
NODE = REPLICA.times(4)
SLA = Sla(uptime_pct=Decimal(99), penalty_pct=Decimal(50))
FARMS = (("g3", Grid.GRID3, "0.010"), ("g4a", Grid.GRID4, "0.011"), ("g4b", Grid.GRID4, "0.012"))
TIMEOUT_S = 60


def _setup(service: MarketService, tag: str) -> str:
    region = f"scale-{tag}"
    for name, grid, price in FARMS:
        farm = f"{tag}-{name}"
        place = {"grid": grid, "country": "NL", "region": region}
        service.handle(RegisterFarm(command_id=f"{farm}:reg", farm_id=farm, name=farm, **place))
        for n in (1, 2):
            service.handle(
                RegisterNode(
                    command_id=f"{farm}:node{n}",
                    node_id=f"{farm}-n{n}",
                    farm_id=farm,
                    total=NODE,
                    **place,
                )
            )
        policy = FarmerPolicy(price_cu_hour=Money.of(price, "USD"), sla=SLA)
        service.handle(SetFarmerPolicy(command_id=f"{farm}:policy", farm_id=farm, policy=policy))
    mandate = Mandate(
        workloads=[
            WorkloadSpec(
                workload_id="web",
                resources=REPLICA,
                replicas=2,
                regions=[region],
                autoscale=ScalingPolicy(
                    metric="cpu", target=Decimal("0.5"), min_replicas=1, max_replicas=6
                ),
            )
        ],
        budget_month=Money.of("1000", "USD"),
        max_price_cu_hour=Money.of("0.05", "USD"),
        # The offtaker closes as soon as every invited farm answered; a short window on a
        # loaded machine closed before Grid 3's farmer (on another host) did, and every
        # replica went to Grid 4.
        offer_window_s=Decimal(3),
    )
    offtaker = f"{tag}-acme"
    service.handle(
        SetOfftakerMandate(command_id=f"{offtaker}:mandate", offtaker_id=offtaker, mandate=mandate)
    )
    return offtaker


class Log:
    """The test's events in the shared store, read forward as they come."""

    def __init__(self, store: EventStore, tag: str) -> None:
        self.store, self.tag = store, tag
        self.position = 0
        self.events: list[Event] = []

    def read(self) -> list[Event]:
        while rows := self.store.read_all(self.position + 1, 5000):
            for row in rows:
                self.position = row.position
                if self.tag in row.stream:
                    self.events.append(row.envelope().decode())
        return self.events

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.read() if isinstance(e, kind)]

    def live(self) -> list[ContractCreated]:
        ended = {e.contract_id for e in self.of(ContractCancelled)}  # type: ignore[attr-defined]
        return [c for c in self.of(ContractCreated) if c.contract_id not in ended]  # type: ignore[misc]

    def decisions(self) -> list[ScaleDecided]:
        return self.of(ScaleDecided)  # type: ignore[return-value]

    async def until(self, condition: Callable[[], bool], what: str) -> float:
        """Seconds it took; fails the test after TIMEOUT_S."""
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > TIMEOUT_S:
                pytest.fail(f"timed out after {TIMEOUT_S}s waiting for {what}")
            await asyncio.sleep(0.1)  # polling the store; the agents run in other processes
        return time.monotonic() - started


async def _report(
    publisher: TelemetryPublisher, contracts: list[ContractCreated], cpu: str, at: datetime
) -> None:
    sequence = int(at.timestamp())
    samples = cpu_samples(contracts, cpu, at, sequence)
    await publisher.send(samples, datetime.now(UTC))


async def test_spike_scales_out_drop_scales_in_after_the_window_node_down_migrates(stack) -> None:
    tag = new_id("scale")[-10:]
    store = open_store(stack.settings.effective_store_url)
    service = MarketService(store)
    _setup(service, tag)
    log = Log(store, tag)
    publisher = TelemetryPublisher(stack.endpoints.kafka_bootstrap, actor="test")
    try:
        await log.until(lambda: len(log.live()) == 2, "the first two replicas")
        start = datetime.now(UTC).replace(microsecond=0)

        # A spike: both replicas at 95% of their cores, target 50% -> 4 replicas.
        await _report(publisher, log.live(), "0.95", start)
        await log.until(lambda: len(log.decisions()) == 1, "the scale-up decision")
        [up] = log.decisions()
        assert (up.reason, up.current_replicas, up.desired_replicas) == ("scale_up", 2, 4)
        assert (up.value, up.reporting, up.decided_at) == (Decimal("0.95"), 2, start)
        await log.until(lambda: len(log.live()) == 4, "two new contracts")
        assert {c.grid for c in log.live()} == {Grid.GRID3, Grid.GRID4}
        placed = log.of(ReplicaPlaced)
        assert len(placed) == 4
        assert all(tuple(p.scores) == CRITERIA for p in placed)  # type: ignore[attr-defined]

        # A drop to 10%: held by the stabilization window, then 3 replicas end.
        await _report(publisher, log.live(), "0.1", start + timedelta(seconds=30))
        await log.until(lambda: len(log.decisions()) == 2, "the held scale-down")
        held = log.decisions()[-1]
        assert (held.reason, held.recommended_replicas, held.desired_replicas) == (
            "stabilized",
            1,
            4,
        )
        await _report(publisher, log.live(), "0.1", start + timedelta(seconds=299))
        assert len(log.live()) == 4
        before = log.live()
        await _report(publisher, before, "0.1", start + timedelta(seconds=301))
        await log.until(lambda: len(log.decisions()) == 3, "the scale-down decision")
        down = log.decisions()[-1]
        assert (down.reason, down.current_replicas, down.desired_replicas) == ("scale_down", 4, 1)
        await log.until(lambda: len(log.live()) == 1, "three contracts ended")
        [kept] = log.live()
        assert kept.price_hour.amount == min(c.price_hour.amount for c in before)
        scale_downs = [e for e in log.of(ContractCancelled) if e.reason == "scale_down"]  # type: ignore[attr-defined]
        assert len(scale_downs) == 3

        # The last replica's node goes down: a new home first, then the old contract ends.
        service.handle(
            ChangeNodeStatus(command_id=f"{tag}:down", node_id=kept.node_id, status=NodeStatus.DOWN)
        )
        await log.until(lambda: bool(log.of(SlaOutcomeRecorded)), "the SLA outcome")
        [moved] = log.of(ReplicaMigrated)
        assert (moved.from_contract_id, moved.from_node_id) == (kept.contract_id, kept.node_id)  # type: ignore[attr-defined]
        [now_live] = log.live()
        assert now_live.contract_id == moved.to_contract_id  # type: ignore[attr-defined]
        assert now_live.node_id != kept.node_id
        [outcome] = log.of(SlaOutcomeRecorded)
        assert outcome.contract_id == kept.contract_id  # type: ignore[attr-defined]
        assert not outcome.met  # type: ignore[attr-defined]
        assert outcome.penalty.amount > 0  # type: ignore[attr-defined]
    finally:
        await publisher.close()
