"""Workloads as the offtakers' agents run them, read from the event store:

* ``hero workloads list`` -- one row per workload: its replicas per grid, live against the
  target, the autoscaling policy and the last decision;
* ``hero workloads show W`` -- one workload in full: the spec, where each replica runs and
  why it went there (the placement's scores), the autoscaler's latest decisions with their
  inputs, the migrations, and the ended contracts with their SLA outcome.

A workload id is unique only within one offtaker's mandate: name it ``W`` when a single
offtaker has one of that id, else ``OFFTAKER/W``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from hero.cli.common import (
    AsJson,
    AsOfOption,
    DataDir,
    console,
    fail,
    print_json,
    warn_skipped,
)
from hero.cli.market import opened_store
from hero.cli.tables import fmt_money, fmt_resources
from hero.domain.placement import CRITERIA
from hero.market.views import json_ready
from hero.readmodels.workloads import (
    DECISIONS_KEPT,
    DecisionRow,
    MigrationRow,
    ReplicaRow,
    WorkloadLookupError,
    WorkloadRow,
    WorkloadsView,
    read_workloads,
)
from schemas import NodeStatus, ScalingPolicy, WorkloadSpec

__all__ = [
    "app",
    "find_workload",
    "fmt_autoscale",
    "fmt_grids",
    "load_workloads",
    "workload_summary",
]

app = typer.Typer(
    help="Workloads: replicas and their placement, scaling decisions, migrations.",
    no_args_is_help=True,
)

#: Ratios are shown to 3 places; the JSON has them exact.
_RATIO_PLACES = Decimal("0.001")

WorkloadRef = Annotated[
    str,
    typer.Argument(metavar="WORKLOAD", help="W, or OFFTAKER/W when several offtakers have a W"),
]


def load_workloads(
    data_dir: Path | None, decisions_kept: int = DECISIONS_KEPT, as_of: str | None = None
) -> WorkloadsView:
    with opened_store(data_dir, as_of) as store:
        return read_workloads(store, decisions_kept, on_skip=warn_skipped)


def find_workload(view: WorkloadsView, ref: str) -> WorkloadRow:
    """The workload ``ref`` names; an unknown or ambiguous one exits 2 saying which."""
    try:
        return view.find(ref)
    except WorkloadLookupError as error:
        fail(escape(str(error)))


# -- formatting -----------------------------------------------------------------------------------


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}" if value else "0"


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}"


def fmt_grids(row: WorkloadRow) -> str:
    """Live replicas per grid: ``grid3 2, grid4 1``; ``-`` when none runs."""
    return ", ".join(f"{grid.value} {count}" for grid, count in row.grids.items()) or "-"


def fmt_autoscale(policy: ScalingPolicy | None) -> str:
    """``cpu 0.7 1-10``: the metric, its target per replica, the replica bounds."""
    if policy is None:
        return "-"
    return f"{policy.metric} {_plain(policy.target)} {policy.min_replicas}-{policy.max_replicas}"


def _fmt_count(count: int | None) -> str:
    return "-" if count is None else str(count)


def _fmt_decision(decision: DecisionRow | None) -> str:
    if decision is None:
        return "-"
    return (
        f"{escape(decision.reason)} ({decision.current_replicas}→{decision.desired_replicas}) "
        f"{_when(decision.decided_at)}"
    )


def _fmt_optional(value: Decimal | None) -> str:
    return "-" if value is None else _plain(value)


def _fmt_ratio(ratio: Decimal | None) -> str:
    return "-" if ratio is None else _plain(ratio.quantize(_RATIO_PLACES, ROUND_HALF_EVEN))


def _fmt_status(replica: ReplicaRow) -> str:
    colour = "green" if replica.node_status == NodeStatus.UP else "red"
    text = f"[{colour}]{replica.node_status.value}[/]"
    return f"{text}, [yellow]suspended[/]" if replica.suspended else text


# -- hero workloads list --------------------------------------------------------------------------


def workload_summary(row: WorkloadRow) -> dict[str, Any]:
    """The list's row as JSON-ready data."""
    policy = row.autoscale
    return {
        "offtaker_id": row.offtaker_id,
        "workload_id": row.workload_id,
        "ref": row.ref,
        "grids": json_ready(row.grids),
        "live": len(row.live),
        "target": row.target,
        "autoscale": policy.model_dump(mode="json") if policy is not None else None,
        "last_decision": _decision_json(row.last_decision),
    }


