"""``hero demo``: the capacity market end to end.

Start the stack, register a small fleet (12 farms) with a book of farmer policies (one farm
asks its farmer before offering, some decline by term, price, SLA or offtaker), give four
offtakers mandates, and let the agents negotiate on Ray (or in this process with
``--in-process``) until every negotiation is closed. Then print the contracts and the declines
with their reasons.

Then scaling (:mod:`hero.demo.scaling`): a cpu spike on acme's autoscaled ``api`` scales it
out across both grids, and a node failure moves one of its replicas and ends the old contract
with its SLA outcome.

Then the money: each offtaker with contracts tops up its monthly budget in USD through a
signed payment webhook to the stack's treasury, which converts it to TFT; the demo bills a
few hours of its contracts, the scaled-out and the ended ones included -- on a clock
fast-forwarded by ``BILLED_HOURS``, since no real hour has passed -- shares each bill between
farmer, farming pool and ThreeFold, refunds the SLA penalty, and checks that every contract of
the run has a bill (the ended ones too, however short they ran) and that the ledger still sums
to zero. Finally it stops what it started.

The story is in :mod:`hero.demo.scenario`, who runs the agents in :mod:`hero.demo.agents`,
settling the market in :mod:`hero.demo.settle`, the printing in :mod:`hero.demo.report`,
the money in :mod:`hero.demo.money`; this module runs the acts in order. ``hero demo``
(:mod:`hero.cli.demo_command`) calls :func:`run_demo`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from hero.cli.common import console as stdout
from hero.cli.common import errors, fail, settings_for
from hero.demo.agents import Agents, LocalAgents, ray_agents
from hero.demo.money import (
    Payments,
    _payments_line,
    _payments_table,
    _say_billing,
    pay_and_bill,
    treasury_for,
)
from hero.demo.report import (
    contracts_of,
    print_market,
    print_outcome_json,
    summarise,
    summary_line,
)
from hero.demo.scaling import run_scaling
from hero.demo.scaling_report import Scaling, say_penalty
from hero.demo.scenario import Scenario, scenario
from hero.demo.settle import Outcome, approve_pending, settle
from hero.market.service import CommandRejected, MarketService
from hero.market.views import (
    ContractRow,
)
from hero.store import EventStore, open_store
from infra import LocalStack, StackError
from schemas import (
    PolicyMode,
    RegisterFarm,
    RegisterNode,
    new_id,
)

if TYPE_CHECKING:
    from hero.config import HeroSettings

__all__ = ["run_demo"]


# -- the command ----------------------------------------------------------------------------------


def _scale(
    store: EventStore,
    story: Scenario,
    agents: Agents,
    contracts: list[ContractRow],
    timeout_s: float,
    say: Callable[[str], None],
) -> Scaling:
    """The scaling act on the story's autoscaled workload; the farmers of approve-mode farms
    keep approving meanwhile, as they did while the market settled."""
    service = MarketService(store, actor="demo")
    offtaker, spec = story.scaled
    return run_scaling(
        store,
        agents,
        tag=story.tag,
        offtaker_id=offtaker,
        spec=spec,
        offtakers=story.offtakers,
        contracts=contracts,
        approve=lambda report: approve_pending(service, report, story, say),
        timeout_s=timeout_s,
        say=say,
    )


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


def run_demo(
    data_dir: Path | None, *, keep: bool, in_process: bool, timeout: float, as_json: bool
) -> None:
    """The whole demo, as ``hero demo`` runs it: the market, then scaling, then the money;
    exits 1 through :func:`hero.cli.common.fail` when an act did not finish."""
    began = time.monotonic()
    out: Console = errors if as_json else stdout
    settings = settings_for(data_dir)
    story = scenario(new_id("demo")[-6:])
    scaling: Scaling | None = None
    payments: Payments | None = None
    with ExitStack() as scope:
        stack: LocalStack | None = None
        agents: Agents
        if in_process:
            store = open_store(settings.effective_store_url)
            scope.callback(store.close)
            agents = LocalAgents(store)
        else:
            stack = scope.enter_context(_stack(settings, keep, out.print))
            store = open_store(stack.endpoints().store_url)
            scope.callback(store.close)
            agents = ray_agents(stack, settings, story.tag)
        scope.callback(agents.stop)
        outcome = _run(store, story, agents, timeout, out.print)
        if not as_json:
            print_market(outcome, story)
        contracts = contracts_of(outcome, story)
        if outcome.settled and contracts:
            scaling = _scale(store, story, agents, contracts, timeout, out.print)
            contracts = sorted(scaling.contracts.values(), key=lambda c: c.contract_id)
            treasury = treasury_for(stack, settings, store)
            payments = pay_and_bill(store, settings, treasury, contracts, story, timeout, out.print)
            scaling.note_penalty(store, payments.report)
            if not as_json:
                stdout.print(_payments_table(payments))
            _say_billing(payments, out.print)
            say_penalty(scaling, out.print)
        summary = summarise(outcome, story, agents, scaling, payments)
        if as_json:
            print_outcome_json(outcome, story, summary, scaling, payments)
    if not outcome.settled:
        fail(
            f"demo incomplete after {timeout:.0f} s: {summary['contracts']} of "
            f"{summary['replicas']} replicas contracted, {summary['open']} negotiations open",
            code=1,
        )
    if scaling is not None and scaling.problem is not None:
        fail(f"demo incomplete: {scaling.problem}", code=1)
    if payments is not None and not payments.balanced:
        fail(f"the ledger does not sum to zero: {payments.totals}", code=1)
    if payments is not None and payments.unbilled:
        fail(
            f"the demo's billing left {len(payments.unbilled)} contracts of this run without "
            f"a bill: {', '.join(payments.unbilled)}",
            code=1,
        )
    line = summary_line(summary)
    if scaling is not None:
        line += f"; {scaling.line()}"
    if payments is not None:
        line += f"; {_payments_line(summary)}"
    out.print(f"[bold green]demo ok:[/] {line}; {time.monotonic() - began:.1f} s in all")
