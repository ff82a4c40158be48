"""A farmer's and an offtaker's side: farm policies, offers awaiting approval, mandates.

``hero farmer policy set|approvals|approve|reject`` and ``hero offtaker mandate set``; changes
go through the market's command service, as the agents' do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hero.cli.common import (
    AsJson,
    DataDir,
    checked_id,
    console,
    fail,
    print_json,
)
from hero.cli.market import (
    farm_of_node,
    load_report,
    market_report,
    opened_store,
    read_json,
    send,
    validated,
)
from hero.cli.tables import (
    approvals_table,
    fmt_money,
)
from hero.domain.clock import SystemClock
from hero.market.service import farm_stream
from hero.market.views import (
    MarketReport,
    OfferRow,
    json_ready,
)
from schemas import (
    ApproveOffer,
    FarmerPolicy,
    Grid,
    Mandate,
    PolicyMode,
    RejectOffer,
    SetFarmerPolicy,
    SetOfftakerMandate,
    new_id,
)
from schemas.ids import FarmId, OfftakerId

__all__ = ["describe_policy", "farmer_app", "mandate_app", "offtaker_app", "policy_app"]

farmer_app = typer.Typer(
    help="A farmer's side: policies, offers awaiting approval.", no_args_is_help=True
)
policy_app = typer.Typer(help="The farm's auto-accept policy.", no_args_is_help=True)
farmer_app.add_typer(policy_app, name="policy")
offtaker_app = typer.Typer(help="An offtaker's side: mandates.", no_args_is_help=True)
mandate_app = typer.Typer(help="What the offtaker's agent may buy.", no_args_is_help=True)
offtaker_app.add_typer(mandate_app, name="mandate")


# -- hero farmer policy set -----------------------------------------------------------------------

_POLICY_FLAGS = {
    "mode": "--mode",
    "price_cu_hour": "--price-cu",
    "price_su_hour": "--price-su",
    "markup": "--markup",
    "floor_cu_hour": "--floor-cu",
    "reserve_share": "--reserve-share",
    "max_term_hours": "--max-term-hours",
    "allow_offtakers": "--allow",
    "deny_offtakers": "--deny",
    "min_standing": "--min-standing",
    "regions": "--region",
    "grids": "--grid",
    "sla": "--uptime/--penalty",
    "approval_ttl_s": "--approval-ttl",
}


def _usd(amount: str | None) -> dict[str, str] | None:
    return None if amount is None else {"amount": amount, "currency": "USD"}


def _policy_from_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """The policy fields the flags give (only those given; the model's defaults do the rest)."""
    data: dict[str, Any] = {
        "mode": flags["mode"],
        "price_cu_hour": _usd(flags["price_cu"]),
        "price_su_hour": _usd(flags["price_su"]),
        "markup": flags["markup"],
        "floor_cu_hour": _usd(flags["floor_cu"]),
        "reserve_share": flags["reserve_share"],
        "max_term_hours": flags["max_term_hours"],
        "allow_offtakers": flags["allow"] or None,
        "deny_offtakers": flags["deny"] or None,
        "min_standing": flags["min_standing"],
        "regions": flags["region"] or None,
        "grids": flags["grid"] or None,
        "approval_ttl_s": flags["approval_ttl"],
    }
    if flags["uptime"] is not None or flags["penalty"] is not None:
        data["sla"] = {
            "uptime_pct": flags["uptime"] if flags["uptime"] is not None else "99",
            "penalty_pct": flags["penalty"] if flags["penalty"] is not None else "0",
        }
    return {key: value for key, value in data.items() if value is not None}


def describe_policy(policy: FarmerPolicy) -> str:
    if policy.markup is not None:
        price = f"{policy.markup} x reference"
    else:
        parts = [
            f"{fmt_money(p)}/{unit}-h"
            for p, unit in ((policy.price_cu_hour, "CU"), (policy.price_su_hour, "SU"))
            if p is not None
        ]
        price = " + ".join(parts) or "no price"
    details = [policy.mode.value, price]
    if policy.floor_cu_hour is not None:
        details.append(f"floor {fmt_money(policy.floor_cu_hour)}/CU-h")
    if policy.reserve_share:
        details.append(f"reserve {policy.reserve_share * 100:.0f}%")
    if policy.max_term_hours is not None:
        details.append(f"max term {policy.max_term_hours} h")
    details.append(f"SLA {policy.sla.uptime_pct}%")
    return ", ".join(details)


@policy_app.command("set")
def policy_set(
    farm: Annotated[str, typer.Argument(help="the farm's id", callback=checked_id(FarmId))],
    file: Annotated[
        Path | None, typer.Option("--file", help="the policy as JSON (FarmerPolicy); - for stdin")
    ] = None,
    node: Annotated[str | None, typer.Option(help="for this node of the farm only")] = None,
    mode: Annotated[
        PolicyMode | None, typer.Option(help="answer RFQs by itself, ask, or not at all")
    ] = None,
    price_cu: Annotated[str | None, typer.Option("--price-cu", help="USD per CU-hour")] = None,
    price_su: Annotated[str | None, typer.Option("--price-su", help="USD per SU-hour")] = None,
    markup: Annotated[
        str | None, typer.Option(help="x the reference price, instead of fixed prices")
    ] = None,
    floor_cu: Annotated[
        str | None, typer.Option("--floor-cu", help="never below, USD per CU-hour")
    ] = None,
    reserve_share: Annotated[
        str | None, typer.Option(help="share of each node kept free, 0-1")
    ] = None,
    max_term_hours: Annotated[int | None, typer.Option(help="longest contract term")] = None,
    allow: Annotated[
        list[str] | None, typer.Option(help="serve only these offtakers (repeatable)")
    ] = None,
    deny: Annotated[
        list[str] | None, typer.Option(help="never serve this offtaker (repeatable)")
    ] = None,
    min_standing: Annotated[str | None, typer.Option(help="lowest offtaker standing, 0-1")] = None,
    region: Annotated[list[str] | None, typer.Option(help="serve this region (repeatable)")] = None,
    grid: Annotated[list[Grid] | None, typer.Option(help="serve this grid (repeatable)")] = None,
    uptime: Annotated[str | None, typer.Option(help="promised uptime %")] = None,
    penalty: Annotated[
        str | None, typer.Option(help="% of the bill refunded when it is missed")
    ] = None,
    approval_ttl: Annotated[
        int | None, typer.Option(help="seconds an offer awaits approval")
    ] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Set FARM's policy from a JSON file or from flags; validated before anything is written."""
    given = {
        "mode": mode, "price_cu": price_cu, "price_su": price_su, "markup": markup,
        "floor_cu": floor_cu, "reserve_share": reserve_share, "max_term_hours": max_term_hours,
        "allow": allow, "deny": deny, "min_standing": min_standing, "region": region,
        "grid": grid, "uptime": uptime, "penalty": penalty, "approval_ttl": approval_ttl,
    }  # fmt: skip
    if file is not None and any(v not in (None, []) for v in given.values()):
        fail("give the policy either with --file or with flags, not both")
    data = read_json(file) if file is not None else _policy_from_flags(given)
    flag_names = None if file is not None else _POLICY_FLAGS
    policy: FarmerPolicy = validated(FarmerPolicy, data, f"policy for farm {farm}", flag_names)
    with opened_store(data_dir) as store:
        if store.stream_version(farm_stream(farm)) == 0:
            fail(f"farm {farm} is not registered")
        if node is not None and farm_of_node(store, node) != farm:
            fail(f"node {node} is not a node of farm {farm}")
        send(
            store,
            SetFarmerPolicy(command_id=new_id("cmd"), farm_id=farm, node_id=node, policy=policy),
        )
    if as_json:
        print_json({"farm_id": farm, "node_id": node, "policy": policy.model_dump(mode="json")})
        return
    target = f"node {node} of farm {farm}" if node else f"farm {farm}"
    console.print(f"policy set for {target}: {describe_policy(policy)}")


# -- hero farmer approvals / approve / reject -----------------------------------------------------


def _known_offer(report: MarketReport, offer_id: str) -> OfferRow:
    offer = report.offer(offer_id)
    if offer is None:
        fail(f"offer {offer_id} is not in the log")
    return offer


@farmer_app.command("approvals")
def approvals(
    farm: Annotated[str, typer.Argument(help="the farm's id", callback=checked_id(FarmId))],
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Offers of FARM awaiting the farmer's approval."""
    now = SystemClock().now()
    report = market_report(data_dir, farm=farm)
    pending = [o for o in report.pending_approvals(now) if o.farm_id == farm]
    if as_json:
        print_json([json_ready(o) for o in pending])
        return
    if not pending:
        console.print(f"no offers of farm {farm} await approval")
        return
    console.print(approvals_table(pending, now))


@farmer_app.command("approve")
def approve(
    offer_id: Annotated[str, typer.Argument(metavar="OFFER", help="the offer's id")],
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Approve an offer awaiting approval: it becomes firm, the offtaker may accept it."""
    now = SystemClock().now()
    with opened_store(data_dir) as store:
        offer = _known_offer(load_report(store), offer_id)
        if offer.approved:
            _done(
                as_json,
                offer,
                "approved",
                f"offer {offer_id} was approved already; nothing written",
            )
            return
        if offer.firm:
            fail(f"offer {offer_id} is firm: it does not await approval")
        if offer.status != "open":
            fail(f"offer {offer_id} is {offer.status}: it can no longer be approved")
        if offer.expires_at <= now:
            fail(f"offer {offer_id} expired at {offer.expires_at.isoformat(timespec='seconds')}")
        command = ApproveOffer(
            command_id=f"cli.approve.{offer_id}",
            negotiation_id=offer.negotiation_id,
            offer_id=offer_id,
        )
        send(store, command)
    _done(
        as_json,
        offer,
        "approved",
        f"approved offer {offer_id} of farm {offer.farm_id} at {fmt_money(offer.price_hour)}/h "
        f"(negotiation {offer.negotiation_id}); the offtaker may now accept it",
    )


@farmer_app.command("reject")
def reject(
    offer_id: Annotated[str, typer.Argument(metavar="OFFER", help="the offer's id")],
    reason: Annotated[str, typer.Option(help="why, for the offtaker")] = "rejected by the farmer",
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Withdraw an open offer (one awaiting approval, typically); its hold is released."""
    with opened_store(data_dir) as store:
        offer = _known_offer(load_report(store), offer_id)
        if offer.status != "open":
            fail(f"offer {offer_id} is {offer.status}: only an open offer can be rejected")
        command = RejectOffer(
            command_id=f"cli.reject.{offer_id}",
            negotiation_id=offer.negotiation_id,
            offer_id=offer_id,
            reason=reason,
        )
        send(store, command)
    _done(
        as_json,
        offer,
        "rejected",
        f"rejected offer {offer_id} of farm {offer.farm_id}; "
        f"its hold on {offer.node_id} is released",
    )


def _done(as_json: bool, offer: OfferRow, outcome: str, message: str) -> None:
    if as_json:
        print_json(
            {"offer_id": offer.offer_id, "negotiation_id": offer.negotiation_id, "outcome": outcome}
        )
    else:
        console.print(message)


# -- hero offtaker mandate set --------------------------------------------------------------------


@mandate_app.command("set")
def mandate_set(
    offtaker: Annotated[
        str, typer.Argument(help="the offtaker's id", callback=checked_id(OfftakerId))
    ],
    file: Annotated[
        Path, typer.Option("--file", help="the mandate as JSON (Mandate); - for stdin")
    ],
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Set OFFTAKER's mandate: its agent starts asking for the workloads' capacity."""
    mandate: Mandate = validated(Mandate, read_json(file), f"mandate for {offtaker}")
    command = SetOfftakerMandate(command_id=new_id("cmd"), offtaker_id=offtaker, mandate=mandate)
    with opened_store(data_dir) as store:
        send(store, command)
    if as_json:
        print_json({"offtaker_id": offtaker, "mandate": mandate.model_dump(mode="json")})
        return
    workloads = ", ".join(f"{w.workload_id} x{w.replicas}" for w in mandate.workloads)
    console.print(
        f"mandate set for {offtaker}: {workloads}; budget {fmt_money(mandate.budget_month)}/month, "
        f"at most {fmt_money(mandate.max_price_cu_hour)}/CU-h"
    )
