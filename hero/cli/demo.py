"""``hero demo``: the capacity market end to end.

Start the stack, register a small fleet (12 farms) with a book of farmer policies (one farm
asks its farmer before offering, some decline by term, price, SLA or offtaker), give four
offtakers mandates, and let the agents negotiate on Ray (or in this process with
``--in-process``) until every negotiation is closed. Then print the contracts and the declines
with their reasons.

Then scaling (:mod:`hero.cli.demo_scaling`): a cpu spike on acme's autoscaled ``api`` scales it
out across both grids, and a node failure moves one of its replicas and ends the old contract
with its SLA outcome.

Then the money: each offtaker with contracts tops up its monthly budget in USD through a
signed payment webhook to the stack's treasury, which converts it to TFT; the demo bills a
few hours of its contracts, the scaled-out and the ended ones included -- on a clock
fast-forwarded by ``BILLED_HOURS``, since no real hour has passed -- shares each bill between
farmer, farming pool and ThreeFold, refunds the SLA penalty, and checks that every contract of
the run has a bill (the ended ones too, however short they ran) and that the ledger still sums
to zero. Finally it stops what it started.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer
from rich.console import Console
from rich.table import Table

from hero.cli._common import DataDir, errors, fail, print_json, settings_for
from hero.cli._common import console as stdout
from hero.cli.demo_scaling import KafkaTelemetry, Samples, Scaling, run_scaling, say_penalty
from hero.cli.market import contracts_table, fmt_money, load_report
from hero.cli.payments import PaymentRow, billing_service, payment_row, print_report
from hero.domain.clock import ManualClock, SystemClock
from hero.domain.ledger import AccountKind, account_id
from hero.market.fleet import farm_id_for, generate_fleet
from hero.market.service import CommandRejected, MarketService
from hero.market.views import (
    ContractRow,
    DeclineRow,
    MarketReport,
    NegotiationRow,
    OfferRow,
    json_ready,
)
from hero.payments.billing import BillingReport, billing_stream
from hero.payments.ledger import read_book
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
    ScalingPolicy,
    SetFarmerPolicy,
    SetOfftakerMandate,
    Sla,
    UsageBilled,
    WorkloadSpec,
    new_id,
)

if TYPE_CHECKING:
    from hero.config import HeroSettings
    from infra import Endpoints

__all__ = ["BILLED_HOURS", "DEMO_SEED", "Scenario", "demo", "scenario"]

DEMO_SEED = 2024
DEMO_FARMS = 12
POLL_S = 0.1
BILLED_HOURS = 3
"""How far ahead the demo's billing clock runs: the contracts are seconds old, and billing
only charges hours that are over."""
SCALED_WORKLOAD = "api"
"""The autoscaled workload of the scaling act (acme's)."""


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

    @property
    def scaled(self) -> tuple[str, WorkloadSpec]:
        """The offtaker and the workload that autoscales."""
        return next(
            (m.offtaker_id, w)
            for m in self.mandates
            for w in m.mandate.workloads
            if w.autoscale is not None
        )


def _usd(amount: str) -> Money:
    return Money.of(amount, "USD")


#: What a farm promises unless its line in the book says otherwise: 99 % uptime, and half of
#: each hour down refunded when that is missed (the node failure's penalty).
DEMO_SLA = Sla(uptime_pct=Decimal(99), penalty_pct=Decimal(50))


def _fixed(cu: str, su: str, **terms: Any) -> FarmerPolicy:
    terms.setdefault("sla", DEMO_SLA)
    return FarmerPolicy(price_cu_hour=_usd(cu), price_su_hour=_usd(su), **terms)


def _markup(factor: str, **terms: Any) -> FarmerPolicy:
    terms.setdefault("sla", DEMO_SLA)
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
    autoscale: ScalingPolicy | None = None,
) -> WorkloadSpec:
    cores, ram_gb, ssd_gb = shape
    return WorkloadSpec(
        workload_id=name,
        resources=Resources.from_gb(cru=cores, mru_gb=ram_gb, sru_gb=ssd_gb),
        replicas=replicas,
        regions=regions or [],
        grids=[Grid.GRID3, Grid.GRID4],
        min_uptime_pct=Decimal(uptime),
        autoscale=autoscale,
    )


