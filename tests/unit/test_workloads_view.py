"""The workloads read model folded from a store: targets from the autoscaler's decisions,
placement scores, migrations, ended contracts with their SLA outcome, and workload names that
only an offtaker makes unique."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from hero.readmodels.workloads import (
    AmbiguousWorkload,
    UnknownWorkload,
    WorkloadRow,
    WorkloadsView,
    read_workloads,
)
from hero.store import ANY_VERSION, EventStore, MemoryEventStore, NewEvent, SqliteEventStore
from schemas import (
    ContractCancelled,
    ContractCreated,
    ContractResumed,
    ContractSuspended,
    Event,
    Grid,
    Mandate,
    Money,
    NodeStatus,
    NodeStatusChanged,
    OfftakerMandateSet,
    ReplicaMigrated,
    ReplicaPlaced,
    Resources,
    ScaleDecided,
    ScalingPolicy,
    Sla,
    SlaOutcomeRecorded,
    UsageRecorded,
    WorkloadSpec,
)

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
REPLICA = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)
SLA = Sla(uptime_pct=Decimal(99), penalty_pct=Decimal(10))
CPU = ScalingPolicy(metric="cpu", target=Decimal("0.7"), min_replicas=1, max_replicas=6)
SCORES = {"cost": Decimal("0.32"), "uptime": Decimal("0.19"), "grid_spread": Decimal("0.1")}


def spec(
    workload_id: str, replicas: int = 2, autoscale: ScalingPolicy | None = CPU
) -> WorkloadSpec:
    return WorkloadSpec(
        workload_id=workload_id, resources=REPLICA, replicas=replicas, autoscale=autoscale
    )


class WorkloadLog:
    """Events appended to a store on the streams the agents use, one append each."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.count = 0

    def record(self, event: Event, stream: str, at: datetime = T0) -> None:
        self.count += 1
        new = NewEvent.of(event, actor="test", occurred_at=at)
        self.store.append(stream, ANY_VERSION, [new], f"cmd-{self.count}")

    def mandate(self, offtaker: str, *specs: WorkloadSpec) -> None:
        mandate = Mandate(
            workloads=list(specs),
            budget_month=Money.of("1000", "USD"),
            max_price_cu_hour=Money.of("0.1", "USD"),
        )
        event = OfftakerMandateSet(offtaker_id=offtaker, mandate=mandate)
        self.record(event, f"offtaker-{offtaker}")

    def contract(
        self,
        contract_id: str,
        *,
        offtaker: str = "acme",
        workload: str = "web",
        node: str = "n1",
        farm: str = "f1",
        grid: Grid = Grid.GRID4,
        price: str = "0.05",
        at: datetime = T0,
    ) -> None:
        event = ContractCreated(
            contract_id=contract_id,
            negotiation_id=f"nego-{contract_id}",
            offer_id=f"offer-{contract_id}",
            hold_id=f"hold-{contract_id}",
            offtaker_id=offtaker,
            workload_id=workload,
            farm_id=farm,
            node_id=node,
            grid=grid,
            resources=REPLICA,
            price_hour=Money.of(price, "USD"),
            term_hours=720,
            sla=SLA,
            starts_at=at,
        )
        self.record(event, f"node-{node}", at)

    def cancel(self, contract_id: str, node: str, reason: str, at: datetime) -> None:
        event = ContractCancelled(contract_id=contract_id, node_id=node, reason=reason)
        self.record(event, f"node-{node}", at)

    def placed(
        self,
        contract_id: str,
        *,
        offtaker: str = "acme",
        workload: str = "web",
        node: str = "n1",
        farm: str = "f1",
        grid: Grid = Grid.GRID4,
        replica: str = "web-r0",
        total: str = "0.61",
    ) -> None:
        event = ReplicaPlaced(
            offtaker_id=offtaker,
            workload_id=workload,
            replica_id=replica,
            contract_id=contract_id,
            farm_id=farm,
            node_id=node,
            grid=grid,
            price_cu_hour=Money.of("0.0125", "USD"),
            scores=SCORES,
            total=Decimal(total),
        )
        self.record(event, f"placement-{offtaker}-{workload}")

    def decided(
        self,
        current: int,
        desired: int,
        *,
        offtaker: str = "acme",
        workload: str = "web",
        reason: str = "scale_up",
        value: str | None = "0.9",
        at: datetime = T0,
    ) -> None:
        event = ScaleDecided(
            offtaker_id=offtaker,
            workload_id=workload,
            current_replicas=current,
            desired_replicas=desired,
            metric="cpu",
            value=Decimal(value) if value is not None else None,
            target=Decimal("0.7"),
            reason=reason,
            ratio=Decimal(value) / Decimal("0.7") if value is not None else None,
            recommended_replicas=desired,
            decided_at=at,
            reporting=current,
        )
        self.record(event, f"scaling-{offtaker}-{workload}", at)

    def migrated(self, old: str, new: str, *, from_node: str, to_node: str, at: datetime) -> None:
        event = ReplicaMigrated(
            offtaker_id="acme",
            workload_id="web",
            replica_id="web-r0",
            from_node_id=from_node,
            to_node_id=to_node,
            from_contract_id=old,
            to_contract_id=new,
            reason="node_down",
        )
        self.record(event, "placement-acme-web", at)

    def sla(self, contract_id: str, *, node: str, met: bool, penalty: str, at: datetime) -> None:
        event = SlaOutcomeRecorded(
            contract_id=contract_id,
            offtaker_id="acme",
            farm_id="f1",
            node_id=node,
            sla=SLA,
            started_at=T0,
            ended_at=at,
            period_hours=Decimal(10),
            hours_down=Decimal(2),
            uptime_pct=Decimal(80),
            met=met,
            penalty=Money.of(penalty, "USD"),
        )
        self.record(event, f"node-{node}", at)

    def node_status(self, node: str, status: NodeStatus, at: datetime) -> None:
        self.record(NodeStatusChanged(node_id=node, status=status, changed_at=at), f"node-{node}")


