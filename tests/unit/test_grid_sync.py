"""Sync the simulated grids, served on 127.0.0.1, into a MarketService: farms and nodes are
registered, a second sync writes nothing, a status change syncs as a status change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hero.cli import grids as grids_cli
from hero.cli.grids import serve_in_thread, simulator_app
from hero.domain.clock import ManualClock
from hero.domain.node import node_stream
from hero.grids.grid3 import Grid3Client
from hero.grids.grid4 import Grid4Client
from hero.grids.models import node_id
from hero.grids.simulator import GridSimulator, SimNode
from hero.grids.sync import sync_grids
from hero.market.service import MarketService, farm_stream
from hero.store import MemoryEventStore
from schemas import Grid, NodeStatus, RegisterFarm

T0 = datetime(2026, 2, 1, 12, tzinfo=UTC)
CLOCK = ManualClock(T0)
SIM = GridSimulator(31, 10, clock=CLOCK, failure_chance=0.3)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_in_thread(simulator_app(SIM)) as base:
        yield base


@pytest.fixture(autouse=True)
def at_t0() -> None:
    CLOCK.set(T0)


async def run_sync(store: MemoryEventStore, url: str, service: MarketService | None = None) -> Any:
    async with (
        Grid3Client(url, page_size=5, backoff=0.01) as g3,
        Grid4Client(url, page_size=5, backoff=0.01) as g4,
    ):
        return await sync_grids(store, grid3=g3, grid4=g4, service=service, clock=CLOCK)


def last_status(store: MemoryEventStore, node: SimNode) -> NodeStatus:
    status = NodeStatus.UP
    for row in store.read_stream(node_stream(node_id(node.grid, node.node_id))):
        payload = row.envelope().payload
        if row.envelope().type == "NodeStatusChanged":
            status = NodeStatus(payload["status"])
    return status


async def test_sync_registers_every_farm_and_node_and_the_second_writes_nothing(
    url: str,
) -> None:
    store = MemoryEventStore(CLOCK)
    service = MarketService(store, CLOCK)
    report = await run_sync(store, url, service)
    by_grid = {g.grid: g for g in report.grids}
    for grid in (Grid.GRID3, Grid.GRID4):
        farms = [f for f in SIM.farms if f.grid == grid]
        nodes = [n for n in SIM.nodes if n.grid == grid]
        assert by_grid[grid].farms_imported == len(farms)
        assert by_grid[grid].nodes_imported == len(nodes)
        assert by_grid[grid].skipped == []
        for farm in farms:
            prefix = "g3" if grid == Grid.GRID3 else "g4"
            assert store.stream_version(farm_stream(f"{prefix}-farm-{farm.farm_id}")) == 1
    not_up = [n for n in SIM.nodes if SIM.status(n) != NodeStatus.UP]
    assert report.written == len(SIM.farms) + len(SIM.nodes) + len(not_up)
    for node in SIM.nodes:
        assert last_status(store, node) == SIM.status(node)
    registered = store.read_stream(node_stream(node_id(SIM.nodes[0].grid, SIM.nodes[0].node_id)))
    assert registered[0].envelope().payload["total"]["mru"] == SIM.nodes[0].total.mru

    length = len(store.read_all(1, 100_000))
    again = await run_sync(store, url, MarketService(store, CLOCK))
    assert again.written == 0
    assert all(g.farms_imported == g.nodes_imported == g.status_changes == 0 for g in again.grids)
    assert sum(g.nodes_unchanged for g in again.grids) == len(SIM.nodes)
    assert len(store.read_all(1, 100_000)) == length


async def test_a_status_change_syncs_as_change_node_status(url: str) -> None:
    node, outage = next(
        (n, o)
        for n in SIM.nodes
        if SIM.status(n, T0) == NodeStatus.UP
        for o in SIM.outages(n, T0 + timedelta(hours=1), T0 + timedelta(days=20))
        if o.start.hour >= 8 and o.end.hour >= 6
    )
    store = MemoryEventStore(CLOCK)
    await run_sync(store, url)
    assert last_status(store, node) == NodeStatus.UP

    CLOCK.set(outage.start + timedelta(minutes=5))
    report = await run_sync(store, url)
    assert report.written >= 1
    assert last_status(store, node) == NodeStatus.DOWN
    assert (await run_sync(store, url)).written == 0

    CLOCK.set(outage.end + timedelta(minutes=5))
    await run_sync(store, url)
    expected = SIM.status(node)
    assert last_status(store, node) == expected
    changes = [
        row.envelope()
        for row in store.read_stream(node_stream(node_id(node.grid, node.node_id)))
        if row.envelope().type == "NodeStatusChanged"
    ]
    assert changes[0].payload["status"] == "down"
    assert str(changes[0].causation_id).endswith(":status:1:down")


async def test_a_farm_registered_by_someone_else_is_left_alone(url: str) -> None:
    store = MemoryEventStore(CLOCK)
    farm = next(f for f in SIM.farms if f.grid == Grid.GRID3)
    MarketService(store, CLOCK).handle(
        RegisterFarm(
            command_id="by-hand",
            farm_id=f"g3-farm-{farm.farm_id}",
            name="registered by hand",
            grid=Grid.GRID3,
            country="BE",
            region="europe",
        )
    )
    report = await run_sync(store, url)
    g3 = next(g for g in report.grids if g.grid == Grid.GRID3)
    assert g3.farms_unchanged == 1
    assert g3.nodes_imported == sum(1 for n in SIM.nodes if n.grid == Grid.GRID3)


async def test_sync_needs_a_grid() -> None:
    with pytest.raises(ValueError, match="at least one"):
        await sync_grids(MemoryEventStore())


def test_the_cli_syncs_and_says_what_it_imported(url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["sync", "--grid3-url", url, "--grid4-url", url, "--data-dir", str(tmp_path)]
    first = runner.invoke(grids_cli.app, [*args, "--json"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["written"] >= len(SIM.farms) + len(SIM.nodes)
    second = runner.invoke(grids_cli.app, args)
    assert second.exit_code == 0, second.output
    assert "farms 0 imported" in second.stdout
    assert "nothing new" in second.stdout


def test_the_cli_needs_a_url_and_reports_an_unreachable_grid(tmp_path: Path) -> None:
    runner = CliRunner()
    none = runner.invoke(grids_cli.app, ["sync", "--data-dir", str(tmp_path)])
    assert none.exit_code == 2
    assert "--grid3-url" in none.output
    dead = runner.invoke(
        grids_cli.app,
        [
            "sync",
            "--grid4-url",
            "http://127.0.0.1:9",
            "--retries",
            "0",
            "--data-dir",
            str(tmp_path),
        ],
    )
    assert dead.exit_code == 1
    assert "127.0.0.1:9" in dead.output


def test_simulate_serves_on_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda api, **kw: seen.update(kw, api=api))
    result = CliRunner().invoke(grids_cli.app, ["simulate", "--seed", "3", "--farms", "4"])
    assert result.exit_code == 0, result.output
    assert seen["host"] == "127.0.0.1"
    assert seen["port"] == 8080
    paths = {route.path for route in seen["api"].routes}
    assert {"/nodes", "/farms", "/contracts", "/api/v1/nodes", "/api/v1/farms"} <= paths
