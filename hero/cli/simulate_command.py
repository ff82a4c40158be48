"""``hero simulate``: the command only; the market twin itself is :mod:`hero.simulate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape

from hero.cli.common import console, errors, fail
from hero.simulate import ScenarioError, load_scenario, simulate

__all__ = ["simulate_command"]


def simulate_command(
    scenario: Annotated[Path, typer.Option("--scenario", help="the scenario, a YAML or JSON file")],
    out: Annotated[Path, typer.Option("--out", help="directory for report.json")],
    days: Annotated[int, typer.Option(help="simulated days")] = 7,
    seed: Annotated[int, typer.Option(help="the one random source's seed")] = 1,
    store: Annotated[
        str, typer.Option(help="event store: memory, or sqlite (OUT/events.sqlite)")
    ] = "memory",
    quiet: Annotated[bool, typer.Option(help="no progress on stderr")] = False,
) -> None:
    """Run the real market (agents, market rules, billing, treasury, ledger) on a simulated
    grid and a manual clock, as the scenario says, and write OUT/report.json: utilization,
    prices, contracts and declines, scaling, SLA, farmer revenue, the money. Same seed, same
    bytes."""
    kind: Literal["memory", "sqlite"]
    if store == "memory":
        kind = "memory"
    elif store == "sqlite":
        kind = "sqlite"
    else:
        fail(f"--store must be memory or sqlite, got {escape(store)!r}")
    try:
        story = load_scenario(scenario)
        done = simulate(
            story, days=days, seed=seed, out=out, store=kind, progress=None if quiet else errors
        )
    except ScenarioError as error:
        fail(escape(str(error)))
    money, checks = done.report["money"], done.report["checks"]
    console.print(
        f"[bold green]simulated[/] {days} days of {escape(story.name)} (seed {seed}): "
        f"{done.report['contracts']['created']} contracts, {money['bills']} bills, ledger "
        f"{'balanced' if money['ledger']['balanced'] else 'NOT balanced'}, "
        f"{len(checks['overcommitted_nodes'])} over-committed nodes; "
        f"{done.events:,} events in {done.wall_s:.1f} s ({done.events_per_s:,.0f} events/s, "
        f"{done.speed_up:,.0f}x real time) -> {escape(str(done.report_path))}"
    )
