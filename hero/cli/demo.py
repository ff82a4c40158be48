"""``hero demo``: the capacity market end to end.

Start the stack, register a small fleet (12 farms) with a book of farmer policies (one farm
asks its farmer before offering, some decline by term, price, SLA or offtaker), give four
offtakers mandates, and let the agents negotiate on Ray (or in this process with
``--in-process``) until every negotiation is closed. Then print the contracts and the declines
with their reasons, and stop what was started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer
from rich.console import Console
from rich.table import Table

from hero.cli._common import DataDir, errors, fail, print_json, settings_for
from hero.cli._common import console as stdout
from hero.cli.market import contracts_table, load_report
from hero.domain.clock import SystemClock
from hero.market.fleet import farm_id_for, generate_fleet
from hero.market.service import CommandRejected, MarketService
from hero.market.views import DeclineRow, MarketReport, NegotiationRow, OfferRow, json_ready
from hero.store import EventStore, open_store
from infra import LocalStack, StackError
from schemas import (
    ApproveOffer,
    FarmerPolicy,
    Grid,
    Mandate,
    Money,
    PolicyMode,
    RegisterFarm,
    RegisterNode,
    Resources,
    SetFarmerPolicy,
    SetOfftakerMandate,
    Sla,
    WorkloadSpec,
    new_id,
)

if TYPE_CHECKING:
    from hero.config import HeroSettings
    from infra import Endpoints

__all__ = ["DEMO_SEED", "Scenario", "demo", "scenario"]

DEMO_SEED = 2024
DEMO_FARMS = 12
POLL_S = 0.1


# -- the story ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One run of the demo: the fleet (the same every run), this run's policies and mandates."""

    tag: str
    fleet: list[RegisterFarm | RegisterNode]
    policies: list[SetFarmerPolicy]
    mandates: list[SetOfftakerMandate]

    @property
    def offtakers(self) -> set[str]:
        return {m.offtaker_id for m in self.mandates}

    @property
    def approve_farms(self) -> set[str]:
        return {p.farm_id for p in self.policies if p.policy.mode == PolicyMode.APPROVE}

    @property
    def replicas(self) -> int:
        return sum(w.replicas for m in self.mandates for w in m.mandate.workloads)


def _usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def _fixed(cu: str, su: str, **terms: Any) -> FarmerPolicy:
    return FarmerPolicy(price_cu_hour=_usd(cu), price_su_hour=_usd(su), **terms)


def _markup(factor: str, **terms: Any) -> FarmerPolicy:
    return FarmerPolicy(markup=Decimal(factor), **terms)


def _policy_book(tag: str) -> list[FarmerPolicy]:
    """The twelve farms' policies, cheapest asks first in the offtakers' ranking; the notes
    say which RFQs each one declines."""
    umbrella = f"umbrella-{tag}"
    return [
        _fixed("0.0306", "0.0194", floor_cu_hour=_usd("0.0250"), reserve_share=Decimal("0.2")),
        _markup("1.6", mode=PolicyMode.APPROVE, approval_ttl_s=120),  # asks its farmer first
        _markup("1.5", max_term_hours=720),  # declines the 3-month term: term_too_long
        _markup("1.8", deny_offtakers=[umbrella]),  # offtaker_denied for umbrella
        _fixed("0.0550", "0.0300"),  # too dear for the thrifty: below_floor
        FarmerPolicy(mode=PolicyMode.OFF),  # takes no work
        _markup("2.0", sla=Sla(uptime_pct=Decimal(98))),  # sla_not_met for 99 % workloads
        _fixed("0.0337", "0.0213", reserve_share=Decimal("0.1")),
        _markup("2.5", max_term_hours=8760),
        _fixed("0.0306", "0.0194", floor_cu_hour=_usd("0.0280")),
        _markup("1.2", max_term_hours=168),  # one week at most: term_too_long
        _markup("1.4", sla=Sla(uptime_pct=Decimal("99.5"), penalty_pct=Decimal(10))),
    ]


def _workload(
    name: str,
    shape: tuple[int, int, int],
    replicas: int,
    regions: list[str] | None = None,
    uptime: str = "95",
) -> WorkloadSpec:
    cores, ram_gb, ssd_gb = shape
    return WorkloadSpec(
        workload_id=name,
        resources=Resources.from_gb(cru=cores, mru_gb=ram_gb, sru_gb=ssd_gb),
        replicas=replicas,
        regions=regions or [],
        grids=[Grid.GRID3, Grid.GRID4],
        min_uptime_pct=Decimal(uptime),
    )


