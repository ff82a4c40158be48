"""``hero simulate compare``: several scenarios run with the same seed and days, each into a
directory of its own, and one ``compare.json`` (and ``compare.html``) with their headline
figures side by side: what changing a rule (the split, the pricing policy, the farmers'
approval mix, the negotiator) did to farmers, offtakers, the pool and ThreeFold.
"""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from hero.simulate.fleet import build_fleet
from hero.simulate.run import Simulated, check_run, simulate
from hero.simulate.scenario import ScenarioError, SimScenario

__all__ = ["COMPARE_NAME", "FIGURES", "compare", "compare_row"]

COMPARE_NAME = "compare.json"
#: The figures compared, each a path into ``report.json``.
FIGURES: dict[str, tuple[str, ...]] = {
    "contracts": ("contracts", "created"),
    "billed_usd": ("money", "billed_usd"),
    "farmers_tft": ("money", "farmers_tft"),
    "pool_tft": ("money", "pool_tft"),
    "threefold_tft": ("money", "threefold_tft"),
    "tft_bought": ("money", "treasury", "tft_bought"),
    "farmer_income_usd": ("farmers", "proof_of_capacity", "earned_usd"),
    "vs_proof_of_capacity": ("farmers", "proof_of_capacity", "ratio"),
    "earning_farms": ("farmers", "earning_farms"),
    "sla_breaches": ("sla", "breaches"),
    "sla_penalties_usd": ("sla", "penalties_usd"),
    "sla_refunded_tft": ("sla", "refunded_tft"),
    "ledger_balanced": ("money", "ledger", "balanced"),
}


def _at(report: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = report
    for key in path:
        value = value[key]
    return value


def compare_row(report: dict[str, Any]) -> dict[str, Any]:
    """One scenario's headline figures, as ``report.json`` has them."""
    row = {name: _at(report, path) for name, path in FIGURES.items()}
    declines = report["contracts"]["declines_by_reason"]
    row["declines"] = sum(declines.values())
    row["scenario"] = report["scenario"]
    return row


def _check(scenarios: list[SimScenario]) -> None:
    if len(scenarios) < 2:
        raise ScenarioError("compare needs two scenarios or more")
    names = [s.name for s in scenarios]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ScenarioError(f"compared scenarios need distinct names, repeated: {doubled}")


def _html(rows: list[dict[str, Any]], days: int, seed: int) -> str:
    names = [row["scenario"] for row in rows]
    figure = go.Figure()
    for figure_name in ("farmer_income_usd", "billed_usd"):
        figure.add_bar(x=names, y=[float(Decimal(r[figure_name])) for r in rows], name=figure_name)
    figure.update_layout(title="Farmer income and billed USD", barmode="group", height=420)
    shares = go.Figure()
    for part in ("farmers_tft", "pool_tft", "threefold_tft"):
        shares.add_bar(x=names, y=[float(Decimal(r[part])) for r in rows], name=part)
    shares.update_layout(title="Bills shared (TFT)", barmode="stack", height=420)
    plots = [
        figure.to_html(full_html=False, include_plotlyjs=True, div_id="plot-income"),
        shares.to_html(full_html=False, include_plotlyjs=False, div_id="plot-shares"),
    ]
    header = "".join(f"<th>{name}</th>" for name in names)
    body = "".join(
        f"<tr><th>{key}</th>" + "".join(f"<td>{row[key]}</td>" for row in rows) + "</tr>"
        for key in [*FIGURES, "declines"]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>hero simulate compare</title><style>body{font-family:sans-serif;margin:1.5rem}"
        "td,th{padding:.2rem .6rem;text-align:right}</style></head><body>"
        f"<h1>hero simulate compare</h1><p>{days} simulated days, seed {seed}</p>"
        f"<table><tr><th></th>{header}</tr>{body}</table>" + "\n".join(plots) + "</body></html>\n"
    )


def compare(
    scenarios: list[SimScenario], *, days: int, seed: int, out: Path
) -> tuple[dict[str, Any], list[Simulated]]:
    """Each scenario into ``out/<name>/``, then ``out/compare.json`` and ``compare.html``."""
    _check(scenarios)
    for scenario in scenarios:  # every one checked before the first writes anything
        check_run(days, out / scenario.name, "memory")
        build_fleet(scenario, random.Random(seed))
    runs = [simulate(s, days=days, seed=seed, out=out / s.name) for s in scenarios]
    rows = [compare_row(run.report) for run in runs]
    summary = {"days": days, "seed": seed, "scenarios": rows}
    (out / COMPARE_NAME).write_text(json.dumps(summary, sort_keys=True, indent=2) + "\n")
    (out / "compare.html").write_text(_html(rows, days, seed), encoding="utf-8")
    return summary, runs
