"""``hero negotiations show NEGO``: a negotiation move by move, with who decided each one.

For an LLM-driven agent each move's event carries a ``StrategyDecision``: the strategy whose
move was taken, the model's rationale, what the guardrails did, and why the rules took over
when they did. Moves that led to no event of their own (an offer declined by the model, an
accept refused over budget) are on the negotiation's close.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from hero.cli.common import AsJson, DataDir, console, fail, print_json
from hero.cli.listings import negotiations_app
from hero.cli.market import opened_store
from hero.domain.negotiation import negotiation_stream

__all__ = ["describe_decision", "negotiation_show"]


def describe_decision(decision: dict[str, Any] | None) -> str:
    """One line: ``llm: rationale [guardrails]`` or ``rule (fallback: why): rationale``."""
    if not decision:
        return ""
    who = str(decision.get("strategy"))
    if decision.get("fallback"):
        who += f" (fallback: {decision['fallback']})"
    text = f"{who}: {decision.get('rationale', '')}".rstrip(": ")
    hits = [f"{h['rule']} {h['outcome']}" for h in decision.get("guardrails") or []]
    if hits:
        text += f" [{', '.join(hits)}]"
    return text


def _what(payload: dict[str, Any]) -> str:
    """The move's object in a few words: offer or farm, node, price, reasons."""
    keys = ("offer_id", "node_id") if payload.get("offer_id") else ("farm_id", "node_id")
    parts = [str(payload[key]) for key in keys if payload.get(key)]
    price = payload.get("price_hour")
    if isinstance(price, dict):
        parts.append(f"{price.get('amount')} {price.get('currency')}/h")
    parts += [",".join(payload.get("reasons") or []), str(payload.get("reason") or "")]
    return " ".join(part for part in parts if part)


@negotiations_app.command("show")
def negotiation_show(
    negotiation: Annotated[str, typer.Argument(help="the negotiation's id")],
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """A negotiation's events in order, with the strategy that decided each move and why."""
    with opened_store(data_dir) as store:
        rows = store.read_stream(negotiation_stream(negotiation))
    if not rows:
        fail(f"no negotiation {negotiation!r}")
    envelopes = [row.envelope() for row in rows]
    if as_json:
        print_json(
            [
                {
                    "version": e.version,
                    "recorded_at": e.recorded_at.isoformat(),
                    "type": e.type,
                    "actor": e.actor,
                    "payload": e.payload,
                }
                for e in envelopes
            ]
        )
        return
    table = Table("#", "at", "event", "by", "what", "decided by")
    for e in envelopes:
        notes = [e.payload.get("decision"), *(e.payload.get("decisions") or [])]
        decided = "\n".join(describe_decision(n) for n in notes if n)
        table.add_row(
            str(e.version),
            e.recorded_at.strftime("%H:%M:%S.%f")[:-3],
            e.type,
            escape(e.actor or ""),
            escape(_what(e.payload)),
            escape(decided),
        )
    console.print(table)
