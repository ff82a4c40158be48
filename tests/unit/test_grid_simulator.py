"""The grid simulator: deterministic from its seed, real payload shapes, daily cycles, spikes,
failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hero.domain.clock import ManualClock
from hero.grids.models import Grid3Contract, Grid3Farm, Grid3Node, Grid4Farm, Grid4Node
from hero.grids.simulator import GridSimulator, paginate
from schemas import Grid, NodeStatus

T0 = datetime(2026, 2, 1, tzinfo=UTC)


def test_the_same_seed_gives_the_same_fleet_payloads_and_series() -> None:
    a, b = GridSimulator(7, 10), GridSimulator(7, 10)
    assert a.grid3_farms() == b.grid3_farms()
    assert a.grid3_nodes(T0) == b.grid3_nodes(T0)
    assert a.grid4_farms() == b.grid4_farms()
    assert a.grid4_nodes(T0) == b.grid4_nodes(T0)
    assert a.grid3_contracts(T0) == b.grid3_contracts(T0)
    node = a.nodes[0]
    assert a.series(node, T0, 72) == b.series(b.nodes[0], T0, 72)
    assert GridSimulator(8, 10).grid3_nodes(T0) != a.grid3_nodes(T0)


def test_a_sample_does_not_depend_on_what_was_asked_before() -> None:
    sim = GridSimulator(3, 6)
    node = sim.nodes[-1]
    late = sim.sample(node, T0 + timedelta(days=5, hours=3))
    sim.series(node, T0, 200)
    assert GridSimulator(3, 6).sample(node, T0 + timedelta(days=5, hours=3)) == late


def test_every_payload_parses_as_the_real_shape() -> None:
    sim = GridSimulator(11, 12)
    g3_farms = [Grid3Farm.model_validate(f) for f in sim.grid3_farms()]
    g3_nodes = [Grid3Node.model_validate(n) for n in sim.grid3_nodes(T0)]
    g4_farms = [Grid4Farm.model_validate(f) for f in sim.grid4_farms()]
    g4_nodes = [Grid4Node.model_validate(n) for n in sim.grid4_nodes(T0)]
    contracts = [Grid3Contract.model_validate(c) for c in sim.grid3_contracts(T0)]
    assert g3_farms
    assert g3_nodes
    assert g4_farms
    assert g4_nodes
    assert contracts
    assert len(g3_nodes) + len(g4_nodes) == len(sim.nodes)
    assert {n.farm_id for n in g3_nodes} <= {f.farm_id for f in g3_farms}
    assert {n.farm_id for n in g4_nodes} <= {f.farm_id for f in g4_farms}
    assert all(n.total_resources.mru > 0 and n.total_resources.cru >= 8 for n in g3_nodes)
    assert len({n.node_id for n in g3_nodes}) == len(g3_nodes)


def test_the_daily_cycle_peaks_in_the_afternoon_and_bottoms_at_night() -> None:
    sim = GridSimulator(5, 8, spike_chance=0.0)
    node = sim.nodes[0]
    day = sim.series(node, T0, 24)
    peak = max(day, key=lambda s: s.cpu).at.hour
    low = min(day, key=lambda s: s.cpu).at.hour
    assert peak == int(node.peak_hour) % 24 or peak == (int(node.peak_hour) + 1) % 24
    assert (peak - low) % 24 == 12
    assert [s.cpu for s in day] == [s.cpu for s in sim.series(node, T0 + timedelta(days=1), 24)]


def test_spikes_lift_the_load_above_the_cycle_and_may_overprovision() -> None:
    calm = GridSimulator(5, 8, spike_chance=0.0)
    spiky = GridSimulator(5, 8, spike_chance=0.2)
    node = calm.nodes[0]
    calm_week = calm.series(node, T0, 24 * 7)
    spiky_week = spiky.series(node, T0, 24 * 7)
    spikes = [(c, s) for c, s in zip(calm_week, spiky_week, strict=True) if s.spike]
    assert spikes
    assert not any(c.spike for c in calm_week)
    assert all(s.cpu >= c.cpu + 0.4 - 1e-9 for c, s in spikes)
    over = GridSimulator(5, 8, spike_chance=1.0)
    used = [over.used(n, T0 + timedelta(hours=14)) for n in over.nodes]
    assert any(u.cru > n.total.cru for u, n in zip(used, over.nodes, strict=True))


def test_failures_take_nodes_down_for_a_while() -> None:
    sim = GridSimulator(2, 10, failure_chance=0.3)
    node = sim.nodes[0]
    outages = sim.outages(node, T0, T0 + timedelta(days=30))
    assert outages
    for outage in outages:
        assert timedelta(hours=1) <= outage.end - outage.start <= timedelta(hours=12)
        middle = outage.start + (outage.end - outage.start) / 2
        assert sim.status(node, middle) == NodeStatus.DOWN
    payloads = {p["nodeId"]: p for p in sim.grid3_nodes(outages[0].start)}
    if node.grid == Grid.GRID3:
        assert payloads[node.node_id]["status"] == "down"
        assert payloads[node.node_id]["used_resources"]["cru"] == 0
    never = GridSimulator(2, 10, failure_chance=0.0)
    assert never.outages(never.nodes[0], T0, T0 + timedelta(days=30)) == []


def test_grid4_nodes_go_offline_during_an_outage() -> None:
    sim = GridSimulator(4, 12, failure_chance=0.5, grid3_share=0.0)
    node = sim.nodes[0]
    outage = sim.outages(node, T0, T0 + timedelta(days=10))[0]
    at = outage.start + timedelta(minutes=1)
    online = {p["node_id"]: p["online"] for p in sim.grid4_nodes(at)}
    assert online[node.node_id] is False
    assert sim.status(node, at) == NodeStatus.DOWN


def test_power_managed_grid3_nodes_are_on_standby_at_night() -> None:
    sim = GridSimulator(9, 30, failure_chance=0.0, grid3_share=1.0)
    managed = [n for n in sim.nodes if n.power_managed]
    assert managed
    assert sim.status(managed[0], T0.replace(hour=3)) == NodeStatus.STANDBY
    assert sim.status(managed[0], T0.replace(hour=12)) == NodeStatus.UP


def test_the_injected_clock_sets_the_default_time() -> None:
    clock = ManualClock(T0)
    sim = GridSimulator(1, 6, clock=clock)
    assert sim.grid3_nodes() == sim.grid3_nodes(T0)
    clock.advance(timedelta(hours=5))
    assert sim.grid3_nodes() == sim.grid3_nodes(T0 + timedelta(hours=5))
    with pytest.raises(ValueError, match="timezone-aware"):
        sim.grid3_nodes(datetime(2026, 1, 1))


def test_paginate() -> None:
    items = list(range(7))
    assert paginate(items, 1, 3) == [0, 1, 2]
    assert paginate(items, 3, 3) == [6]
    assert paginate(items, 4, 3) == []
    with pytest.raises(ValueError, match="page and size"):
        paginate(items, 0, 3)
