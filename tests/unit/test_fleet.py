"""The generated fleet and mandates: deterministic by seed, valid, varied, idempotent."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest

from agents.local import LocalMarket
from hero.domain.clock import ManualClock
from hero.market.fleet import (
    MANUAL_CU_HOUR,
    REGIONS,
    generate_fleet,
    generate_mandates,
    monthly_estimate,
)
from hero.market.service import MarketService
from hero.store import MemoryEventStore
from schemas import (
    REGISTRY,
    Command,
    FarmerPolicy,
    Grid,
    PolicyMode,
    RegisterFarm,
    RegisterNode,
    SetFarmerPolicy,
    SetOfftakerMandate,
)


def dumps(commands: list[Command] | list[SetOfftakerMandate]) -> list[dict[str, object]]:
    return [c.model_dump(mode="json") for c in commands]


def of_type(commands: list[Command], kind: type) -> list:  # type: ignore[type-arg]
    return [c for c in commands if isinstance(c, kind)]


def test_the_same_seed_gives_the_same_fleet_and_another_seed_another() -> None:
    assert dumps(generate_fleet(7)) == dumps(generate_fleet(7))
    assert dumps(generate_fleet(7)) != dumps(generate_fleet(8))


def test_ids_are_numbered_and_command_ids_unique() -> None:
    fleet = generate_fleet(3, farms=5, nodes_per_farm=(2, 3))
    farms = of_type(fleet, RegisterFarm)
    assert [f.farm_id for f in farms] == [f"farm-000{i}" for i in range(1, 6)]
    for node in of_type(fleet, RegisterNode):
        number = node.farm_id.removeprefix("farm-")
        assert node.node_id.startswith(f"node-{number}-")
    ids = [c.command_id for c in fleet]
    assert len(ids) == len(set(ids))
    assert all(i.startswith("fleet-3.") for i in ids)


def test_every_farm_has_its_nodes_then_its_policy() -> None:
    fleet = generate_fleet(5, farms=20, nodes_per_farm=(2, 4))
    per_farm = Counter(n.farm_id for n in of_type(fleet, RegisterNode))
    assert len(per_farm) == 20
    assert all(2 <= count <= 4 for count in per_farm.values())
    policies = of_type(fleet, SetFarmerPolicy)
    assert [p.farm_id for p in policies] == [f.farm_id for f in of_type(fleet, RegisterFarm)]
    registered: set[str] = set()
    for command in fleet:  # the order the market service needs: farm, nodes, policy
        if isinstance(command, RegisterFarm):
            registered.add(command.farm_id)
        elif isinstance(command, RegisterNode | SetFarmerPolicy):
            assert command.farm_id in registered


def test_commands_are_valid_against_the_catalogue() -> None:
    for command in [*generate_fleet(9, farms=30), *generate_mandates(9, offtakers=10)]:
        again = REGISTRY.validate(command.TYPE, command.model_dump(mode="json"))
        assert again == command


def test_a_large_fleet_mixes_grids_regions_modes_and_pricing() -> None:
    fleet = generate_fleet(11, farms=300, grid3_share=0.6)
    farms = of_type(fleet, RegisterFarm)
    grids = Counter(f.grid for f in farms)
    assert 0.5 < grids[Grid.GRID3] / len(farms) < 0.7
    assert {f.region for f in farms} == set(REGIONS)
    assert all(f.country in REGIONS[f.region] for f in farms)
    assert 0.15 < sum(f.certified for f in farms) / len(farms) < 0.45
    policies: list[FarmerPolicy] = [p.policy for p in of_type(fleet, SetFarmerPolicy)]
    modes = Counter(p.mode for p in policies)
    assert modes[PolicyMode.AUTO] > modes[PolicyMode.APPROVE] > modes[PolicyMode.OFF] > 0
    markups = [p.markup for p in policies if p.markup is not None]
    fixed = [p.price_cu_hour.amount for p in policies if p.price_cu_hour is not None]
    assert markups
    assert fixed
    assert all(Decimal(1) <= m <= Decimal(3) for m in markups)
    assert all(
        MANUAL_CU_HOUR * Decimal("0.79") <= p <= MANUAL_CU_HOUR * Decimal("1.31") for p in fixed
    )
    floors = [p for p in policies if p.floor_cu_hour is not None]
    assert floors
    assert all(p.floor_cu_hour < p.price_cu_hour for p in floors)
    assert {p.max_term_hours for p in policies} >= {None, 168, 720, 8760}
    assert {p.reserve_share for p in policies} >= {Decimal(0), Decimal("0.2")}


def test_nodes_look_like_real_3nodes() -> None:
    nodes = of_type(generate_fleet(13, farms=200), RegisterNode)
    assert all(8 <= n.total.cru <= 64 for n in nodes)
    assert all(32 <= n.total.mru_gb <= 512 for n in nodes)
    assert all(1000 <= n.total.sru_gb <= 8000 for n in nodes)
    assert all(Decimal(95) <= n.uptime_pct <= Decimal("99.99") for n in nodes)
    with_hdd = sum(1 for n in nodes if n.total.hru)
    assert 0 < with_hdd < len(nodes) / 2
    assert all(n.uptime_pct >= 99 for n in nodes if n.certified)


@pytest.mark.parametrize(
    ("farms", "nodes", "share"),
    [(0, (1, 2), 0.5), (3, (0, 2), 0.5), (3, (3, 2), 0.5), (3, (1, 2), 1.5)],
)
def test_bad_arguments_are_refused(farms: int, nodes: tuple[int, int], share: float) -> None:
    with pytest.raises(ValueError, match="must"):
        generate_fleet(1, farms=farms, nodes_per_farm=nodes, grid3_share=share)


def test_sending_the_same_fleet_twice_writes_it_once() -> None:
    store = MemoryEventStore()
    service = MarketService(store, ManualClock())
    fleet = generate_fleet(21, farms=6)
    first = [service.handle(c) for c in fleet]
    assert not any(r.duplicate for r in first)
    position = store.current_position()
    assert position == len(fleet)
    again = [MarketService(store, ManualClock()).handle(c) for c in generate_fleet(21, farms=6)]
    assert all(r.duplicate for r in again)
    assert store.current_position() == position


def test_mandates_are_deterministic_sized_and_sometimes_bind() -> None:
    assert dumps(generate_mandates(4, offtakers=6)) == dumps(generate_mandates(4, offtakers=6))
    mandates = generate_mandates(4, offtakers=40, suffix="x")
    assert len({m.offtaker_id for m in mandates}) == 40
    assert all(m.offtaker_id.endswith("-x") for m in mandates)
    workloads = [w for m in mandates for w in m.mandate.workloads]
    assert all(1 <= w.replicas <= 5 for w in workloads)
    assert {tuple(w.grids) for w in workloads} == {
        (Grid.GRID3, Grid.GRID4), (Grid.GRID3,), (Grid.GRID4,),
    }  # fmt: skip
    assert any(w.regions for w in workloads)
    assert any(not w.regions for w in workloads)

    def needed(m: SetOfftakerMandate) -> Decimal:
        costs = [monthly_estimate(w.resources, w.replicas).amount for w in m.mandate.workloads]
        return sum(costs, Decimal(0))

    binding = generate_mandates(5, offtakers=10, binding_share=1.0)
    assert all(m.mandate.budget_month.amount < needed(m) for m in binding)
    loose = generate_mandates(5, offtakers=10, binding_share=0.0)
    assert all(m.mandate.budget_month.amount > needed(m) for m in loose)


def test_a_generated_market_makes_contracts() -> None:
    store = MemoryEventStore()
    clock = ManualClock()
    market = LocalMarket(store, clock)
    for command in generate_fleet(31, farms=12, grid3_share=0.5, off_share=0.0):
        market.service.handle(command)
    for command in generate_mandates(31, offtakers=3, regions=["europe"], binding_share=0.0):
        market.service.handle(command)
    for _ in range(30):
        market.step()
        clock.advance(timedelta(seconds=1))
    created = [r for r in store.read_all(1, 10_000) if r.type == "ContractCreated"]
    assert created