def _decision_json(decision: DecisionRow | None) -> Any:
    """A decision without the owner its row already names."""
    if decision is None:
        return None
    return json_ready({k: v for k, v in decision if k not in ("offtaker_id", "workload_id")})


def _list_table(rows: list[WorkloadRow]) -> Table:
    table = Table("offtaker", "workload", "grids", "live/target", "autoscale", "last decision")
    for row in rows:
        table.add_row(
            row.offtaker_id,
            row.workload_id,
            fmt_grids(row),
            f"{len(row.live)}/{_fmt_count(row.target)}",
            fmt_autoscale(row.autoscale),
            _fmt_decision(row.last_decision),
        )
    return table


@app.command("list")
def list_workloads(
    offtaker: Annotated[
        str | None, typer.Option("--offtaker", help="only this offtaker's workloads")
    ] = None,
    data_dir: DataDir = None,
    as_of: AsOfOption = None,
    as_json: AsJson = False,
) -> None:
    """Every workload: replicas per grid, live/target, autoscaling, the last decision."""
    rows = load_workloads(data_dir, decisions_kept=1, as_of=as_of).workloads
    if offtaker is not None:
        rows = [row for row in rows if row.offtaker_id == offtaker]
    if as_json:
        print_json([workload_summary(row) for row in rows])
        return
    if not rows:
        console.print("no workloads" + (f" of offtaker {escape(offtaker)}" if offtaker else ""))
        return
    console.print(_list_table(rows))


# -- hero workloads show --------------------------------------------------------------------------


def _spec_lines(row: WorkloadRow) -> list[str]:
    target = _fmt_count(row.target)
    lines = [f"[bold]workload {row.workload_id}[/] of offtaker {row.offtaker_id}"]
    spec: WorkloadSpec | None = row.spec
    if spec is None:
        lines.append("  not in the offtaker's mandate")
        lines.append(f"  replicas: {len(row.live)} live, target {target}")
        return lines
    lines.append(f"  resources per replica: {fmt_resources(spec.resources)}")
    lines.append(f"  replicas: {len(row.live)} live, target {target} (spec {spec.replicas})")
    policy = spec.autoscale
    if policy is None:
        lines.append("  autoscale: off")
    else:
        lines.append(
            f"  autoscale: {policy.metric} at {_plain(policy.target)} per replica, "
            f"{policy.min_replicas}-{policy.max_replicas} replicas "
            f"(tolerance {_plain(policy.tolerance)})"
        )
    grids = ", ".join(grid.value for grid in spec.grids)
    regions = ", ".join(spec.regions) or "any"
    lines.append(
        f"  grids: {grids}; regions: {escape(regions)}; min uptime {_plain(spec.min_uptime_pct)}%"
    )
    return lines


def _replicas_table(replicas: tuple[ReplicaRow, ...]) -> Table:
    table = Table(
        "replica", "contract", "node", "status", "farm", "grid", "price/h", "started (UTC)",
        title="replicas",
    )  # fmt: skip
    for r in replicas:
        table.add_row(
            r.replica_id,
            r.contract_id,
            r.node_id,
            _fmt_status(r),
            r.farm_id,
            r.grid.value,
            fmt_money(r.price_hour),
            _when(r.started_at),
        )
    return table


