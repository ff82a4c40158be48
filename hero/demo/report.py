"""What the demo prints: the contracts and declines of the run, its summary line, and the
whole outcome as JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

from hero.cli.common import console as stdout
from hero.cli.common import print_json
from hero.cli.tables import contracts_table
from hero.demo.agents import Agents
from hero.demo.scaling_report import Scaling
from hero.demo.scenario import Scenario
from hero.demo.settle import Outcome, our_negotiations
from hero.market.views import ContractRow, DeclineRow, json_ready
from schemas import Money

if TYPE_CHECKING:
    from hero.demo.money import Payments

__all__ = [
    "contracts_of",
    "declines_of",
    "declines_table",
    "print_market",
    "print_outcome_json",
    "summarise",
    "summary_line",
]


def declines_table(declines: list[DeclineRow]) -> Table:
    table = Table("offtaker", "workload", "farm", "reasons", "detail", title="declines")
    for d in declines:
        reasons = ", ".join(r.value for r in d.reasons)
        detail = d.detail if len(d.detail) <= 60 else d.detail[:59] + "…"
        table.add_row(d.offtaker_id, d.workload_id, d.farm_id, f"[red]{reasons}[/]", detail)
    return table


def summarise(
    outcome: Outcome,
    story: Scenario,
    agents: Agents,
    scaling: Scaling | None,
    payments: Payments | None,
) -> dict[str, Any]:
    report = outcome.report
    contracts = [c for c in report.contracts if c.offtaker_id in story.offtakers]
    declines = [d for d in report.declines if d.offtaker_id in story.offtakers]
    ours = our_negotiations(report, story)
    spend = sum((c.price_hour for c in contracts), Money.zero("USD"))
    return {
        "settled": outcome.settled,
        "offtakers": len(story.offtakers),
        "replicas": story.replicas,
        "contracts": len(contracts),
        "farms": len({c.farm_id for c in contracts}),
        "declines": len(declines),
        "approvals": len(outcome.approvals),
        "negotiations": len(ours),
        "open": sum(1 for n in ours if not n.closed),
        "spend_hour": spend,
        "seconds": round(outcome.seconds, 2),
        "agents": f"{agents.description}, {len(report.farms) + len(report.mandates)} agents",
        **({"scaling": scaling.summary()} if scaling is not None else {}),
        **(payments.summary() if payments is not None else {}),
    }


def summary_line(summary: dict[str, Any]) -> str:
    return (
        f"{summary['contracts']} contracts on {summary['farms']} farms for "
        f"{summary['offtakers']} offtakers, {summary['declines']} declines, "
        f"{summary['approvals']} approvals; {summary['negotiations']} negotiations settled in "
        f"{summary['seconds']:.1f} s ({summary['agents']})"
    )


def contracts_of(outcome: Outcome, story: Scenario) -> list[ContractRow]:
    return sorted(
        (c for c in outcome.report.contracts if c.offtaker_id in story.offtakers),
        key=lambda c: (c.offtaker_id, c.workload_id, c.farm_id, c.node_id),
    )


def declines_of(outcome: Outcome, story: Scenario) -> list[DeclineRow]:
    return sorted(
        (d for d in outcome.report.declines if d.offtaker_id in story.offtakers),
        key=lambda d: (d.offtaker_id, d.workload_id, d.farm_id),
    )


def print_market(outcome: Outcome, story: Scenario) -> None:
    stdout.print(contracts_table(contracts_of(outcome, story), title="contracts"))
    stdout.print(declines_table(declines_of(outcome, story)))


def print_outcome_json(
    outcome: Outcome,
    story: Scenario,
    summary: dict[str, Any],
    scaling: Scaling | None,
    payments: Payments | None,
) -> None:
    document: dict[str, Any] = {
        "run": story.tag,
        "summary": summary,
        "contracts": contracts_of(outcome, story),
        "declines": declines_of(outcome, story),
        "approvals": outcome.approvals,
        "negotiations": our_negotiations(outcome.report, story),
    }
    if scaling is not None:
        document["scaling"] = scaling.document()
    if payments is not None:
        document["payments"] = {
            "treasury": payments.treasury,
            "top_ups": payments.top_ups,
            "bills": payments.bills,
            "balances": payments.balances,
            "suspended": payments.report.suspended,
            "low_balance": payments.report.low_balance,
            "sla_penalties": payments.report.sla_penalties,
            "unbilled": payments.unbilled,
        }
    print_json(json_ready(document))
