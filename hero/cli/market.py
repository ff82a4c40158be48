"""The marketplace by hand: farmer policies and approvals, offtaker mandates, and what the
market holds (nodes, negotiations, contracts); ``hero fleet create`` registers a whole fleet.

Every command opens the event store named by the settings directly, so it works whether the
stack runs or not; changes go through the market's command service, as the agents' do.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError
from rich.markup import escape
from rich.table import Table

from hero.cli.common import (
    AsJson,
    AsOfOption,
    DataDir,
    checked_id,
    console,
    cut_to,
    fail,
    print_json,
    settings_for,
    warn_skipped,
)
from hero.domain.clock import SystemClock
from hero.domain.node import node_stream
from hero.market.fleet import generate_fleet
from hero.market.service import CommandRejected, HandleResult, MarketService, farm_stream
from hero.market.views import (
    ContractRow,
    MarketReport,
    NegotiationRow,
    NodeRow,
    OfferRow,
    json_ready,
)
from hero.store import (
    EventStore,
    PoisonRow,
    StoreError,
    decode_event,
    open_store,
    recorded_after,
)
from schemas import (
    ApproveOffer,
    ChangeNodeStatus,
    Command,
    FarmerPolicy,
    Grid,
    Mandate,
    Money,
    NodeStatus,
    PolicyMode,
    RegisterFarm,
    RegisterNode,
    RejectOffer,
    Resources,
    SetFarmerPolicy,
    SetOfftakerMandate,
    new_id,
)
from schemas.ids import FarmId, NodeId, OfftakerId

__all__ = [
    "contracts_app",
    "farmer_app",
    "fleet_app",
    "load_report",
    "negotiations_app",
    "nodes_app",
    "offtaker_app",
]

ACTOR = "cli"

farmer_app = typer.Typer(
    help="A farmer's side: policies, offers awaiting approval.", no_args_is_help=True
)
policy_app = typer.Typer(help="The farm's auto-accept policy.", no_args_is_help=True)
farmer_app.add_typer(policy_app, name="policy")
offtaker_app = typer.Typer(help="An offtaker's side: mandates.", no_args_is_help=True)
mandate_app = typer.Typer(help="What the offtaker's agent may buy.", no_args_is_help=True)
offtaker_app.add_typer(mandate_app, name="mandate")
contracts_app = typer.Typer(help="Contracts the market has made.", no_args_is_help=True)
nodes_app = typer.Typer(help="Nodes and their capacity.", no_args_is_help=True)
negotiations_app = typer.Typer(help="Negotiations, from RFQ to award.", no_args_is_help=True)
fleet_app = typer.Typer(help="Generated fleets of farms and nodes.", no_args_is_help=True)


# -- the store, the log and the service -----------------------------------------------------------


def _show(rows: Sequence[Any], as_json: bool, empty: str, table: Callable[[Any], Table]) -> None:
    """Rows as JSON, or as a table, or a line saying there are none."""
    if as_json:
        print_json([json_ready(row) for row in rows])
    elif not rows:
        console.print(empty)
    else:
        console.print(table(rows))


@contextmanager
def opened_store(data_dir: Path | None, as_of: str | None = None) -> Iterator[EventStore]:
    """The data dir's store; with ``as_of``, read-only and as it was then (``--as-of``)."""
    settings = settings_for(data_dir)
    try:
        store = open_store(settings.effective_store_url)
    except StoreError as error:
        fail(str(error))
    try:
        yield cut_to(store, as_of)
    finally:
        store.close()


def load_report(
    store: EventStore, report: MarketReport | None = None, batch: int = 1000
) -> MarketReport:
    """The market folded from the whole log; given a report, only what came after it."""
    report = report or MarketReport()
    for row in recorded_after(store, report.position, batch):
        try:
            envelope, event = decode_event(row)
        except PoisonRow as error:
            warn_skipped(row, error)
            report.position = max(report.position, row.position)
            continue
        report.apply(envelope, event)
    return report


def send(store: EventStore, command: Command, service: MarketService | None = None) -> HandleResult:
    """Through the market service, as ``cli``; a refusal exits 2 with the service's reason."""
    try:
        return (service or MarketService(store)).handle(command, actor=ACTOR)
    except CommandRejected as error:
        fail(str(error).split(": ", 1)[-1])
    except StoreError as error:
        fail(str(error), code=1)


def _farm_of_node(store: EventStore, node_id: str) -> str | None:
    first = store.read_stream(node_stream(node_id), 1)[:1]
    return str(first[0].envelope().payload.get("farm_id")) if first else None


def _field_errors(error: ValidationError, flags: dict[str, str] | None = None) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(whole)"
        flag = (flags or {}).get(str(item["loc"][0])) if item["loc"] else None
        lines.append(f"  - {where}{f' ({flag})' if flag else ''}: {item['msg']}")
    return "\n".join(lines)


