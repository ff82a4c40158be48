"""What the market holds: ``hero contracts|nodes|negotiations list`` (with ``--as-of``), and
``hero nodes status``, which marks a node up, down or standby.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from hero.cli.common import (
    AsJson,
    AsOfOption,
    DataDir,
    checked_id,
    console,
    fail,
    print_json,
    settings_for,
)
from hero.cli.market import (
    market_report,
    opened_store,
    send,
    show_rows,
)
from hero.cli.tables import (
    contracts_table,
    negotiations_table,
    nodes_table,
)
from hero.market.service import MarketService
from schemas import (
    ChangeNodeStatus,
    NodeStatus,
    new_id,
)
from schemas.ids import NodeId

__all__ = ["contracts_app", "negotiations_app", "nodes_app"]

contracts_app = typer.Typer(help="Contracts the market has made.", no_args_is_help=True)
nodes_app = typer.Typer(help="Nodes and their capacity.", no_args_is_help=True)
negotiations_app = typer.Typer(help="Negotiations, from RFQ to award.", no_args_is_help=True)


#: The filters the lists share.
OnlyOfftaker = Annotated[str | None, typer.Option(help="only this offtaker's")]
OnlyFarm = Annotated[str | None, typer.Option(help="only this farm's")]


# -- lists ----------------------------------------------------------------------------------------


@contracts_app.command("list")
def contracts_list(
    offtaker: OnlyOfftaker = None,
    farm: OnlyFarm = None,
    data_dir: DataDir = None,
    as_of: AsOfOption = None,
    as_json: AsJson = False,
) -> None:
    """Live contracts (created, not cancelled)."""
    report = market_report(data_dir, as_of, farm)
    contracts = [
        c
        for c in report.contracts
        if (offtaker is None or c.offtaker_id == offtaker) and (farm is None or c.farm_id == farm)
    ]
    show_rows(contracts, as_json, "no contracts", contracts_table)


@nodes_app.command("list")
def nodes_list(
    farm: OnlyFarm = None,
    data_dir: DataDir = None,
    as_of: AsOfOption = None,
    as_json: AsJson = False,
) -> None:
    """Nodes with their capacity: total, held by offers, committed to contracts, free."""
    report = market_report(data_dir, as_of, farm)
    nodes = [n for n in report.nodes if farm is None or n.farm_id == farm]
    show_rows(nodes, as_json, "no nodes", nodes_table)


@nodes_app.command("status")
def nodes_status(
    node: Annotated[str, typer.Argument(help="the node id", callback=checked_id(NodeId))],
    status: Annotated[NodeStatus, typer.Argument(help="up, down or standby")],
    reason: Annotated[str, typer.Option(help="why, recorded with the change")] = "by hand",
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Mark a node up, down or standby. Down or standby: its offers' holds are released and
    the offtakers move its replicas elsewhere, then end its contracts with the SLA outcome."""
    pricing = settings_for(data_dir).pricing()
    with opened_store(data_dir) as store:
        command = ChangeNodeStatus(
            command_id=new_id("cli-status"), node_id=node, status=status, reason=reason
        )
        result = send(store, command, MarketService(store, pricing=pricing))
    changed = bool(result.events)
    if as_json:
        print_json({"node_id": node, "status": status.value, "changed": changed})
        return
    console.print(
        f"node {escape(node)} is {status.value}" + ("" if changed else " already: nothing recorded")
    )


@negotiations_app.command("list")
def negotiations_list(
    offtaker: OnlyOfftaker = None,
    status: Annotated[str | None, typer.Option(help="open, awarded, failed or expired")] = None,
    data_dir: DataDir = None,
    as_of: AsOfOption = None,
    as_json: AsJson = False,
) -> None:
    """Negotiations with their status, offers, declines and contracts."""
    if status is not None and status not in ("open", "awarded", "failed", "expired"):
        fail(f"--status must be open, awarded, failed or expired, not {status!r}")
    report = market_report(data_dir, as_of)
    rows = [
        n
        for n in report.negotiations
        if (offtaker is None or n.offtaker_id == offtaker)
        and (status is None or n.status == status)
    ]
    show_rows(rows, as_json, "no negotiations", negotiations_table)