@pytest.fixture
def log() -> WorkloadLog:
    return WorkloadLog(MemoryEventStore())


def web(log: WorkloadLog, decisions_kept: int = 10) -> WorkloadRow:
    row = read_workloads(log.store, decisions_kept).workload("acme", "web")
    assert row is not None
    return row


# -- target -------------------------------------------------------------------------------------


def test_the_target_is_the_specs_replicas_until_the_autoscaler_decides(log: WorkloadLog) -> None:
    log.mandate("acme", spec("web", replicas=2))
    assert web(log).target == 2
    log.decided(2, 4, at=T0 + timedelta(minutes=1))
    log.decided(4, 3, reason="scale_down", value="0.5", at=T0 + timedelta(minutes=6))
    row = web(log)
    assert row.target == 3
    assert row.last_decision is not None
    assert row.last_decision.reason == "scale_down"
    assert row.spec is not None
    assert row.spec.replicas == 2


def test_without_autoscaling_the_spec_sets_the_target_whatever_was_decided(
    log: WorkloadLog,
) -> None:
    log.decided(2, 5)
    log.mandate("acme", spec("web", replicas=2, autoscale=None))
    row = web(log)
    assert row.target == 2
    assert row.autoscale is None
    assert row.decisions_total == 1


def test_only_the_latest_decisions_are_kept_oldest_first(log: WorkloadLog) -> None:
    log.mandate("acme", spec("web", replicas=1))
    for step in range(5):
        log.decided(step + 1, step + 2, at=T0 + timedelta(minutes=step))
    row = web(log, decisions_kept=3)
    assert [d.desired_replicas for d in row.decisions] == [4, 5, 6]
    assert row.decisions_total == 5
    assert row.target == 6
    decision = row.decisions[-1]
    assert decision.decided_at == T0 + timedelta(minutes=4)
    assert (decision.current_replicas, decision.value, decision.target) == (
        5,
        Decimal("0.9"),
        Decimal("0.7"),
    )
    assert decision.ratio == Decimal("0.9") / Decimal("0.7")


