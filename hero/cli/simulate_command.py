"""``hero simulate`` and ``hero simulate compare``: the commands only; the market twin itself
is :mod:`hero.simulate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape

from hero.cli.common import console, errors, fail
from hero.simulate import ScenarioError, load_scenario, simulate
from hero.simulate.compare import COMPARE_NAME, compare

__all__ = ["simulate_app"]

simulate_app = typer.Typer(invoke_without_command=True)

Days = Annotated[int, typer.Option(help="simulated days")]
Seed = Annotated[int, typer.Option(help="the one random source's seed")]


@simulate_app.callback()
def simulate_command(
    ctx: typer.Context,
    scenario: Annotated[
        Path | None, typer.Option("--scenario", help="the scenario, a YAML or JSON file")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="directory for report.json and report.html")
    ] = None,
    days: Days = 7,
    seed: Seed = 1,
    store: Annotated[
        str, typer.Option(help="event store: memory, or sqlite (OUT/events.sqlite)")
    ] = "memory",
    quiet: Annotated[bool, typer.Option(help="no progress on stderr")] = False,
) -> None:
    """Run the real market (agents, market rules, billing, treasury, ledger) on a simulated
    grid and a manual clock, as the scenario says, and write OUT/report.json and
    OUT/report.html: utilization, prices, contracts and declines, scaling, SLA, farmer revenue,
    the money. Same seed, same bytes."""
    if ctx.invoked_subcommand is not None:
        return
    if scenario is None or out is None:
        fail("hero simulate needs --scenario FILE and --out DIR (or: hero simulate compare)")
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


@simulate_app.command("compare")
def compare_command(
    scenarios: Annotated[list[Path], typer.Argument(help="two scenario files or more")],
    out: Annotated[Path, typer.Option("--out", help="directory for compare.json and the runs")],
    days: Days = 7,
    seed: Seed = 1,
) -> None:
    """Run each scenario with the same seed and days (each into OUT/NAME/) and write
    OUT/compare.json and OUT/compare.html with their headline figures side by side."""
    try:
        stories = [load_scenario(path) for path in scenarios]
        summary, _ = compare(stories, days=days, seed=seed, out=out)
    except ScenarioError as error:
        fail(escape(str(error)))
    for row in summary["scenarios"]:
        console.print(
            f"{escape(row['scenario'])}: {row['contracts']} contracts, farmers "
            f"{row['farmer_income_usd']} USD ({row['vs_proof_of_capacity']} of the reference), "
            f"pool {row['pool_tft']} TFT, ThreeFold {row['threefold_tft']} TFT"
        )
    console.print(f"[bold green]compared[/] {len(stories)} scenarios -> {out / COMPARE_NAME}")