def _read_json(path: Path) -> Any:
    """A JSON document from a file, or from stdin when the path is ``-``."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as error:
        fail(f"cannot read {path}: {error.strerror or error}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        fail(f"{path} is not valid JSON: {error}")


def _validated(
    model: type[BaseModel], data: Any, what: str, flags: dict[str, str] | None = None
) -> Any:
    if not isinstance(data, dict):
        fail(f"{what} must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        fail(f"invalid {what}, nothing was written:\n{_field_errors(error, flags)}")


# -- formatting -----------------------------------------------------------------------------------


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


def _nodes_table(nodes: list[NodeRow]) -> Table:
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


def _negotiations_table(negotiations: list[NegotiationRow]) -> Table:
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


def _approvals_table(offers: list[OfferRow], now: datetime) -> Table:
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
    data = _read_json(file) if file is not None else _policy_from_flags(given)
    flag_names = None if file is not None else _POLICY_FLAGS
    policy: FarmerPolicy = _validated(FarmerPolicy, data, f"policy for farm {farm}", flag_names)
    with opened_store(data_dir) as store:
        if store.stream_version(farm_stream(farm)) == 0:
            fail(f"farm {farm} is not registered")
        if node is not None and _farm_of_node(store, node) != farm:
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


def _known_farm(report: MarketReport, farm: str) -> None:
    if report.farm(farm) is None:
        fail(f"farm {farm} is not registered")


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
    with opened_store(data_dir) as store:
        report = load_report(store)
    _known_farm(report, farm)
    pending = [o for o in report.pending_approvals(now) if o.farm_id == farm]
    if as_json:
        print_json([json_ready(o) for o in pending])
        return
    if not pending:
        console.print(f"no offers of farm {farm} await approval")
        return
    console.print(_approvals_table(pending, now))


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
    mandate: Mandate = _validated(Mandate, _read_json(file), f"mandate for {offtaker}")
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


# -- lists ----------------------------------------------------------------------------------------


@contracts_app.command("list")
def contracts_list(
    offtaker: Annotated[str | None, typer.Option(help="only this offtaker's")] = None,
    farm: Annotated[str | None, typer.Option(help="only this farm's")] = None,
    data_dir: DataDir = None,
    as_of: AsOfOption = None,
    as_json: AsJson = False,
) -> None:
    """Live contracts (created, not cancelled)."""
    with opened_store(data_dir, as_of) as store:
        report = load_report(store)
    if farm is not None:
        _known_farm(report, farm)
    contracts = [
        c
        for c in report.contracts
        if (offtaker is None or c.offtaker_id == offtaker) and (farm is None or c.farm_id == farm)
    ]
    _show(contracts, as_json, "no contracts", contracts_table)


@nodes_app.command("list")
def nodes_list(
    farm: Annotated[str | None, typer.Option(help="only this farm's")] = None,
    data_dir: DataDir = None,
    as_of: AsOfOption = None,
    as_json: AsJson = False,
) -> None:
    """Nodes with their capacity: total, held by offers, committed to contracts, free."""
    with opened_store(data_dir, as_of) as store:
        report = load_report(store)
    if farm is not None:
        _known_farm(report, farm)
    nodes = [n for n in report.nodes if farm is None or n.farm_id == farm]
    _show(nodes, as_json, "no nodes", _nodes_table)


@nodes_app.command("status")
def nodes_status(
    node: Annotated[str, typer.Argument(help="the node id", callback=checked_id(NodeId))],
    status: Annotated[NodeStatus, typer.Argument(help="up, down or standby")],
    reason: Annotated[str, typer.Option(help="why, recorded with the change")] = "by hand",
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Mark a node up, down or standby. Down or standby: its offers' holds are released and
    the offtakers move its replicas elsewhere, then end its contracts with the SLA outcome."""
    pricing = settings_for(data_dir).pricing()
    with opened_store(data_dir) as store:
        command = ChangeNodeStatus(
            command_id=new_id("cli-status"), node_id=node, status=status, reason=reason
        )
        result = send(store, command, MarketService(store, pricing=pricing))
    changed = bool(result.events)
    if as_json:
        print_json({"node_id": node, "status": status.value, "changed": changed})
        return
    console.print(
        f"node {escape(node)} is {status.value}" + ("" if changed else " already: nothing recorded")
    )


@negotiations_app.command("list")
def negotiations_list(
    offtaker: Annotated[str | None, typer.Option(help="only this offtaker's")] = None,
    status: Annotated[str | None, typer.Option(help="open, awarded, failed or expired")] = None,
    data_dir: DataDir = None,
    as_of: AsOfOption = None,
    as_json: AsJson = False,
) -> None:
    """Negotiations with their status, offers, declines and contracts."""
    if status is not None and status not in ("open", "awarded", "failed", "expired"):
        fail(f"--status must be open, awarded, failed or expired, not {status!r}")
    with opened_store(data_dir, as_of) as store:
        report = load_report(store)
    rows = [
        n
        for n in report.negotiations
        if (offtaker is None or n.offtaker_id == offtaker)
        and (status is None or n.status == status)
    ]
    _show(rows, as_json, "no negotiations", _negotiations_table)


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