def _mandates(tag: str) -> list[tuple[str, Mandate]]:
    """Four offtakers: one in Europe, one anywhere for a 3-month term at 99 % uptime, a
    thrifty one in Asia and Africa, and one the farm-0004 policy denies. Each invites every
    farm that fits (``offers_per_replica`` above the fleet's size), so the story does not
    depend on which of equally cheap farms an offtaker happens to draw."""
    return [
        (f"acme-{tag}", Mandate(
            workloads=[_workload("web", (2, 4, 50), 3, ["europe"])],
            budget_month=_usd("400"), max_price_cu_hour=_usd("0.05"), offers_per_replica=12,
        )),
        (f"globex-{tag}", Mandate(
            workloads=[_workload("db", (4, 16, 200), 2, uptime="99")],
            budget_month=_usd("600"), max_price_cu_hour=_usd("0.045"), term_hours=2160,
            offers_per_replica=12,
        )),
        (f"initech-{tag}", Mandate(
            workloads=[_workload("cache", (2, 8, 20), 2, ["asia", "africa"])],
            budget_month=_usd("200"), max_price_cu_hour=_usd("0.018"), offers_per_replica=12,
        )),
        (f"umbrella-{tag}", Mandate(
            workloads=[_workload("worker", (4, 8, 100), 2, ["asia", "north-america"])],
            budget_month=_usd("400"), max_price_cu_hour=_usd("0.05"), prefer_grid=Grid.GRID4,
            offers_per_replica=12,
        )),
    ]  # fmt: skip


def scenario(tag: str) -> Scenario:
    fleet = generate_fleet(DEMO_SEED, farms=DEMO_FARMS, nodes_per_farm=(2, 3), grid3_share=0.5)
    policies = [
        SetFarmerPolicy(
            command_id=f"demo-{tag}.{farm_id_for(number)}.policy",
            farm_id=farm_id_for(number),
            policy=policy,
        )
        for number, policy in enumerate(_policy_book(tag), start=1)
    ]
    mandates = [
        SetOfftakerMandate(command_id=f"demo-{tag}.{offtaker}", offtaker_id=offtaker, mandate=m)
        for offtaker, m in _mandates(tag)
    ]
    registrations = [c for c in fleet if isinstance(c, RegisterFarm | RegisterNode)]
    return Scenario(tag, registrations, policies, mandates)


# -- the agents -----------------------------------------------------------------------------------


class Agents(Protocol):
    description: str

    def start(self) -> None: ...

    def step(self) -> None: ...

    def stop(self) -> None: ...


class StackAgents:
    """The agent hosts ``hero up`` started on the stack's Ray: they run by themselves."""

    def __init__(self, shards: int):
        self.description = f"{shards} agent hosts on Ray"

    def start(self) -> None:
        """Already running, and caught up: ``hero up`` waits for it."""

    def step(self) -> None:
        """The hosts run by themselves."""

    def stop(self) -> None:
        """They belong to the stack."""


class ClusterAgents(StackAgents):
    """Agent hosts on Ray started for the demo, for a stack that runs none."""

    def __init__(self, settings: HeroSettings, endpoints: Endpoints, shards: int, tag: str):
        from agents.runtime.cluster import AgentCluster

        super().__init__(shards)
        self._cluster = AgentCluster(
            settings, endpoints, shards=shards, name_prefix=f"hero-demo-{tag}"
        )

    def start(self) -> None:
        self._cluster.start()
        self._cluster.wait_caught_up(timeout_s=60)

    def stop(self) -> None:
        self._cluster.stop()


class LocalAgents:
    """The agents in this process, stepped between polls (``agents.local.LocalMarket``)."""

    def __init__(self, store: EventStore):
        from agents.local import LocalMarket

        self.description = "agents in this process"
        self._market = LocalMarket(store, SystemClock())

    def start(self) -> None:
        self._market.catch_up()

    def step(self) -> None:
        self._market.step()

    def stop(self) -> None:
        """Nothing runs in the background."""


