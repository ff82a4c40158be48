"""The market twin's clock and its events: hour by hour, the real market runs on a manual clock.

Each simulated hour: the day's TFT price is set, the top-ups due are paid to the treasury and
converted, the node failures and repairs due are sent to the market (a failure is recorded when
it happens; the agents first run after its detection delay, so the contracts on the node are
down until they are moved, and their SLA outcomes count it), the autoscaled replicas
report their load from their workload's trace, and the agents run (``agents.local``) from one
wakeup to the next until the hour is over -- the clock jumps from event to event, it never
ticks through idle time. Then billing bills the hour, and the hour's figures are recorded.
Farmers of approve-mode farms approve their offers as they come.

Every rule is the market's own: :class:`~hero.market.service.MarketService`, the brains,
:class:`~hero.payments.billing.BillingService`, the treasury. All randomness comes from one
``random.Random(seed)``; all time from the :class:`~hero.domain.clock.ManualClock`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import count, islice

from agents.local import LocalMarket
from agents.treasury.oracle import FixedRateOracle
from agents.treasury.service import TreasuryService
from agents.treasury.webhook import PaymentNotice
from hero.domain.clock import ManualClock
from hero.domain.ledger import RevenueSplit
from hero.domain.pricing import cu, policy_named
from hero.market.service import CommandRejected, MarketService
from hero.market.views import MarketReport
from hero.payments.billing import BillingService, BillingSettings
from hero.simulate._traces import load_at
from hero.simulate.scenario import SimScenario, TopUp, Trace
from hero.store import EventStore, PoisonRow, decode_trusted, recorded_after
from schemas import (
    ApproveOffer,
    ChangeNodeStatus,
    Command,
    ContractCancelled,
    ContractCreated,
    ContractSuspended,
    Currency,
    Event,
    FiatConverted,
    Grid,
    NodeStatus,
    PolicyMode,
    ReplicaMigrated,
    ScaleDecided,
    SetFarmerPolicy,
    SetOfftakerMandate,
    SlaOutcomeRecorded,
    TransferKind,
    TransferPosted,
    UsageBilled,
    UtilizationSampled,
)

__all__ = ["LOGGED", "HourFigures", "Twin", "load_report"]

HOUR = timedelta(hours=1)
_FLAT = Trace()
_RATE_PLACES = Decimal("0.0000001")


#: The events the run's report reads besides the market report (:mod:`hero.simulate.report`);
#: of the transfer legs only the SLA refunds.
LOGGED: tuple[type[Event], ...] = (
    ContractCreated,
    ContractCancelled,
    ContractSuspended,
    ScaleDecided,
    ReplicaMigrated,
    SlaOutcomeRecorded,
    UsageBilled,
    FiatConverted,
)


def load_report(store: EventStore, report: MarketReport, logged: list[Event] | None = None) -> int:
    """Fold what the store committed since ``report`` last read, and add to ``logged`` (when
    given) the events of :data:`LOGGED` and the SLA refund legs among them, in log order;
    returns the rows it could not read (stepped over, as every follower does, and counted in
    the report's checks)."""
    unreadable = 0
    for row in recorded_after(store, report.position, 5000):
        try:
            envelope, event = decode_trusted(row)
        except PoisonRow:
            unreadable += 1
            report.position = max(report.position, row.position)
            continue
        report.apply(envelope, event)
        if logged is not None and _logged(event):
            logged.append(event)
    return unreadable


def _logged(event: Event) -> bool:
    if isinstance(event, TransferPosted):
        return event.kind == TransferKind.SLA_PENALTY
    return isinstance(event, LOGGED)


@dataclass(frozen=True)
class HourFigures:
    hour: int
    committed_cu: dict[Grid, Decimal]
    total_cu: dict[Grid, Decimal]
    live_contracts: int
    nodes_down: int
    overcommitted: tuple[str, ...]


@dataclass
class Twin:
    """One run over ``store`` (empty), driven by ``clock`` from the scenario's start."""

    scenario: SimScenario
    fleet: list[Command]
    store: EventStore
    clock: ManualClock
    rng: random.Random
    hours: list[HourFigures] = field(default_factory=list)
    rates: list[Decimal] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)
    """(hour, node) of each failure, as it happened."""
    approvals: int = 0

    def __post_init__(self) -> None:
        pricing = policy_named(self.scenario.pricing)
        self.service = MarketService(self.store, self.clock, actor="simulation", pricing=pricing)
        self.market = LocalMarket(self.store, self.clock, self.service)
        # the simulated price path: the day's TFT price, set each day
        self.oracle = FixedRateOracle(
            {Currency.USD: self.scenario.price.start}, self.clock, source="simulation"
        )
        quotes = count(1)
        self.treasury = TreasuryService(
            self.store, self.oracle, self.clock, new_quote_id=lambda: f"quote-{next(quotes)}"
        )
        split = self.scenario.split
        settings = BillingSettings(
            split=RevenueSplit(split.farmer / 100, split.pool / 100, split.threefold / 100),
            pricing=pricing,
        )
        self.billing = BillingService(self.store, self._tft_per_usd, self.clock, settings=settings)
        self.report = MarketReport()
        self._approve = {
            c.farm_id
            for c in self.fleet
            if isinstance(c, SetFarmerPolicy) and c.policy.mode == PolicyMode.APPROVE
        }
        self._traces = {
            (o.offtaker_id, workload): trace
            for o in self.scenario.offtakers
            for workload, trace in o.traces.items()
        }
        self._autoscaled = {
            (o.offtaker_id, w.workload_id)
            for o in self.scenario.offtakers
            for w in o.mandate.workloads
            if w.autoscale is not None
        }
        self._repairs: dict[int, list[str]] = {}
        self.logged: list[Event] = []
        """The events of :data:`LOGGED` (and SLA refund legs) the report has folded, in order."""
        self.unreadable = 0
        """The rows the report could not read, stepped over."""
        self._offers_seen = 0
        self._awaiting: set[str] = set()
        """Offers of approve-mode farms made for approval, open when last looked at."""
        self._looked_at = -1
        """The log position of the last look for offers to approve."""

    def load(self) -> None:
        """Bring the twin's market report up to the log's end, keeping what the run's report
        reads (:attr:`logged`, :attr:`unreadable`): the log is decoded once, not again at
        the end."""
        self.unreadable += load_report(self.store, self.report, self.logged)

    def _tft_per_usd(self) -> Decimal:
        return self.oracle.rate(Currency.USD).tft_per_unit

    # -- the run ------------------------------------------------------------------------------

    def start(self) -> None:
        """The fleet, its policies and the offtakers' mandates, at the scenario's start."""
        self.clock.set(self.scenario.start)
        with self.store.group_commit():
            for command in self.fleet:
                self.service.handle(command)
            for offtaker in self.scenario.offtakers:
                self.service.handle(
                    SetOfftakerMandate(
                        command_id=f"sim.mandate.{offtaker.offtaker_id}",
                        offtaker_id=offtaker.offtaker_id,
                        mandate=offtaker.mandate,
                    )
                )

    def run(
        self,
        days: int,
        on_day: Callable[[int], None] = lambda _: None,
        *,
        on_hour: Callable[[int], None] = lambda _: None,
    ) -> None:
        """``days`` from the start; ``on_day`` and ``on_hour`` are told each simulated day and
        hour (from 0) as it begins."""
        self.start()
        top_ups = self._top_ups(days)
        failures = {(f.day * 24 + f.hour): f for f in self.scenario.failures}
        for hour in range(days * 24):
            at = self.scenario.start + hour * HOUR
            self.clock.set(at)
            if hour % 24 == 0:
                self._walk_price(hour // 24)
                on_day(hour // 24)
            on_hour(hour)
            self._pay(top_ups.get(hour, []), hour)
            self._repair(hour)
            if hour in failures:
                failure = failures[hour]
                self._fail(hour, failure.node_id, failure.repair_hours)
                # The market recorded the outage now; the agents, which have not run since,
                # hear of it only when it is detected.
                self.clock.set(at + timedelta(minutes=failure.detection_delay_minutes))
            self._sample(hour // 24, at)
            self._settle(at + HOUR)
            self.clock.set(at + HOUR)
            self.billing.run()
            self.hours.append(self._figures(hour))
        self._settle(self.clock.now())

    # -- the hour's parts ---------------------------------------------------------------------

    def _walk_price(self, day: int) -> None:
        path = self.scenario.price
        if day > 0:
            step = Decimal(repr(self.rng.uniform(-1, 1))) * path.daily_volatility
            moved = self._tft_per_usd() * (1 + step)
            self.oracle.set_rate(
                Currency.USD,
                min(path.ceiling, max(path.floor, moved)).quantize(_RATE_PLACES, ROUND_HALF_EVEN),
            )
        self.rates.append(self._tft_per_usd())

    def _top_ups(self, days: int) -> dict[int, list[TopUp]]:
        planned = self.scenario.top_ups
        if planned is None:  # each offtaker pays its monthly budget, every 30 days
            planned = [
                TopUp(day=day, offtaker_id=o.offtaker_id, amount_usd=o.mandate.budget_month.amount)
                for day in range(0, days, 30)
                for o in self.scenario.offtakers
            ]
        due: dict[int, list[TopUp]] = {}
        for top_up in planned:
            due.setdefault(top_up.day * 24 + top_up.hour, []).append(top_up)
        return due

    def _pay(self, top_ups: list[TopUp], hour: int) -> None:
        for index, top_up in enumerate(top_ups):
            self.treasury.receive(
                PaymentNotice(
                    provider_event_id=f"sim-{hour}-{index}-{top_up.offtaker_id}",
                    provider="simulation",
                    offtaker_id=top_up.offtaker_id,
                    amount=top_up.amount_usd,
                    currency=Currency.USD,
                    occurred_at=self.clock.now(),
                )
            )
        if top_ups:
            self.treasury.convert_pending()

    def _status(self, node_id: str, status: NodeStatus, hour: int) -> None:
        self.service.handle(
            ChangeNodeStatus(
                command_id=f"sim.{node_id}.{status.value}.{hour}",
                node_id=node_id,
                status=status,
                reason=f"simulation: {'failure' if status == NodeStatus.DOWN else 'repaired'}",
            )
        )

    def _fail(self, hour: int, node_id: str | None, repair_hours: int) -> None:
        self.load()
        if node_id is None:
            nodes = self.report.state.nodes
            up = sorted(n for n, node in nodes.items() if node.status == NodeStatus.UP)
            busy = sorted({c.node_id for c in self.report.contracts} & set(up))
            if not up:  # every node is down already: nothing left to fail
                return
            node_id = self.rng.choice(busy or up)
        self._status(node_id, NodeStatus.DOWN, hour)
        self.failures.append((hour, node_id))
        self._repairs.setdefault(hour + repair_hours, []).append(node_id)

    def _repair(self, hour: int) -> None:
        for node_id in self._repairs.pop(hour, []):
            self._status(node_id, NodeStatus.UP, hour)

    def _sample(self, day: int, at: datetime) -> None:
        self.load()
        sequence = int(at.timestamp())
        batch = []
        for c in sorted(self.report.contracts, key=lambda c: c.contract_id):
            if (c.offtaker_id, c.workload_id) not in self._autoscaled:
                continue
            trace = self._traces.get((c.offtaker_id, c.workload_id), _FLAT)
            sample = UtilizationSampled(
                sample_id=f"{c.contract_id}.{sequence}",
                workload_id=c.workload_id,
                replica_id=c.contract_id,
                contract_id=c.contract_id,
                node_id=c.node_id,
                cpu=load_at(trace, day, at, self.rng),
                memory=Decimal("0.5"),
                disk=Decimal("0.1"),
                network_bytes=0,
                sampled_at=at,
            )
            batch.append((sample, sequence))
        if batch:
            self.market.sample(batch, at)

    def _settle(self, until: datetime) -> None:
        """Run the agents from event to event until nothing is due before ``until``."""
        while True:
            self.market.run_until_quiet()
            if self._approve_pending():
                continue
            now = self.clock.now()
            wakeups = [
                w
                for brain in self.market.agents.brains.values()
                if (w := brain.next_wakeup()) is not None and now < w < until
            ]
            if not wakeups:
                return
            self.clock.set(min(wakeups))

    def _approve_pending(self) -> int:
        """Act as the farmers of approve-mode farms: approve what waits for them. Only when
        something was recorded since the last look: an offer awaits approval from when it is
        made, and the last look approved every one that did."""
        if not self._approve:
            return 0
        self.load()
        if self.report.position == self._looked_at:
            return 0
        self._looked_at = self.report.position
        now = self.clock.now()
        approved = 0
        for offer_id in sorted(self._awaiting_farmers()):
            row = self.report.offer(offer_id)
            if row is None or not row.awaits_approval(now):
                continue
            command = ApproveOffer(
                command_id=f"sim.approve.{offer_id}",
                negotiation_id=row.negotiation_id,
                offer_id=offer_id,
            )
            try:
                if not self.service.handle(command, actor=f"farmer:{row.farm_id}").duplicate:
                    approved += 1
            except CommandRejected:  # the negotiation closed meanwhile
                continue
        self.approvals += approved
        return approved

    def _awaiting_farmers(self) -> set[str]:
        """The open offers made for approval by approve-mode farms: those made since the last
        look join the ones still open (an offer's firmness is as made; an offer that is no
        longer open never opens again), so a look does not walk every offer ever made."""
        offers = self.report.state.offers
        if len(offers) < self._offers_seen:  # the model dropped some: look at them all again
            self._offers_seen, self._awaiting = 0, set()
        for offer_id in islice(reversed(offers), len(offers) - self._offers_seen):
            offer = offers[offer_id]
            if offer.farm_id in self._approve and not offer.firm:
                self._awaiting.add(offer_id)
        self._offers_seen = len(offers)
        self._awaiting = {o for o in self._awaiting if o in offers and offers[o].status == "open"}
        return self._awaiting

    def _figures(self, hour: int) -> HourFigures:
        self.load()
        committed = dict.fromkeys(Grid, Decimal(0))
        total = dict.fromkeys(Grid, Decimal(0))
        over = []
        down = 0
        for node in self.report.state.nodes.values():  # the model's nodes, not listing rows
            used = node.committed
            committed[node.grid] += cu(used)
            total[node.grid] += cu(node.total)
            down += node.status != NodeStatus.UP
            if not (used + node.held).fits_in(node.total):
                over.append(node.node_id)
        return HourFigures(
            hour, committed, total, len(self.report.contracts), down, tuple(sorted(over))
        )