def test_decisions_kept_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="decisions_kept"):
        WorkloadsView(decisions_kept=-1)


# -- replicas and their placement ---------------------------------------------------------------


def test_replicas_carry_their_placement_whichever_event_came_first(log: WorkloadLog) -> None:
    log.mandate("acme", spec("web", replicas=3))
    log.placed("k1", replica="web-r0", total="0.61")  # before its contract
    log.contract("k1", node="n1", grid=Grid.GRID4)
    log.contract("k2", node="n2", grid=Grid.GRID3, price="0.04")
    log.placed("k2", node="n2", grid=Grid.GRID3, replica="web-r1", total="0.55")  # after
    log.contract("k3", node="n3", grid=Grid.GRID3)  # never placed by the optimiser
    row = web(log)
    assert [r.contract_id for r in row.live] == ["k1", "k2", "k3"]
    k1, k2, k3 = row.live
    assert k1.placement is not None
    assert k1.placement.total == Decimal("0.61")
    assert k1.placement.scores == SCORES
    assert k1.placement.price_cu_hour == Money.of("0.0125", "USD")
    assert (k1.replica_id, k2.replica_id, k3.replica_id) == ("web-r0", "web-r1", "k3")
    assert k2.price_hour == Money.of("0.04", "USD")
    assert k3.placement is None
    assert row.grids == {Grid.GRID3: 2, Grid.GRID4: 1}


def test_replicas_show_their_nodes_status_and_a_suspension(log: WorkloadLog) -> None:
    log.contract("k1", node="n1")
    log.contract("k2", node="n2")
    log.node_status("n2", NodeStatus.DOWN, T0 + timedelta(minutes=1))
    log.record(
        ContractSuspended(
            contract_id="k1",
            offtaker_id="acme",
            node_id="n1",
            unpaid_hour=T0,
            grace_ends_at=T0 + timedelta(hours=1),
        ),
        "node-n1",
    )
    k1, k2 = web(log).live
    assert (k1.node_status, k1.suspended) == (NodeStatus.UP, True)
    assert (k2.node_status, k2.suspended) == (NodeStatus.DOWN, False)
    log.record(ContractResumed(contract_id="k1", offtaker_id="acme", node_id="n1"), "node-n1")
    assert not web(log).live[0].suspended


def test_a_migration_ends_the_old_contract_with_its_sla_outcome(log: WorkloadLog) -> None:
    log.mandate("acme", spec("web", replicas=1))
    log.contract("k1", node="n1")
    down, moved = T0 + timedelta(hours=8), T0 + timedelta(hours=10)
    log.node_status("n1", NodeStatus.DOWN, down)
    log.contract("k2", node="n2", at=moved)
    log.migrated("k1", "k2", from_node="n1", to_node="n2", at=moved)
    log.sla("k1", node="n1", met=False, penalty="0.01", at=moved)  # before the cancellation
    log.cancel("k1", "n1", "migrated: node down", moved + timedelta(seconds=5))
    row = web(log)
    assert [r.contract_id for r in row.live] == ["k2"]
    assert [r.contract_id for r in row.ended] == ["k1"]
    ended = row.ended[0]
    assert ended.ended_at == moved + timedelta(seconds=5)
    assert ended.end_reason == "migrated: node down"
    assert ended.node_status == NodeStatus.DOWN
    assert ended.sla is not None
    assert (ended.sla.met, ended.sla.uptime_pct, ended.sla.promised_pct) == (
        False,
        Decimal(80),
        Decimal(99),
    )
    assert ended.sla.penalty == Money.of("0.01", "USD")
    (migration,) = row.migrations
    assert (migration.from_contract_id, migration.to_contract_id) == ("k1", "k2")
    assert (migration.from_node_id, migration.to_node_id, migration.moved_at) == ("n1", "n2", moved)
    assert migration.reason == "node_down"