def ray_agents(stack: LocalStack, settings: HeroSettings, tag: str) -> Agents:
    """The stack's agent hosts when it runs them, else a cluster of the demo's own."""
    running = {c.name: c.state for c in stack.status()}
    if running.get("agents") == "up":
        return StackAgents(settings.agent_shards)
    return ClusterAgents(settings, stack.endpoints(), settings.agent_shards, tag)


# -- settling -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    report: MarketReport
    seconds: float
    settled: bool
    approvals: list[OfferRow] = field(default_factory=list)


def _ours(report: MarketReport, story: Scenario) -> list[NegotiationRow]:
    return [n for n in report.negotiations if n.offtaker_id in story.offtakers]


def _settled(report: MarketReport, story: Scenario) -> bool:
    """Every replica has its contract and no negotiation of this run is open."""
    ours = _ours(report, story)
    contracts = [c for c in report.contracts if c.offtaker_id in story.offtakers]
    return bool(ours) and all(n.closed for n in ours) and len(contracts) >= story.replicas


def _approve_pending(
    service: MarketService, report: MarketReport, story: Scenario, say: Callable[[str], None]
) -> list[OfferRow]:
    """Act as the farmer of each approve-mode farm: approve this run's pending offers."""
    approved = []
    for offer in report.pending_approvals(SystemClock().now()):
        if offer.farm_id not in story.approve_farms or offer.offtaker_id not in story.offtakers:
            continue
        command = ApproveOffer(
            command_id=f"demo.approve.{offer.offer_id}",
            negotiation_id=offer.negotiation_id,
            offer_id=offer.offer_id,
        )
        try:
            if service.handle(command, actor=f"farmer:{offer.farm_id}").duplicate:
                continue
        except CommandRejected as error:  # the negotiation closed meanwhile
            say(f"  [dim]could not approve {offer.offer_id}: {error}[/]")
            continue
        say(f"  farmer of {offer.farm_id} approved offer {offer.offer_id} ({offer.offtaker_id})")
        approved.append(offer)
    return approved


def settle(
    store: EventStore,
    story: Scenario,
    agents: Agents,
    timeout_s: float,
    say: Callable[[str], None],
) -> Outcome:
    service = MarketService(store, actor="demo")
    started = time.monotonic()
    report = load_report(store)
    outcome = Outcome(report, 0.0, settled=False)
    while time.monotonic() - started < timeout_s:
        agents.step()
        report = load_report(store, report)
        outcome.approvals += _approve_pending(service, report, story, say)
        if _settled(report, story):
            outcome.settled = True
            break
        time.sleep(POLL_S)
    outcome.report = report
    outcome.seconds = time.monotonic() - started
    return outcome


# -- output ---------------------------------------------------------------------------------------


def _declines_table(declines: list[DeclineRow]) -> Table:
    table = Table("offtaker", "workload", "farm", "reasons", "detail", title="declines")
    for d in declines:
        reasons = ", ".join(r.value for r in d.reasons)
        detail = d.detail if len(d.detail) <= 60 else d.detail[:59] + "…"
        table.add_row(d.offtaker_id, d.workload_id, d.farm_id, f"[red]{reasons}[/]", detail)
    return table


def _summary(outcome: Outcome, story: Scenario, agents: Agents) -> dict[str, Any]:
    report = outcome.report
    contracts = [c for c in report.contracts if c.offtaker_id in story.offtakers]
    declines = [d for d in report.declines if d.offtaker_id in story.offtakers]
    ours = _ours(report, story)
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
    }


def _line(summary: dict[str, Any]) -> str:
    return (
        f"{summary['contracts']} contracts on {summary['farms']} farms for "
        f"{summary['offtakers']} offtakers, {summary['declines']} declines, "
        f"{summary['approvals']} approvals; {summary['negotiations']} negotiations settled in "
        f"{summary['seconds']:.1f} s ({summary['agents']})"
    )


def _print(outcome: Outcome, story: Scenario, agents: Agents, as_json: bool) -> dict[str, Any]:
    report = outcome.report
    contracts = sorted(
        (c for c in report.contracts if c.offtaker_id in story.offtakers),
        key=lambda c: (c.offtaker_id, c.workload_id, c.farm_id, c.node_id),
    )
    declines = sorted(
        (d for d in report.declines if d.offtaker_id in story.offtakers),
        key=lambda d: (d.offtaker_id, d.workload_id, d.farm_id),
    )
    summary = _summary(outcome, story, agents)
    if as_json:
        print_json(
            json_ready(
                {
                    "run": story.tag,
                    "summary": summary,
                    "contracts": contracts,
                    "declines": declines,
                    "approvals": outcome.approvals,
                    "negotiations": _ours(report, story),
                }
            )
        )
        return summary
    stdout.print(contracts_table(contracts, title="contracts"))
    stdout.print(_declines_table(declines))
    return summary


