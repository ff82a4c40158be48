"""The ``hero`` command line.

A process: the outermost layer. See docs/architecture.md for the layers and the flow of one command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hero.cli import (
    accounts,
    billing,
    demo_command,
    dlq,
    events,
    fleet,
    grids,
    keys,
    listings,
    payments,
    policies,
    price,
    replay,
    simulate_command,
    stack,
    tailing,
    utilization,
    workloads,
)
from hero.cli import compile as compile_commands  # noqa: F401  (registers them on policies' groups)
from hero.cli import moves as move_commands  # noqa: F401  (registers negotiations show)
from hero.cli import skipped as skipped_module
from hero.cli import store as store_cli
from hero.cli.common import console
from schemas import REGISTRY

__all__ = ["app", "main"]

app = typer.Typer(
    name="hero",
    help="HERO, the agentic layer of the ThreeFold Grid.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
schemas_app = typer.Typer(help="The event and command catalogue.", no_args_is_help=True)

app.command("up")(stack.up)
app.command("down")(stack.down)
app.command("status")(stack.status)
app.command("config")(stack.config)
app.command("tail")(tailing.tail_command)
app.command("demo")(demo_command.demo)
app.add_typer(simulate_command.simulate_app, name="simulate")
app.command("price")(price.price)
app.command("replay")(replay.replay)
events.app.command("skipped")(skipped_module.skipped)
app.add_typer(events.app, name="events")
app.add_typer(schemas_app, name="schemas")
app.add_typer(policies.farmer_app, name="farmer")
app.add_typer(policies.offtaker_app, name="offtaker")
app.add_typer(listings.contracts_app, name="contracts")
app.add_typer(listings.nodes_app, name="nodes")
app.add_typer(listings.negotiations_app, name="negotiations")
app.add_typer(fleet.fleet_app, name="fleet")
app.add_typer(accounts.accounts_app, name="accounts")
app.add_typer(payments.payments_app, name="payments")
app.add_typer(billing.billing_app, name="billing")
app.add_typer(grids.app, name="grids")
app.add_typer(utilization.app, name="utilization")
app.add_typer(utilization.usage_app, name="usage")
app.add_typer(workloads.app, name="workloads")
app.add_typer(keys.app, name="keys")
app.add_typer(dlq.app, name="dlq")
app.add_typer(store_cli.app, name="store")


@schemas_app.command("export")
def export_schemas(
    directory: Annotated[Path, typer.Argument(help="where to write TYPE.json files")],
) -> None:
    """Write one JSON Schema file per event and command type."""
    import json

    directory.mkdir(parents=True, exist_ok=True)
    schemas = REGISTRY.json_schemas()
    for name, schema in schemas.items():
        (directory / f"{name}.json").write_text(json.dumps(schema, indent=2) + "\n")
    console.print(f"wrote {len(schemas)} schemas to {directory}")


@schemas_app.command("list")
def list_schemas() -> None:
    """List every type with its kind, topic and version."""
    for entry in REGISTRY.entries():
        console.print(f"{entry.type:28} {entry.kind:8} {entry.topic.value:20} v{entry.version}")


def main() -> None:
    app()