def test_a_cancelled_contract_without_downtime_has_no_sla_outcome(log: WorkloadLog) -> None:
    log.contract("k1")
    log.cancel("k1", "n1", "scaled down", T0 + timedelta(hours=1))
    log.cancel("k1", "n1", "again", T0 + timedelta(hours=2))  # a repeat changes nothing
    row = web(log)
    assert row.live == ()
    (ended,) = row.ended
    assert (ended.end_reason, ended.ended_at, ended.sla) == (
        "scaled down",
        T0 + timedelta(hours=1),
        None,
    )


# -- which workloads, and naming them -----------------------------------------------------------


def test_workloads_come_from_mandates_contracts_and_decisions(log: WorkloadLog) -> None:
    log.mandate("acme", spec("web"), spec("api", replicas=1, autoscale=None))
    log.contract("k1", offtaker="zeta", workload="batch")
    log.decided(1, 2, offtaker="beta", workload="etl")
    rows = read_workloads(log.store).workloads
    assert [r.ref for r in rows] == ["acme/api", "acme/web", "beta/etl", "zeta/batch"]
    batch = rows[-1]
    assert (batch.spec, batch.target, len(batch.live)) == (None, None, 1)
    assert rows[2].target == 2  # no spec: the decision's


def test_a_workload_dropped_from_the_mandate_keeps_its_history(log: WorkloadLog) -> None:
    log.mandate("acme", spec("web"), spec("api"))
    log.contract("k1", workload="api")
    log.mandate("acme", spec("web"))
    row = read_workloads(log.store).workload("acme", "api")
    assert row is not None
    assert row.spec is None
    assert [r.contract_id for r in row.live] == ["k1"]


def test_a_workload_id_is_unique_only_within_an_offtaker(log: WorkloadLog) -> None:
    log.mandate("acme", spec("web", replicas=2), spec("api"))
    log.mandate("beta", spec("web", replicas=5))
    view = read_workloads(log.store)
    with pytest.raises(AmbiguousWorkload, match=r"acme, beta.*OFFTAKER/web") as error:
        view.find("web")
    assert error.value.offtakers == ["acme", "beta"]
    assert view.find("acme/web").target == 2
    assert view.find("beta/web").target == 5
    assert view.find("api").ref == "acme/api"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nope", "no offtaker has a workload nope"),
        ("beta/api", "offtaker beta has no workload api"),
        ("/web", "names no workload"),
        ("acme/", "names no workload"),
        ("a/b/c", "names no workload"),
    ],
)
def test_unknown_workloads_are_named(log: WorkloadLog, ref: str, message: str) -> None:
    log.mandate("acme", spec("web"), spec("api"))
    log.mandate("beta", spec("web"))
    with pytest.raises(UnknownWorkload, match=message):
        read_workloads(log.store).find(ref)


# -- folding ------------------------------------------------------------------------------------


def test_a_view_reads_only_what_came_after_it_and_skips_repeats(log: WorkloadLog) -> None:
    log.mandate("acme", spec("web"))
    log.contract("k1")
    view = read_workloads(log.store)
    position = view.position
    assert position == log.store.current_position()
    log.decided(2, 3)
    log.record(
        UsageRecorded(
            contract_id="k1", hour=T0, cu_hours=Decimal(1), su_hours=Decimal(0), nu_gb=Decimal(0)
        ),
        "usage-k1",
    )
    again = read_workloads(log.store, view=view)
    assert again is view
    assert view.position == position + 2
    (decided,) = [r.envelope() for r in log.store.read_all() if r.type == "ScaleDecided"]
    view.apply(decided, ScaleDecided.model_validate(decided.payload))  # a repeat: skipped
    row = view.workload("acme", "web")
    assert row is not None
    assert (row.target, len(row.live), row.decisions_total) == (3, 1, 1)


def test_the_view_folds_a_sqlite_store(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    try:
        log = WorkloadLog(store)
        log.mandate("acme", spec("web", replicas=1))
        log.contract("k1", grid=Grid.GRID3)
        log.placed("k1", grid=Grid.GRID3)
        log.decided(1, 2)
        row = read_workloads(store).find("web")
    finally:
        store.close()
    assert row.target == 2
    assert row.grids == {Grid.GRID3: 1}
    assert row.live[0].placement is not None
    assert row.live[0].placement.total == Decimal("0.61")