# -- the command ----------------------------------------------------------------------------------


def _register(store: EventStore, story: Scenario, say: Callable[[str], None]) -> None:
    service = MarketService(store, actor="demo")
    written = 0
    for command in [*story.fleet, *story.policies]:
        try:
            written += 0 if service.handle(command).duplicate else 1
        except CommandRejected as error:
            if error.reason != "already_registered":  # a farm or node of an earlier fleet
                raise
    farms = [c for c in story.fleet if isinstance(c, RegisterFarm)]
    nodes = sum(1 for c in story.fleet if isinstance(c, RegisterNode))
    regions = len({f.region for f in farms})
    modes = [p.policy.mode for p in story.policies]
    say(
        f"[bold]fleet[/] {len(farms)} farms, {nodes} nodes in {regions} regions; policies: "
        f"{modes.count(PolicyMode.AUTO)} auto, {modes.count(PolicyMode.APPROVE)} approve, "
        f"{modes.count(PolicyMode.OFF)} off ({written} commands written)"
    )


def _run(
    store: EventStore,
    story: Scenario,
    agents: Agents,
    timeout_s: float,
    say: Callable[[str], None],
) -> Outcome:
    _register(store, story, say)
    began = time.monotonic()
    agents.start()
    waited = time.monotonic() - began
    say(
        f"[bold]agents[/] {agents.description}"
        + (f", ready in {waited:.1f} s" if waited > 0.1 else "")
    )
    service = MarketService(store, actor="demo")
    for command in story.mandates:
        service.handle(command)
    workloads = ", ".join(
        f"{m.offtaker_id}: {w.workload_id} x{w.replicas}"
        for m in story.mandates
        for w in m.mandate.workloads
    )
    say(f"[bold]mandates[/] {workloads}")
    return settle(store, story, agents, timeout_s, say)


@contextmanager
def _stack(settings: HeroSettings, keep: bool, say: Callable[[str], None]) -> Iterator[LocalStack]:
    """The stack up for the demo; afterwards stopped if the demo started it, unless ``keep``."""
    stack = LocalStack(settings)
    try:
        report = stack.up()
    except StackError as error:
        fail(str(error), code=1)
    started = not report.already_running
    state = f"started, healthy in {report.seconds:.1f} s" if started else "already running"
    say(f"[bold]stack[/] {state}")
    try:
        yield stack
    finally:
        if started and not keep:
            stack.down()
            say("stack stopped")
        elif keep:
            say(f"stack left running under {settings.data_dir} (hero down to stop)")


def demo(
    keep: Annotated[bool, typer.Option(help="leave the stack running afterwards")] = False,
    in_process: Annotated[
        bool,
        typer.Option(help="no stack: run the agents in this process, over the event store"),
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=1, help="seconds to wait for the negotiations to settle")
    ] = 30.0,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Start the stack, let the agents negotiate a small fleet's capacity on Ray, show the
    contracts and the declines, stop what it started."""
    began = time.monotonic()
    out: Console = errors if as_json else stdout
    settings = settings_for(data_dir)
    story = scenario(new_id("demo")[-6:])
    with ExitStack() as scope:
        if in_process:
            store = open_store(settings.effective_store_url)
        else:
            stack = scope.enter_context(_stack(settings, keep, out.print))
            store = open_store(stack.endpoints().store_url)
        scope.callback(store.close)
        agents = LocalAgents(store) if in_process else ray_agents(stack, settings, story.tag)
        scope.callback(agents.stop)
        outcome = _run(store, story, agents, timeout, out.print)
        summary = _print(outcome, story, agents, as_json)
    if not outcome.settled:
        fail(
            f"demo incomplete after {timeout:.0f} s: {summary['contracts']} of "
            f"{summary['replicas']} replicas contracted, {summary['open']} negotiations open",
            code=1,
        )
    out.print(f"[bold green]demo ok:[/] {_line(summary)}; {time.monotonic() - began:.1f} s in all")
