"""``hero fleet create``: register a generated fleet of farms, nodes and policies."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hero.cli.common import (
    AsJson,
    DataDir,
    console,
    fail,
    print_json,
)
from hero.cli.market import (
    load_report,
    opened_store,
    send,
)
from hero.market.fleet import generate_fleet
from hero.market.service import MarketService, farm_stream
from hero.market.views import (
    json_ready,
)
from hero.store import (
    EventStore,
)
from schemas import (
    Command,
    RegisterFarm,
    RegisterNode,
)

__all__ = ["fleet_app"]

fleet_app = typer.Typer(help="Generated fleets of farms and nodes.", no_args_is_help=True)


# -- hero fleet create ----------------------------------------------------------------------------


def _foreign_farms(store: EventStore, commands: list[Command]) -> list[str]:
    """Farms of this fleet already registered by something else (another seed, say)."""
    return [
        c.farm_id
        for c in commands
        if isinstance(c, RegisterFarm)
        and store.stream_version(farm_stream(c.farm_id)) > 0
        and store.command_result(farm_stream(c.farm_id), c.command_id) is None
    ]


@fleet_app.command("create")
def fleet_create(
    seed: Annotated[int, typer.Option(help="the same seed gives the same fleet")] = 1,
    farms: Annotated[int, typer.Option(min=1, max=9999, help="how many farms")] = 12,
    nodes_min: Annotated[int, typer.Option(min=1, max=99, help="fewest nodes per farm")] = 1,
    nodes_max: Annotated[int, typer.Option(min=1, max=99, help="most nodes per farm")] = 4,
    grid3_share: Annotated[float, typer.Option(min=0, max=1, help="share of Grid 3 farms")] = 0.6,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Register a generated fleet (farms, nodes, policies); running it again writes nothing."""
    if nodes_max < nodes_min:
        fail(f"--nodes-max ({nodes_max}) is below --nodes-min ({nodes_min})")
    commands = generate_fleet(
        seed, farms=farms, nodes_per_farm=(nodes_min, nodes_max), grid3_share=grid3_share
    )
    with opened_store(data_dir) as store:
        foreign = _foreign_farms(store, commands)
        if foreign:
            fail(
                f"{len(foreign)} farm id(s) of this fleet are registered already by another "
                f"fleet ({', '.join(foreign[:3])}{'...' if len(foreign) > 3 else ''}); "
                "nothing was written"
            )
        service = MarketService(store)
        written = sum(0 if send(store, c, service).duplicate else 1 for c in commands)
        report = load_report(store)
    ids = {c.farm_id for c in commands if isinstance(c, RegisterFarm)}
    rows = [f for f in report.farms if f.farm_id in ids]
    nodes = sum(1 for c in commands if isinstance(c, RegisterNode))
    summary = {"seed": seed, "farms": len(rows), "nodes": nodes, "commands": len(commands),
               "written": written, "already_applied": len(commands) - written}  # fmt: skip
    if as_json:
        print_json({**summary, "fleet": [json_ready(f) for f in rows]})
        return
    table = Table("farm", "name", "grid", "region", "country", "certified", "nodes", "mode")
    for f in rows:
        mode = f.mode.value if f.mode else "-"
        table.add_row(f.farm_id, f.name, f.grid.value, f.region, f.country,
                      "yes" if f.certified else "", str(f.nodes), mode)  # fmt: skip
    console.print(table)
    note = "" if written else " (already there: nothing written)"
    console.print(
        f"fleet seed {seed}: {len(rows)} farms, {nodes} nodes, {len(rows)} policies; "
        f"{written} of {len(commands)} commands written{note}"
    )
