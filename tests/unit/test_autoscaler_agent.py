"""The autoscaler and the offtaker together, in-process: samples in, decisions and contracts out.

The market runs on a memory store and a manual clock (LocalMarket); samples are delivered as a
host gets them from Kafka. The autoscaler's clock is the samples' time, so each test moves time
by the samples it sends.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from agents.autoscaler import AutoscalerBrain, metric_value
from agents.local import LocalMarket
from hero.domain.billing import hourly_usd
from hero.domain.clock import ManualClock
from hero.domain.placement import CRITERIA
from hero.store import MemoryEventStore
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
    ScaleDecided,
    ScalingPolicy,
    SetFarmerPolicy,
    SetOfftakerMandate,
    Sla,
    SlaOutcomeRecorded,
    UtilizationSampled,
    WorkloadSpec,
)
from tests._samples import cpu_samples
from tests.unit._gwt import SHAPE, T0, usd

SECOND = timedelta(seconds=1)
FARMS = {  # farm -> (grid, price per CU-hour)
    "g3a": (Grid.GRID3, "0.010"),
    "g4a": (Grid.GRID4, "0.011"),
    "g4b": (Grid.GRID4, "0.012"),
}
SLA = Sla(uptime_pct=Decimal("99"), penalty_pct=Decimal("50"))
CPU = ScalingPolicy(metric="cpu", target=Decimal("0.5"), min_replicas=1, max_replicas=6)


def mandate(replicas: int, autoscale: ScalingPolicy | None = CPU) -> Mandate:
    return Mandate(
        workloads=[
            WorkloadSpec(workload_id="web", resources=SHAPE, replicas=replicas, autoscale=autoscale)
        ],
        budget_month=usd("1000"),
        max_price_cu_hour=usd("0.05"),
        term_hours=720,
        offer_window_s=Decimal(2),
    )


class Market:
    def __init__(self, replicas: int = 2, autoscale: ScalingPolicy | None = CPU) -> None:
        self.clock = ManualClock(T0)
        self.store = MemoryEventStore(self.clock)
        self.local = LocalMarket(self.store, self.clock)
        handle = self.local.service.handle
        for farm, (grid, price) in FARMS.items():
            place = {"grid": grid, "country": "BE", "region": "europe"}
            handle(RegisterFarm(command_id=f"farm-{farm}", farm_id=farm, name=farm, **place))
            for n in (1, 2):
                handle(
                    RegisterNode(
                        command_id=f"node-{farm}-{n}",
                        node_id=f"{farm}-n{n}",
                        farm_id=farm,
                        total=SHAPE.times(4),
                        **place,
                    )
                )
            policy = FarmerPolicy(price_cu_hour=usd(price), sla=SLA)
            handle(SetFarmerPolicy(command_id=f"policy-{farm}", farm_id=farm, policy=policy))
        handle(
            SetOfftakerMandate(
                command_id="mandate", offtaker_id="acme", mandate=mandate(replicas, autoscale)
            )
        )
        self.run(5 * SECOND)

    def run(self, span: timedelta, tick: timedelta = SECOND / 4) -> None:
        end = self.clock.now() + span
        while True:
            self.local.run_until_quiet()
            if self.clock.now() >= end:
                return
            self.clock.advance(tick)

    def events(self) -> list[Event]:
        rows = self.store.read_all(1, self.store.current_position() + 1)
        return [r.envelope().decode() for r in rows]

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events() if isinstance(e, kind)]

    def live(self) -> list[ContractCreated]:
        ended = {e.contract_id for e in self.of(ContractCancelled)}  # type: ignore[attr-defined]
        created = self.of(ContractCreated)
        return [c for c in created if c.contract_id not in ended]  # type: ignore[misc]

    def decisions(self) -> list[ScaleDecided]:
        return self.of(ScaleDecided)  # type: ignore[return-value]

    def report(self, cpu: str, seconds: int) -> None:
        """Every live replica reports ``cpu`` at T0 + ``seconds`` (sample time)."""
        at = T0 + seconds * SECOND
        batch = cpu_samples(self.live(), cpu, at, seconds)
        self.local.sample(batch, self.clock.now())
        self.run(5 * SECOND)


def test_a_spike_scales_out_across_both_grids_and_each_placement_explains_itself() -> None:
    market = Market()
    assert len(market.live()) == 2
    assert market.decisions() == []  # no samples, no decision

    market.report("0.95", 60)

    [decision] = market.decisions()
    assert (decision.current_replicas, decision.desired_replicas) == (2, 4)
    assert (decision.reason, decision.ratio, decision.value) == (
        "scale_up",
        Decimal("1.9"),
        Decimal("0.95"),
    )
    assert decision.decided_at == T0 + 60 * SECOND
    assert decision.reporting == 2
    live = market.live()
    assert len(live) == 4
    assert {c.grid for c in live} == {Grid.GRID3, Grid.GRID4}
    placed = market.of(ReplicaPlaced)
    assert sorted(p.contract_id for p in placed) == sorted(c.contract_id for c in live)
    for placement in placed:
        assert tuple(placement.scores) == CRITERIA
        assert placement.total == sum(placement.scores.values())


def test_a_drop_scales_in_only_after_the_stabilization_window_costliest_first() -> None:
    market = Market()
    market.report("0.95", 60)
    assert len(market.live()) == 4

    market.report("0.1", 90)
    held = market.decisions()[-1]
    assert (held.reason, held.recommended_replicas, held.desired_replicas) == ("stabilized", 1, 4)
    assert len(market.live()) == 4

    market.report("0.1", 300)  # the same advice: nothing new to record
    assert len(market.decisions()) == 2
    assert len(market.live()) == 4

    market.report("0.1", 359)  # the high advice of 60 s is still inside the window
    assert len(market.live()) == 4

    before = market.live()
    market.report("0.1", 361)  # 301 s after it: the window has passed

    last = market.decisions()[-1]
    assert (last.reason, last.current_replicas, last.desired_replicas) == ("scale_down", 4, 1)
    [kept] = market.live()
    ended = [e for e in market.of(ContractCancelled) if e.reason == "scale_down"]  # type: ignore[attr-defined]
    assert len(ended) == 3
    cheapest = min(before, key=lambda c: (c.price_hour.amount, c.contract_id))
    assert kept.price_hour == cheapest.price_hour


def test_a_replica_without_fresh_samples_holds_a_scale_down_as_hpa_does() -> None:
    market = Market()
    market.report("0.95", 60)
    live = market.live()
    # Only one of four replicas reports low; the three silent ones count as using 100%.
    quiet = live[0]
    sample = UtilizationSampled(
        sample_id="only-one",
        workload_id="web",
        replica_id=quiet.contract_id,
        contract_id=quiet.contract_id,
        node_id=quiet.node_id,
        cpu=Decimal("0.1"),
        memory=Decimal(0),
        disk=Decimal(0),
        network_bytes=0,
        sampled_at=T0 + 1000 * SECOND,
    )
    market.local.sample([(sample, 1000)], market.clock.now())
    market.run(5 * SECOND)
    last = market.decisions()[-1]
    assert (last.reporting, last.missing) == (1, 3)
    assert last.reason == "within_tolerance"
    assert len(market.live()) == 4


def test_a_node_down_moves_its_replicas_first_then_ends_their_contracts_with_the_sla() -> None:
    market = Market(replicas=2, autoscale=None)
    market.clock.advance(timedelta(hours=2))
    down = market.live()[0]

    market.local.service.handle(
        ChangeNodeStatus(command_id="down", node_id=down.node_id, status=NodeStatus.DOWN)
    )
    market.clock.advance(timedelta(minutes=3))  # the agents notice three minutes later
    market.run(10 * SECOND)

    live = market.live()
    assert len(live) == 2
    assert down.contract_id not in {c.contract_id for c in live}
    assert all(c.node_id != down.node_id for c in live)
    [moved] = market.of(ReplicaMigrated)
    assert (moved.from_contract_id, moved.from_node_id) == (down.contract_id, down.node_id)
    assert moved.to_contract_id in {c.contract_id for c in live}
    [cancelled] = [e for e in market.of(ContractCancelled) if e.contract_id == down.contract_id]  # type: ignore[attr-defined]
    assert cancelled.reason == "migrated: node down"
    [outcome] = market.of(SlaOutcomeRecorded)
    assert outcome.contract_id == down.contract_id
    assert not outcome.met
    assert outcome.penalty.amount > 0
    # Down from the change until the old contract ended: 3 minutes and the seconds the move took.
    assert Decimal("0.05") <= outcome.hours_down < Decimal("0.06")
    assert outcome.period_hours > 2
    assert outcome.penalty == Money.rounded(
        hourly_usd(down).amount * outcome.hours_down * SLA.penalty_pct / 100, "USD"
    )


def test_metric_values_are_shares_or_requests_per_second() -> None:
    sample = UtilizationSampled(
        sample_id="s",
        workload_id="w",
        replica_id="r",
        contract_id="c",
        node_id="n",
        cpu=Decimal("0.7"),
        memory=Decimal("0.2"),
        disk=Decimal("0.3"),
        network_bytes=0,
        requests=300,
        interval_s=15,
        sampled_at=T0,
    )
    assert [metric_value(sample, m) for m in ("cpu", "memory", "disk", "requests")] == [
        Decimal("0.7"),
        Decimal("0.2"),
        Decimal("0.3"),
        Decimal(20),
    ]
    with pytest.raises(ValueError, match="unknown metric"):
        metric_value(sample, "latency")


def test_only_a_mandate_that_autoscales_gets_an_autoscaler() -> None:
    assert "autoscaler:acme" in Market().local.agents.brains
    assert "autoscaler:acme" not in Market(autoscale=None).local.agents.brains
    assert isinstance(Market().local.agents.brains["autoscaler:acme"], AutoscalerBrain)