def _mandates(tag: str) -> list[tuple[str, Mandate]]:
    """Four offtakers: one in Europe (with an ``api`` anywhere on both grids that autoscales
    on cpu, 2 to 6 replicas), one anywhere for a 3-month term at 99 % uptime, a thrifty one in
    Asia and Africa, and one the farm-0004 policy denies. Each invites every farm that fits
    (``offers_per_replica`` above the fleet's size), so the story does not depend on which of
    equally cheap farms an offtaker happens to draw."""
    api = ScalingPolicy(metric="cpu", target=Decimal("0.6"), min_replicas=2, max_replicas=6)
    return [
        (f"acme-{tag}", Mandate(
            workloads=[
                _workload("web", (2, 4, 50), 3, ["europe"]),
                _workload(SCALED_WORKLOAD, (2, 4, 50), 2, autoscale=api),
            ],
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

    def sample(self, samples: Samples, at: datetime) -> None:
        """Deliver replicas' telemetry (utilization samples) as the agents get it."""

    def stop(self) -> None: ...


class StackAgents:
    """The agent hosts ``hero up`` started on the stack's Ray: they run by themselves, and
    read samples from the stack's Kafka."""

    def __init__(self, shards: int, kafka_bootstrap: str):
        self.description = f"{shards} agent hosts on Ray"
        self._telemetry = KafkaTelemetry(kafka_bootstrap)

    def start(self) -> None:
        """Already running, and caught up: ``hero up`` waits for it."""

    def step(self) -> None:
        """The hosts run by themselves."""

    def sample(self, samples: Samples, at: datetime) -> None:
        self._telemetry.send(samples, at)

    def stop(self) -> None:
        """The hosts belong to the stack; the demo's producer does not."""
        self._telemetry.close()


class ClusterAgents(StackAgents):
    """Agent hosts on Ray started for the demo, for a stack that runs none."""

    def __init__(self, settings: HeroSettings, endpoints: Endpoints, shards: int, tag: str):
        from agents.runtime.cluster import AgentCluster

        super().__init__(shards, endpoints.kafka_bootstrap)
        self._cluster = AgentCluster(
            settings, endpoints, shards=shards, name_prefix=f"hero-demo-{tag}"
        )

    def start(self) -> None:
        self._cluster.start()
        self._cluster.wait_caught_up(timeout_s=60)

    def stop(self) -> None:
        super().stop()
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

    def sample(self, samples: Samples, at: datetime) -> None:
        self._market.sample(samples, at)

    def stop(self) -> None:
        """Nothing runs in the background."""


def ray_agents(stack: LocalStack, settings: HeroSettings, tag: str) -> Agents:
    """The stack's agent hosts when it runs them, else a cluster of the demo's own."""
    running = {c.name: c.state for c in stack.status()}
    if running.get("agents") == "up":
        return StackAgents(settings.agent_shards, stack.endpoints().kafka_bootstrap)
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


# -- payments -------------------------------------------------------------------------------------


class Treasury(Protocol):
    description: str

    def deliver(self, payload: bytes) -> str:
        """Hand a signed payment event to the treasury; the payment's id."""

    def step(self) -> None:
        """Let it convert what it received (the stack's treasury does so by itself)."""


class StackTreasury:
    """The treasury ``hero up`` started: payment events go to its webhook over HTTP."""

    def __init__(self, base_url: str, secret: bytes):
        from infra.treasury import WEBHOOK_PATH

        self.url = f"{base_url}{WEBHOOK_PATH}"
        self.description = f"the stack's treasury ({self.url})"
        self._secret = secret

    def deliver(self, payload: bytes) -> str:
        import httpx

        from agents.treasury.webhook import sign

        header = sign(self._secret, int(time.time()), payload)
        try:
            # Loopback only: no proxy from the environment may stand in between.
            with httpx.Client(timeout=10.0, trust_env=False) as client:
                response = client.post(
                    self.url,
                    content=payload,
                    headers={"Hero-Signature": header, "Content-Type": "application/json"},
                )
        except httpx.HTTPError as error:
            fail(f"the stack's treasury at {self.url} did not answer: {error}", code=1)
        try:
            body = response.json()
        except ValueError:  # not the app's JSON: a proxy's or a crash's page
            body = {"body": response.text[:200]}
        # 409: this very event was delivered before (a retry); it names the same payment.
        if response.status_code in (200, 409) and "payment_id" in body:
            return str(body["payment_id"])
        fail(f"the stack's treasury refused a top-up ({response.status_code}): {body}", code=1)

    def step(self) -> None:
        """Its worker converts every HERO_TREASURY_INTERVAL_S."""


class LocalTreasury:
    """The treasury in this process (``--in-process``, or a stack without one)."""

    def __init__(self, store: EventStore, settings: HeroSettings, secret: bytes):
        from agents.treasury.runtime import oracle_from, quote_policy
        from agents.treasury.service import TreasuryService

        self.description = "the treasury in this process"
        self._settings = settings
        self._secret = secret
        self._clock = SystemClock()
        self._service = TreasuryService(
            store, oracle_from(settings, self._clock), self._clock, policy=quote_policy(settings)
        )

    def deliver(self, payload: bytes) -> str:
        from agents.treasury.webhook import WebhookRefused, receive, sign

        now = self._clock.now()
        header = sign(self._secret, int(now.timestamp()), payload)
        try:  # the webhook's own checks, without the HTTP around them
            notice = receive(
                header,
                payload,
                self._secret,
                now=now,
                tolerance_s=self._settings.webhook_tolerance_s,
            )
        except WebhookRefused as refused:
            fail(f"a top-up was refused: {refused.reason}", code=1)
        return self._service.receive(notice).payment_id

    def step(self) -> None:
        self._service.convert_pending()


def treasury_for(stack: LocalStack | None, settings: HeroSettings, store: EventStore) -> Treasury:
    """The stack's treasury when it runs one, else a treasury in this process."""
    from agents.treasury.runtime import webhook_secret

    secret = webhook_secret(settings)
    if stack is not None:
        running = {c.name: c.state for c in stack.status()}
        url = stack.endpoints().treasury_url
        if running.get("treasury") == "up" and url is not None:
            return StackTreasury(url, secret)
    return LocalTreasury(store, settings, secret)


@dataclass
class Payments:
    """The money side of one run: top-ups converted, hours billed, the ledger's sums."""

    treasury: str
    top_ups: list[PaymentRow]
    bills: list[UsageBilled]
    report: BillingReport
    convert_seconds: float
    totals: dict[str, Decimal]
    balances: dict[str, Money]
    unbalanced: dict[str, str] = field(default_factory=dict)
    """Transfer id -> why its legs are not one sound transfer (``LedgerBook.unbalanced``)."""
    unbilled: list[str] = field(default_factory=list)
    """This run's contracts that have no bill after the billing run: none, when it is sound
    (every contract ran, and each offtaker was topped up first)."""

    @property
    def balanced(self) -> bool:
        return not self.unbalanced and all(total == 0 for total in self.totals.values())

    def total(self, part: Callable[[UsageBilled], Money]) -> Money:
        return sum((part(bill) for bill in self.bills), Money.zero("TFT"))

    def summary(self) -> dict[str, Any]:
        return {
            "top_ups": len(self.top_ups),
            "top_up_usd": sum((p.fiat for p in self.top_ups), Money.zero("USD")),
            "top_up_tft": sum((p.tft for p in self.top_ups if p.tft), Money.zero("TFT")),
            "billing_clock_ahead_h": BILLED_HOURS,
            "hours_billed": len(self.bills),
            "billed_tft": self.total(lambda bill: bill.amount),
            "farmers_tft": self.total(lambda bill: bill.farmer_share),
            "pool_tft": self.total(lambda bill: bill.pool_share),
            "threefold_tft": self.total(lambda bill: bill.threefold_share),
            "ledger_totals": {currency: _plain(total) for currency, total in self.totals.items()},
            "ledger_balanced": self.balanced,
        }


def _plain(value: Decimal) -> str:
    """``0`` rather than ``0E-7`` (a sum of TFT amounts carries their 7 places)."""
    return f"{value.normalize():f}" if value else "0"


def _top_up_event(story: Scenario, offtaker: str) -> bytes:
    """A provider's payment event: the offtaker pays its monthly budget, in USD."""
    budget = next(m.mandate.budget_month for m in story.mandates if m.offtaker_id == offtaker)
    return json.dumps(
        {
            "provider_event_id": f"evt-demo-{story.tag}-{offtaker}",
            "provider": "demo",
            "offtaker_id": offtaker,
            "amount": f"{budget.amount:f}",
            "currency": budget.currency.value,
        }
    ).encode()


def _wait_for(condition: Callable[[], bool], timeout_s: float, step: Callable[[], None]) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        step()
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


def pay_and_bill(
    store: EventStore,
    settings: HeroSettings,
    treasury: Treasury,
    contracts: list[ContractRow],
    story: Scenario,
    timeout_s: float,
    say: Callable[[str], None],
) -> Payments:
    offtakers = sorted({c.offtaker_id for c in contracts})
    began = time.monotonic()
    payment_ids = [treasury.deliver(_top_up_event(story, offtaker)) for offtaker in offtakers]
    rows: dict[str, PaymentRow | None] = {}

    def converted() -> bool:
        rows.update({pid: payment_row(store, pid) for pid in payment_ids})
        return all(row is not None and row.tft is not None for row in rows.values())

    if not _wait_for(converted, max(timeout_s, 3 * settings.treasury_interval_s), treasury.step):
        pending = [pid for pid, row in rows.items() if row is None or row.tft is None]
        fail(f"{treasury.description} did not convert {', '.join(pending)} in time", code=1)
    convert_seconds = time.monotonic() - began
    top_ups = [row for row in rows.values() if row is not None]
    fiat = sum((p.fiat for p in top_ups), Money.zero("USD"))
    tft = sum((p.tft for p in top_ups if p.tft), Money.zero("TFT"))
    say(
        f"[bold]payments[/] {len(top_ups)} top-ups by signed webhook to {treasury.description}: "
        f"{fmt_money(fiat)} → {fmt_money(tft)}, converted in {convert_seconds:.1f} s"
    )
    report = _bill_ahead(store, settings, {c.contract_id for c in contracts})
    bills = sorted(
        (
            event
            for c in contracts
            for row in store.read_stream(billing_stream(c.contract_id))
            if isinstance(event := row.envelope().decode(), UsageBilled)
        ),
        key=lambda bill: (bill.contract_id, bill.hour),
    )
    book = read_book(store)
    ledger = book.ledger
    billed = {bill.contract_id for bill in bills}
    return Payments(
        treasury=treasury.description,
        top_ups=top_ups,
        bills=bills,
        report=report,
        convert_seconds=convert_seconds,
        totals={currency.value: total for currency, total in sorted(ledger.totals().items())},
        balances={
            offtaker: ledger.balance(account_id(AccountKind.OFFTAKER, offtaker))
            for offtaker in offtakers
        },
        unbalanced=book.unbalanced,
        unbilled=sorted(c.contract_id for c in contracts if c.contract_id not in billed),
    )


def _bill_ahead(store: EventStore, settings: HeroSettings, contract_ids: set[str]) -> BillingReport:
    """Bill this run's contracts on a clock ``BILLED_HOURS`` ahead, in this process.

    Only this run's: the store may hold other contracts (earlier runs, a user's own), and
    billing them hours that have not happened would charge their owners for nothing.
    """
    clock = ManualClock(SystemClock().now() + timedelta(hours=BILLED_HOURS))
    return billing_service(settings, store, clock).run(contract_ids=contract_ids)


def _payments_table(payments: Payments) -> Table:
    table = Table("offtaker", "top-up", "TFT credited", "hours billed", "TFT billed",
                  "balance", title="payments")  # fmt: skip
    for top_up in payments.top_ups:
        bills = [b for b in payments.bills if b.offtaker_id == top_up.offtaker_id]
        billed = sum((b.amount for b in bills), Money.zero("TFT"))
        table.add_row(
            top_up.offtaker_id,
            fmt_money(top_up.fiat),
            fmt_money(top_up.tft) if top_up.tft else "-",
            str(len(bills)),
            fmt_money(billed),
            fmt_money(payments.balances[top_up.offtaker_id]),
        )
    return table


def _say_billing(payments: Payments, say: Callable[[str], None]) -> None:
    figures = payments.summary()
    say(
        f"[bold]billing[/] billing clock fast-forwarded {BILLED_HOURS} h for the demo: "
        f"{figures['hours_billed']} contract-hours billed, {fmt_money(figures['billed_tft'])} "
        f"→ farmers {fmt_money(figures['farmers_tft'])}, pool {fmt_money(figures['pool_tft'])}, "
        f"ThreeFold {fmt_money(figures['threefold_tft'])}"
    )
    print_report(payments.report, say)
    sums = ", ".join(f"{currency} {_plain(total)}" for currency, total in payments.totals.items())
    verdict = "balanced" if payments.balanced else "[bold red]NOT balanced[/]"
    say(f"[bold]ledger[/] totals {sums}: {verdict}")


def _payments_line(figures: dict[str, Any]) -> str:
    return (
        f"{figures['top_ups']} top-ups {fmt_money(figures['top_up_usd'])} → "
        f"{fmt_money(figures['top_up_tft'])}, {figures['hours_billed']} contract-hours billed "
        f"{fmt_money(figures['billed_tft'])} (farmers {fmt_money(figures['farmers_tft'])}, "
        f"pool {fmt_money(figures['pool_tft'])}, ThreeFold {fmt_money(figures['threefold_tft'])}), "
        f"ledger {'balanced' if figures['ledger_balanced'] else 'NOT balanced'}"
    )


# -- output ---------------------------------------------------------------------------------------


def _declines_table(declines: list[DeclineRow]) -> Table:
    table = Table("offtaker", "workload", "farm", "reasons", "detail", title="declines")
    for d in declines:
        reasons = ", ".join(r.value for r in d.reasons)
        detail = d.detail if len(d.detail) <= 60 else d.detail[:59] + "…"
        table.add_row(d.offtaker_id, d.workload_id, d.farm_id, f"[red]{reasons}[/]", detail)
    return table


def _summary(
    outcome: Outcome,
    story: Scenario,
    agents: Agents,
    scaling: Scaling | None,
    payments: Payments | None,
) -> dict[str, Any]:
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
        **({"scaling": scaling.summary()} if scaling is not None else {}),
        **(payments.summary() if payments is not None else {}),
    }


def _line(summary: dict[str, Any]) -> str:
    return (
        f"{summary['contracts']} contracts on {summary['farms']} farms for "
        f"{summary['offtakers']} offtakers, {summary['declines']} declines, "
        f"{summary['approvals']} approvals; {summary['negotiations']} negotiations settled in "
        f"{summary['seconds']:.1f} s ({summary['agents']})"
    )


def _contracts(outcome: Outcome, story: Scenario) -> list[ContractRow]:
    return sorted(
        (c for c in outcome.report.contracts if c.offtaker_id in story.offtakers),
        key=lambda c: (c.offtaker_id, c.workload_id, c.farm_id, c.node_id),
    )


def _declines(outcome: Outcome, story: Scenario) -> list[DeclineRow]:
    return sorted(
        (d for d in outcome.report.declines if d.offtaker_id in story.offtakers),
        key=lambda d: (d.offtaker_id, d.workload_id, d.farm_id),
    )


def _print_market(outcome: Outcome, story: Scenario) -> None:
    stdout.print(contracts_table(_contracts(outcome, story), title="contracts"))
    stdout.print(_declines_table(_declines(outcome, story)))


def _print_json(
    outcome: Outcome,
    story: Scenario,
    summary: dict[str, Any],
    scaling: Scaling | None,
    payments: Payments | None,
) -> None:
    document: dict[str, Any] = {
        "run": story.tag,
        "summary": summary,
        "contracts": _contracts(outcome, story),
        "declines": _declines(outcome, story),
        "approvals": outcome.approvals,
        "negotiations": _ours(outcome.report, story),
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
        approve=lambda report: _approve_pending(service, report, story, say),
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


def demo(
    keep: Annotated[bool, typer.Option(help="leave the stack running afterwards")] = False,
    in_process: Annotated[
        bool,
        typer.Option(help="no stack: run the agents in this process, over the event store"),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            min=1,
            help="seconds to wait for the negotiations to settle, the scale-up, the migration",
        ),
    ] = 30.0,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Start the stack, let the agents negotiate a small fleet's capacity on Ray, show the
    contracts and the declines; spike an autoscaled workload's cpu (it scales out across both
    grids), fail one of its nodes (its replica moves, the SLA outcome is recorded); top up the
    offtakers through the payment webhook, bill a few hours (on a fast-forwarded clock), show
    who was paid and the SLA refund; stop what it started."""
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
            _print_market(outcome, story)
        contracts = _contracts(outcome, story)
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
        summary = _summary(outcome, story, agents, scaling, payments)
        if as_json:
            _print_json(outcome, story, summary, scaling, payments)
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
    line = _line(summary)
    if scaling is not None:
        line += f"; {scaling.line()}"
    if payments is not None:
        line += f"; {_payments_line(summary)}"
    out.print(f"[bold green]demo ok:[/] {line}; {time.monotonic() - began:.1f} s in all")
