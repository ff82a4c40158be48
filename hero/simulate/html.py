"""``report.html``: the figures of ``report.json`` as plots a person can read, in one file
that opens offline (plotly, its JavaScript inlined once). Made from the report itself, so
the page shows exactly what the JSON says; the element ids are fixed, so the same report
gives the same page.
"""

from __future__ import annotations

import html
from decimal import Decimal
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["PLOTS", "render_html"]

#: The page's plots, by element id, in order.
PLOTS = ("utilization", "prices", "contracts", "scaling", "farmers", "money")


def _f(value: str | None) -> float | None:
    return None if value is None else float(Decimal(value))


def _utilization(report: dict[str, Any]) -> go.Figure:
    hours = [row["hour"] for row in report["utilization"]]
    figure = go.Figure()
    for grid in ("grid3", "grid4"):
        shares = [_f(row["committed_cu_share"][grid]) for row in report["utilization"]]
        figure.add_scatter(x=hours, y=shares, mode="lines", name=f"{grid} committed CU share")
    live = [row["live_contracts"] for row in report["utilization"]]
    figure.add_scatter(x=hours, y=live, mode="lines", name="live contracts", yaxis="y2")
    figure.update_layout(
        title="Utilization per grid (committed share of CUs) and live contracts, by hour",
        xaxis_title="simulated hour",
        yaxis={"title": "share", "range": [0, 1]},
        yaxis2={"title": "contracts", "overlaying": "y", "side": "right"},
    )
    return figure


def _prices(report: dict[str, Any]) -> go.Figure:
    days = [row["day"] for row in report["prices"]]
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    for key, name in (
        ("mean_usd_per_cu_hour", "mean USD per CU-hour of new contracts"),
        ("min_usd_per_cu_hour", "min"),
        ("max_usd_per_cu_hour", "max"),
    ):
        values = [_f(row[key]) for row in report["prices"]]
        figure.add_scatter(x=days, y=values, mode="lines+markers", name=name)
    rates = [_f(row["tft_per_usd"]) for row in report["prices"]]
    figure.add_scatter(
        x=days, y=rates, mode="lines", name="TFT per USD", secondary_y=True, line={"dash": "dot"}
    )
    figure.update_layout(title="Price per CU-hour and the TFT price, by day")
    figure.update_xaxes(title_text="simulated day")
    figure.update_yaxes(title_text="USD per CU-hour", secondary_y=False)
    figure.update_yaxes(title_text="TFT per USD", secondary_y=True)
    return figure


def _bars(title: str, groups: dict[str, dict[str, int]]) -> go.Figure:
    figure = go.Figure()
    for name, counts in groups.items():
        figure.add_bar(x=list(counts), y=list(counts.values()), name=name)
    figure.update_layout(title=title, barmode="group", yaxis_title="count")
    return figure


def _farmers(report: dict[str, Any]) -> go.Figure:
    farms = sorted(
        report["farmers"]["farms"], key=lambda f: (-Decimal(f["total_usd"]), f["farm_id"])
    )
    ids = [f["farm_id"] for f in farms]
    figure = go.Figure()
    figure.add_bar(x=ids, y=[_f(f["total_usd"]) for f in farms], name="farmer revenue (USD)")
    figure.add_scatter(
        x=ids,
        y=[_f(f["reference_usd"]) for f in farms],
        mode="markers",
        name="proof-of-capacity reference (USD)",
    )
    figure.update_layout(
        title="Each farm's revenue over the run against the proof-of-capacity reference",
        xaxis_title="farm, highest revenue first",
        yaxis_title="USD",
    )
    return figure


def _money(report: dict[str, Any]) -> go.Figure:
    money = report["money"]
    figure = make_subplots(
        rows=1, cols=2, specs=[[{"type": "domain"}, {"type": "xy"}]],
        subplot_titles=("Bills shared (TFT)", "Offtaker spend against budget (USD)"),
    )  # fmt: skip
    figure.add_pie(
        labels=["farmers", "farming pool", "ThreeFold"],
        values=[_f(money[k]) for k in ("farmers_tft", "pool_tft", "threefold_tft")],
        row=1,
        col=1,
        sort=False,
    )
    offtakers = money["offtakers"]
    ids = [o["offtaker_id"] for o in offtakers]
    figure.add_bar(x=ids, y=[_f(o["spent_usd"]) for o in offtakers], name="spent", row=1, col=2)
    figure.add_bar(x=ids, y=[_f(o["budget_usd"]) for o in offtakers], name="budget", row=1, col=2)
    figure.update_layout(title="The money", barmode="group")
    return figure


def _figures(report: dict[str, Any]) -> list[go.Figure]:
    contracts, scaling = report["contracts"], report["scaling"]
    return [
        _utilization(report),
        _prices(report),
        _bars(
            "Contracts ended and declines, by reason",
            {"ended": contracts["ended_by_reason"], "declined": contracts["declines_by_reason"]},
        ),
        _bars(
            "Scaling decisions and migrations, by reason",
            {
                "decisions": scaling["decisions_by_reason"],
                "migrations": scaling["migrations_by_reason"],
            },
        ),
        _farmers(report),
        _money(report),
    ]


def _summary(report: dict[str, Any]) -> str:
    money, farmers, sla = report["money"], report["farmers"], report["sla"]
    poc = farmers["proof_of_capacity"]
    items = [
        f"{report['contracts']['created']} contracts, {money['bills']} hourly bills "
        f"({money['billed_usd']} USD, {money['billed_tft']} TFT)",
        f"treasury bought {money['treasury']['tft_bought']} TFT for "
        f"{money['treasury']['fiat_usd']} USD",
        f"SLA: {sla['outcomes']} outcomes ({sla['hours_down']} hours down), "
        f"{sla['breaches']} breaches, {sla['penalties_usd']} USD in penalties, "
        f"{sla['refunded_tft']} TFT refunded",
        f"farmers earned {poc['earned_usd']} USD against a proof-of-capacity reference of "
        f"{poc['reference_usd']} USD (ratio {poc['ratio']})",
        f"ledger {'balanced' if money['ledger']['balanced'] else 'NOT balanced'}; "
        f"over-committed nodes: {len(report['checks']['overcommitted_nodes'])}",
    ]
    return "".join(f"<li>{html.escape(item)}</li>" for item in items)


def render_html(report: dict[str, Any]) -> str:
    """The whole page; plotly's JavaScript is inlined with the first plot."""
    parts = []
    for index, (name, figure) in enumerate(zip(PLOTS, _figures(report), strict=True)):
        figure.update_layout(template="plotly_white", height=460)
        parts.append(
            figure.to_html(
                full_html=False,
                include_plotlyjs=index == 0,
                div_id=f"plot-{name}",
                config={"displaylogo": False, "responsive": True},
            )
        )
    title = html.escape(f"hero simulate: {report['scenario']}")
    head = html.escape(
        f"{report['days']} simulated days from {report['start']}, seed {report['seed']}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title>"
        "<style>body{font-family:sans-serif;margin:1.5rem auto;max-width:1200px}</style>"
        f"</head><body><h1>{title}</h1><p>{head}</p><ul>{_summary(report)}</ul>"
        + "\n".join(parts)
        + "</body></html>\n"
    )
