"""How the CLI prints the market: money, resources, times, and the tables of its rows."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from rich.table import Table

from hero.market.views import (
    ContractRow,
    NegotiationRow,
    NodeRow,
    OfferRow,
)
from schemas import (
    Money,
    Resources,
)

__all__ = [
    "approvals_table",
    "contracts_table",
    "fmt_count",
    "fmt_gb",
    "fmt_in",
    "fmt_money",
    "fmt_resources",
    "fmt_when",
    "negotiations_table",
    "nodes_table",
]


def fmt_money(money: Money) -> str:
    amount = money.amount.normalize()
    if amount == amount.to_integral_value():
        amount = amount.quantize(Decimal("0.01"))
    return f"{amount:f} {money.currency.value}"


def fmt_gb(amount: Decimal) -> str:
    value = amount.quantize(Decimal("0.1")).normalize()
    return f"{value:f}"


def fmt_resources(resources: Resources) -> str:
    text = (
        f"{resources.cru} vCPU, {fmt_gb(resources.mru_gb)} GB RAM, "
        f"{fmt_gb(resources.sru_gb)} GB SSD"
    )
    if resources.hru:
        text += f", {fmt_gb(resources.hru_gb)} GB HDD"
    if resources.ipv4:
        text += f", {resources.ipv4} IPv4"
    return text


def fmt_count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def fmt_when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def fmt_in(moment: datetime, now: datetime) -> str:
    seconds = int((moment - now).total_seconds())
    if seconds <= 0:
        return "expired"
    if seconds < 120:
        return f"in {seconds} s"
    return f"in {seconds // 60} min"


def contracts_table(contracts: list[ContractRow], title: str | None = None) -> Table:
    table = Table(
        "offtaker", "workload", "farm", "node", "grid", "resources", "price/h", "term", "SLA",
        title=title,
    )  # fmt: skip
    for c in contracts:
        table.add_row(
            c.offtaker_id,
            c.workload_id,
            c.farm_id,
            c.node_id,
            c.grid.value,
            fmt_resources(c.resources),
            fmt_money(c.price_hour),
            f"{c.term_hours} h",
            f"{c.sla.uptime_pct}% ({c.sla.penalty_pct}% back)",
        )
    return table


def nodes_table(nodes: list[NodeRow]) -> Table:
    table = Table("node", "farm", "grid", "region", "status", "vCPU free/total",
                  "RAM GB free/total", "SSD GB free/total", "holds", "contracts")  # fmt: skip
    for n in nodes:
        table.add_row(
            n.node_id,
            n.farm_id,
            n.grid.value,
            n.region,
            n.status.value,
            f"{n.free.cru}/{n.total.cru}",
            f"{fmt_gb(n.free.mru_gb)}/{fmt_gb(n.total.mru_gb)}",
            f"{fmt_gb(n.free.sru_gb)}/{fmt_gb(n.total.sru_gb)}",
            str(n.holds),
            str(n.contracts),
        )
    return table


def negotiations_table(negotiations: list[NegotiationRow]) -> Table:
    table = Table("negotiation", "offtaker", "workload", "replicas", "status", "offers",
                  "declines", "contracts", "reason")  # fmt: skip
    colours = {"open": "yellow", "awarded": "green", "failed": "red", "expired": "magenta"}
    for n in negotiations:
        table.add_row(
            n.negotiation_id,
            n.offtaker_id,
            n.workload_id,
            str(n.replicas),
            f"[{colours[n.status]}]{n.status}[/]",
            str(n.offers),
            str(n.declines),
            str(len(n.contracts)),
            n.reason,
        )
    return table


def approvals_table(offers: list[OfferRow], now: datetime) -> Table:
    table = Table("offer", "negotiation", "offtaker", "workload", "node", "resources",
                  "price/h", "term", "expires")  # fmt: skip
    for o in offers:
        table.add_row(
            o.offer_id,
            o.negotiation_id,
            o.offtaker_id,
            o.workload_id,
            o.node_id,
            fmt_resources(o.resources),
            fmt_money(o.price_hour),
            f"{o.term_hours} h",
            fmt_in(o.expires_at, now),
        )
    return table
