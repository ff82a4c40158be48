"""Placement across both grids, worked by hand.

The replica: 2 cores / 4 GB / 50 GB SSD -> CU = 1, SU = 50/200 = 0.25 (DOMAIN.md formulas).
  Grid 3, genesis policy: 1 * 0.010 + 0.25 * 0.005 = 0.01125 USD/h billed;
      per CU-hour = (0.01125 - 0.25 * 0.005) / 1 = 0.010
  Grid 3, manual policy: 1 * 0.03056 + 0.25 * 0.01944 = 0.03542 USD/h;
      per CU-hour = (0.03542 - 0.00125) / 1 = 0.03417
  Grid 4 offer at 0.02125 USD/h: per CU-hour = (0.02125 - 0.00125) / 1 = 0.020
Against a ceiling of 0.04 USD per CU-hour the cost part is 1 - price / 0.04: 0.75 and 0.5.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from hero.domain.placement import (
    CRITERIA,
    Candidate,
    ExistingReplica,
    PlacementRequest,
    choose_scale_down,
    farm_cap,
    migration_plan,
    place_replicas,
    sla_penalty,
)
from hero.domain.pricing import MANUAL
from schemas import ContractCreated, Grid, Money, NodeStatus, Resources, Sla

REPLICA = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)
NODE = Resources.from_gb(cru=8, mru_gb=32, sru_gb=1000)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def node(
    node_id: str,
    farm_id: str,
    grid: Grid = Grid.GRID3,
    *,
    price_hour: str | None = None,
    **fields: object,
) -> Candidate:
    values: dict[str, object] = {
        "candidate_id": node_id,
        "node_id": node_id,
        "farm_id": farm_id,
        "grid": grid,
        "region": "eu",
        "free": NODE,
        "total": NODE,
    }
    if grid == Grid.GRID4:
        values["price_hour"] = usd(price_hour or "0.02125")
        values["priced_resources"] = REPLICA
    values.update(fields)
    return Candidate.model_validate(values)


def request(count: int, **fields: object) -> PlacementRequest:
    values: dict[str, object] = {
        "workload_id": "shop",
        "resources": REPLICA,
        "count": count,
        "max_price_cu_hour": usd("0.04"),
        "regions": ("eu",),
    }
    values.update(fields)
    return PlacementRequest.model_validate(values)


def replica(
    replica_id: str, node_id: str, farm_id: str, grid: Grid = Grid.GRID3
) -> ExistingReplica:
    return ExistingReplica(
        replica_id=replica_id,
        contract_id=f"c-{replica_id}",
        node_id=node_id,
        farm_id=farm_id,
        grid=grid,
    )


# -- cost across grids -----------------------------------------------------------------------------


def test_grid3_and_grid4_compare_in_usd_per_cu_hour() -> None:
    plan = place_replicas(request(1), [node("g4", "B", Grid.GRID4), node("g3", "A")])
    (chosen,) = plan.placements
    assert chosen.node_id == "g3"
    assert chosen.price_cu_hour == usd("0.010")
    # cost 0.4 * 0.75; capacity 0.1 * min(6/8, 28/32, 950/1000) = 0.1 * 0.75; region 0.15;
    # uptime 0.2 * 0.99; certification 0; grid spread 0.1 (no replica on either grid yet)
    assert chosen.scores == {
        "cost": Decimal("0.3"),
        "capacity": Decimal("0.075"),
        "region": Decimal("0.15"),
        "uptime": Decimal("0.198"),
        "certification": Decimal(0),
        "grid_spread": Decimal("0.1"),
    }
    assert chosen.total == Decimal("0.823")


def test_a_grid4_offer_is_priced_at_its_own_price() -> None:
    (chosen,) = place_replicas(request(1), [node("g4", "B", Grid.GRID4)]).placements
    assert chosen.price_cu_hour == usd("0.020")
    assert chosen.scores["cost"] == Decimal("0.2")  # 0.4 * (1 - 0.020 / 0.04)
    assert chosen.total == Decimal("0.723")


def test_grid3_follows_the_pricing_policy_given() -> None:
    plan = place_replicas(request(1, grid3_policy=MANUAL), [node("g3", "A")])
    assert plan.placements[0].price_cu_hour == usd("0.03417")


def test_candidates_above_the_price_ceiling_are_skipped() -> None:
    plan = place_replicas(request(1, max_price_cu_hour=usd("0.015")), [node("g4", "B", Grid.GRID4)])
    assert (plan.placements, plan.unplaced) == ((), 1)


# -- spread ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("total", "cap"), [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (10, 5)])
def test_farm_cap_at_half(total: int, cap: int) -> None:
    assert farm_cap(total, Decimal("0.5")) == cap


def test_at_most_half_of_the_replicas_on_one_farm() -> None:
    # farm A is cheaper (two nodes) but may take only floor(0.5 * 4) = 2 of 4
    cheap_a = [node("a1", "A"), node("a2", "A")]
    dear_b = node("b1", "B", Grid.GRID4)
    plan = place_replicas(request(4), [*cheap_a, dear_b])
    assert Counter(p.farm_id for p in plan.placements) == {"A": 2, "B": 2}
    assert plan.unplaced == 0


def test_the_farm_cap_counts_existing_replicas_and_may_leave_some_unplaced() -> None:
    existing = [replica("r1", "a1", "A")]
    plan = place_replicas(request(1), [node("a2", "A")], existing)
    assert (plan.placements, plan.unplaced) == ((), 1)  # cap floor(0.5 * 2) = 1, A has 1


def test_replicas_spread_across_grids() -> None:
    # without a farm cap the cheaper Grid 3 node would take both; the grid spread part
    # (0.1) moves the second to Grid 4: Grid 3 would score 0.3 + 0.05 + 0.15 + 0.198 = 0.698,
    # Grid 4 scores 0.2 + 0.075 + 0.15 + 0.198 + 0.1 = 0.723
    plan = place_replicas(
        request(2, max_share_per_farm=Decimal(1)), [node("g3", "A"), node("g4", "B", Grid.GRID4)]
    )
    assert [p.grid for p in plan.placements] == [Grid.GRID3, Grid.GRID4]
    assert plan.placements[1].total == Decimal("0.723")


def test_every_breakdown_names_each_criterion_and_sums_to_the_total() -> None:
    candidates = [node(f"n{i}", f"F{i}", Grid.GRID3 if i % 2 else Grid.GRID4) for i in range(6)]
    plan = place_replicas(request(6), candidates)
    assert len(plan.placements) == 6
    for placement in plan.placements:
        assert tuple(placement.scores) == CRITERIA
        assert sum(placement.scores.values()) == placement.total
    event = plan.placements[0].to_event("acme", "shop", "r1", "c1")
    assert event.scores == plan.placements[0].scores
    assert (event.farm_id, event.total) == (plan.placements[0].farm_id, plan.placements[0].total)


def test_ineligible_candidates_are_skipped() -> None:
    candidates = [
        node("down", "A", status=NodeStatus.DOWN),
        node("standby", "B", status=NodeStatus.STANDBY),
        node("full", "C", free=Resources.from_gb(cru=1, mru_gb=2)),
        node("plain", "D"),
        node("certified", "E", certified=True),
    ]
    plan = place_replicas(request(1, certified_only=True), candidates)
    assert [p.node_id for p in plan.placements] == ["certified"]


def test_a_grid4_candidate_needs_a_price() -> None:
    with pytest.raises(ValidationError, match="price_hour"):
        Candidate(
            candidate_id="x", node_id="x", farm_id="F", grid=Grid.GRID4, free=NODE, total=NODE
        )


# -- scale-down ------------------------------------------------------------------------------------


def contract(contract_id: str, price: str, started_hours_ago: int) -> ContractCreated:
    return ContractCreated(
        contract_id=contract_id,
        negotiation_id="neg",
        offer_id=f"o-{contract_id}",
        hold_id=f"h-{contract_id}",
        offtaker_id="acme",
        workload_id="shop",
        farm_id="F",
        node_id="n",
        grid=Grid.GRID3,
        resources=REPLICA,
        price_hour=usd(price),
        term_hours=720,
        sla=Sla(uptime_pct=Decimal(99)),
        starts_at=T0 - timedelta(hours=started_hours_ago),
    )


def test_scale_down_ends_the_costliest_first_and_the_newest_among_equals() -> None:
    contracts = [
        contract("cheap", "0.01", 1),
        contract("dear-old", "0.03", 10),
        contract("mid", "0.02", 1),
        contract("dear-new", "0.03", 2),
    ]
    assert choose_scale_down(contracts, 2) == ["dear-new", "dear-old"]
    assert choose_scale_down(contracts, 3) == ["dear-new", "dear-old", "mid"]
    assert choose_scale_down(contracts, 9) == ["dear-new", "dear-old", "mid", "cheap"]
    assert choose_scale_down(contracts, 0) == []


# -- migration -------------------------------------------------------------------------------------


def test_migration_places_every_replica_of_the_down_node_elsewhere() -> None:
    on_it = [replica("r1", "n1", "A"), replica("r2", "n1", "A")]
    others = [replica("r3", "n9", "Z")]
    candidates = [
        node("n1", "A"),  # the down node itself, still listed as up by a stale view
        node("n2", "B", status=NodeStatus.DOWN),
        node("n3", "C"),  # down too, by the caller's knowledge
        node("n4", "D"),
        node("n5", "E", Grid.GRID4),
    ]
    plan = migration_plan("n1", on_it, candidates, request(0), others, down_nodes={"n3"})
    assert [m.replica_id for m in plan.moves] == ["r1", "r2"]
    assert {m.placement.node_id for m in plan.moves} == {"n4", "n5"}
    assert plan.stranded == ()
    assert plan.cancel_after == ("c-r1", "c-r2")
    event = plan.moves[0].to_event("acme", "shop", "c-new")
    assert (event.from_node_id, event.reason) == ("n1", "node_down")
    assert (event.from_contract_id, event.to_contract_id) == ("c-r1", "c-new")


def test_replicas_without_a_new_home_keep_their_contracts() -> None:
    on_it = [replica("r1", "n1", "A"), replica("r2", "n1", "A")]
    plan = migration_plan("n1", on_it, [node("n1", "A"), node("n4", "D")], request(0))
    assert [m.placement.node_id for m in plan.moves] == ["n4"]
    assert plan.stranded == ("r2",)
    assert plan.cancel_after == ("c-r1",)


def test_migration_refuses_replicas_of_another_node() -> None:
    with pytest.raises(ValueError, match="n1"):
        migration_plan("n1", [replica("r1", "n2", "A")], [], request(0))


# -- SLA penalty -----------------------------------------------------------------------------------

SLA = Sla(uptime_pct=Decimal(99), penalty_pct=Decimal(50))


@pytest.mark.parametrize(
    ("price", "hours_down", "penalty"),
    [
        # 10 h of 720: uptime 98.61% < 99%: 0.01125 * 10 * 50 / 100 = 0.05625
        ("0.01125", "10", "0.05625"),
        # 7.2 h of 720: uptime exactly 99%: nothing owed
        ("0.01125", "7.2", "0"),
        # 7.3 h: 0.01125 * 7.3 * 0.5 = 0.0410625
        ("0.01125", "7.3", "0.0410625"),
        # 0.0123457 * 8 * 0.5 = 0.0493828 exactly
        ("0.0123457", "8", "0.0493828"),
        ("0", "720", "0"),
    ],
)
def test_sla_penalty(price: str, hours_down: str, penalty: str) -> None:
    assert sla_penalty(usd(price), Decimal(hours_down), SLA) == usd(penalty)


def test_sla_penalty_rounds_once_half_even_to_7_places() -> None:
    # 0.0123457 * 3 * 33 / 100 = 0.012222243 -> 0.0122222
    sla = Sla(uptime_pct=Decimal(100), penalty_pct=Decimal(33))
    assert sla_penalty(usd("0.0123457"), Decimal(3), sla) == usd("0.0122222")
    # 0.0000001 * 1 * 50 / 100 = 0.00000005, a tie: half-even rounds to 0
    assert sla_penalty(usd("0.0000001"), Decimal(1), SLA) == usd("0")


def test_sla_penalty_over_a_shorter_period() -> None:
    # 1 h down in 24 h: uptime 95.83% < 99%: 0.01 * 1 * 0.5 = 0.005
    assert sla_penalty(usd("0.01"), Decimal(1), SLA, Decimal(24)) == usd("0.005")


def test_sla_penalty_refuses_impossible_downtime_and_floats() -> None:
    with pytest.raises(ValueError, match="hours_down"):
        sla_penalty(usd("0.01"), Decimal(721), SLA)
    with pytest.raises(TypeError, match="float"):
        sla_penalty(usd("0.01"), 1.5, SLA)  # type: ignore[arg-type]