def _criteria(replicas: tuple[ReplicaRow, ...]) -> list[str]:
    """The criteria scored, the placement's own order first."""
    named = {name for r in replicas if r.placement for name in r.placement.scores}
    return [c for c in CRITERIA if c in named] + sorted(named - set(CRITERIA))


def _scores_table(replicas: tuple[ReplicaRow, ...]) -> Table:
    criteria = _criteria(replicas)
    table = Table("contract", "node", "price/CU-h", "total", *criteria, title="placement scores")
    for r in replicas:
        placed = r.placement
        if placed is None:
            continue
        price = fmt_money(placed.price_cu_hour) if placed.price_cu_hour is not None else "-"
        table.add_row(
            r.contract_id,
            r.node_id,
            price,
            _fmt_optional(placed.total),
            *(_fmt_optional(placed.scores.get(name)) for name in criteria),
        )
    return table


def _decisions_table(row: WorkloadRow) -> Table:
    shown = len(row.decisions)
    title = f"scale decisions (last {shown} of {row.decisions_total})"
    table = Table("decided (UTC)", "replicas", "reason", "metric", "value/target", "ratio",
                  "reporting/missing/not ready", title=title)  # fmt: skip
    for d in row.decisions:
        table.add_row(
            _when(d.decided_at),
            f"{d.current_replicas}→{d.desired_replicas}",
            escape(d.reason),
            escape(d.metric),
            f"{_fmt_optional(d.value)}/{_plain(d.target)}",
            _fmt_ratio(d.ratio),
            f"{d.reporting}/{d.missing}/{d.not_ready}",
        )
    return table


def _migrations_table(migrations: tuple[MigrationRow, ...]) -> Table:
    table = Table("moved (UTC)", "replica", "from node", "to node", "from contract",
                  "to contract", "reason", title="migrations")  # fmt: skip
    for m in migrations:
        table.add_row(
            _when(m.moved_at),
            m.replica_id,
            m.from_node_id,
            m.to_node_id,
            m.from_contract_id,
            m.to_contract_id,
            escape(m.reason),
        )
    return table


def _ended_table(replicas: tuple[ReplicaRow, ...]) -> Table:
    table = Table("contract", "node", "farm", "started (UTC)", "ended (UTC)", "reason",
                  "uptime/SLA", "SLA", "penalty", title="ended contracts")  # fmt: skip
    for r in replicas:
        sla = r.sla
        table.add_row(
            r.contract_id,
            r.node_id,
            r.farm_id,
            _when(r.started_at),
            _when(r.ended_at) if r.ended_at is not None else "-",
            escape(r.end_reason or ""),
            f"{_plain(sla.uptime_pct)}%/{_plain(sla.promised_pct)}%" if sla else "-",
            ("[green]met[/]" if sla.met else "[red]missed[/]") if sla else "-",
            fmt_money(sla.penalty) if sla else "-",
        )
    return table


def _print_workload(row: WorkloadRow) -> None:
    for line in _spec_lines(row):
        console.print(line)
    if row.live:
        console.print(_replicas_table(row.live))
        if any(r.placement for r in row.live):
            console.print(_scores_table(row.live))
    else:
        console.print("no live replicas")
    if row.decisions:
        console.print(_decisions_table(row))
    if row.migrations:
        console.print(_migrations_table(row.migrations))
    if row.ended:
        console.print(_ended_table(row.ended))


@app.command("show")
def show_workload(
    ref: WorkloadRef,
    decisions: Annotated[
        int, typer.Option("--decisions", min=0, help="how many of the latest decisions to show")
    ] = DECISIONS_KEPT,
    data_dir: DataDir = None,
    as_of: AsOfOption = None,
    as_json: AsJson = False,
) -> None:
    """One workload: spec, replicas and their placement, decisions, migrations, ended ones."""
    row = find_workload(load_workloads(data_dir, decisions, as_of), ref)
    if as_json:
        print_json({"ref": row.ref, "grids": json_ready(row.grids), **json_ready(row)})
        return
    _print_workload(row)
