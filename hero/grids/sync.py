"""Import the real grids into the market: every farm and node the Grid 3 proxy and the Grid 4
registrar list becomes RegisterFarm / RegisterNode, sent through the MarketService; a node
whose status differs from the one the market holds gets a ChangeNodeStatus.

Idempotent: a farm or node the market has already is left alone (whoever registered it), and
a status already held writes nothing, so a second sync of the same grid writes nothing new.
A node of a farm the grid did not list is skipped (and named in the report).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hero.domain import node as nodes
from hero.domain.clock import Clock, SystemClock
from hero.grids.grid3 import Grid3Client
from hero.grids.grid4 import Grid4Client
from hero.grids.models import (
    Grid3Farm,
    Grid3Node,
    Grid4Farm,
    Grid4Node,
    grid3_farm_command,
    grid3_node_command,
    grid3_node_status,
    grid4_farm_command,
    grid4_node_command,
    grid4_node_status,
    status_command,
)
from hero.market.service import MarketService, farm_stream
from hero.store import EventStore
from schemas import Grid, NodeStatus, RegisterFarm, RegisterNode

__all__ = ["GridSyncReport", "SyncReport", "sync_grids"]


@dataclass
class GridSyncReport:
    grid: Grid
    farms_imported: int = 0
    farms_unchanged: int = 0
    nodes_imported: int = 0
    nodes_unchanged: int = 0
    status_changes: int = 0
    skipped: list[str] = field(default_factory=list)
    unparsed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "grid": self.grid.value,
            "farms_imported": self.farms_imported,
            "farms_unchanged": self.farms_unchanged,
            "nodes_imported": self.nodes_imported,
            "nodes_unchanged": self.nodes_unchanged,
            "status_changes": self.status_changes,
            "skipped": self.skipped,
            "unparsed": self.unparsed,
        }


@dataclass
class SyncReport:
    grids: list[GridSyncReport] = field(default_factory=list)

    @property
    def written(self) -> int:
        return sum(g.farms_imported + g.nodes_imported + g.status_changes for g in self.grids)

    def as_dict(self) -> dict[str, Any]:
        return {"written": self.written, "grids": [g.as_dict() for g in self.grids]}


async def sync_grids(
    store: EventStore,
    *,
    grid3: Grid3Client | None = None,
    grid4: Grid4Client | None = None,
    service: MarketService | None = None,
    actor: str = "grid-sync",
    clock: Clock | None = None,
) -> SyncReport:
    """Read every page of each client given, then register and update through ``service``
    (one over ``store`` by default; ``store`` is read to tell what is there already). A Grid 3
    node whose last report is older than 80 minutes at the ``clock``'s now is marked down."""
    if grid3 is None and grid4 is None:
        raise ValueError("give at least one of grid3 and grid4")
    now = (clock or SystemClock()).now()
    importer = _Importer(store, service or MarketService(store), actor, now)
    report = SyncReport()
    if grid3 is not None:
        g3_farms = [f async for f in grid3.farms()]
        g3_nodes = [n async for n in grid3.nodes()]
        report.grids.append(importer.grid3(g3_farms, g3_nodes, grid3.skipped))
    if grid4 is not None:
        g4_farms = [f async for f in grid4.farms()]
        g4_nodes = [n async for n in grid4.nodes()]
        report.grids.append(importer.grid4(g4_farms, g4_nodes, grid4.skipped))
    return report


class _Importer:
    def __init__(self, store: EventStore, service: MarketService, actor: str, now: datetime):
        self._store = store
        self._service = service
        self._actor = actor
        self._now = now

    def grid3(
        self, farms: Sequence[Grid3Farm], node_list: Sequence[Grid3Node], unparsed: int
    ) -> GridSyncReport:
        return self._grid(
            GridSyncReport(Grid.GRID3, unparsed=unparsed),
            [(f.farm_id, grid3_farm_command(f, node_list)) for f in farms],
            [
                (n.farm_id, n.node_id, grid3_node_command(n), grid3_node_status(n, self._now))
                for n in node_list
            ],
        )

    def grid4(
        self, farms: Sequence[Grid4Farm], node_list: Sequence[Grid4Node], unparsed: int
    ) -> GridSyncReport:
        return self._grid(
            GridSyncReport(Grid.GRID4, unparsed=unparsed),
            [(f.farm_id, grid4_farm_command(f, node_list)) for f in farms],
            [
                (n.farm_id, n.node_id, grid4_node_command(n), grid4_node_status(n))
                for n in node_list
            ],
        )

    def _grid(
        self,
        report: GridSyncReport,
        farms: list[tuple[int, RegisterFarm]],
        nodes: list[tuple[int, int, RegisterNode, NodeStatus]],
    ) -> GridSyncReport:
        for _, farm_command in farms:
            self._farm(report, farm_command)
        known = {farm_id for farm_id, _ in farms}
        for farm_id, node_id, node_command, status in nodes:
            if farm_id not in known:
                grid = report.grid.value
                report.skipped.append(f"{grid} node {node_id}: farm {farm_id} not listed")
                continue
            self._node(report, node_command, node_id, status)
        return report

    def _farm(self, report: GridSyncReport, command: RegisterFarm) -> None:
        if self._store.stream_version(farm_stream(command.farm_id)) > 0:
            report.farms_unchanged += 1
            return
        result = self._service.handle(command, actor=self._actor)
        if result.events:
            report.farms_imported += 1
        else:
            report.farms_unchanged += 1

    def _node(
        self, report: GridSyncReport, command: RegisterNode, grid_node_id: int, status: NodeStatus
    ) -> None:
        stream = nodes.node_stream(command.node_id)
        if self._store.stream_version(stream) > 0:
            report.nodes_unchanged += 1
        else:
            result = self._service.handle(command, actor=self._actor)
            if result.events:
                report.nodes_imported += 1
            else:
                report.nodes_unchanged += 1
        version, state = self._state(stream)
        if state.status != status:
            change = status_command(command.grid, grid_node_id, status, version)
            if self._service.handle(change, actor=self._actor).events:
                report.status_changes += 1

    def _state(self, stream: str) -> tuple[int, nodes.NodeState]:
        state = nodes.NodeState()
        version = 0
        for row in self._store.read_stream(stream, 1):
            state = nodes.evolve(state, row.envelope().decode())
            version = row.version
        return version, state
