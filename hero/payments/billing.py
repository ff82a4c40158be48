"""Hourly billing on the event store: each contract-hour billed once, funds and grace periods.

A bill is one ledger post (the offtaker pays the farmer, the farming pool and ThreeFold) with
its ``UsageBilled`` record on the contract's billing stream; its command id is the contract
and the hour, so a billing run that repeats or dies half-way bills nothing twice. A contract
whose owner cannot pay an hour is suspended for the grace period; a top-up lets the next run
bill the hours owed and resume it; at the end of the grace period it is cancelled.

A contract is *metered* once a ``UsageRecorded`` fact exists for it: each of its hours is then
billed from the hour's fact (``basis="metered"``), and an hour without one waits for it until
``usage_wait`` has passed since the end of the hour, then is billed for the seconds the
contract was active (``basis="active"``, as every hour of an unmetered contract). Whichever the
basis, the command id stays the contract and the hour: an hour is billed once.

An ended contract's SLA penalty (``SlaOutcomeRecorded`` with a penalty) is refunded to the
offtaker in one post, command id ``sla-<contract>``, converted at the bills' rate: from the
farmer's account as far as its balance goes, the rest from the farming pool. What neither can
cover is reported, not posted; a penalty nothing can be paid of waits for the next run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from hero.domain.billing import (
    HOUR,
    BillingContract,
    bill_hour,
    bill_usd,
    billing_basis,
    cover_penalty,
    hour_of,
    hourly_usd,
    metered_usd,
    penalty_tft,
)
from hero.domain.clock import Clock, SystemClock
from hero.domain.errors import Rejected
from hero.domain.ledger import AccountKind, RevenueSplit, Transfer, account_id, account_stream
from hero.domain.pricing import GENESIS, PricingPolicy
from hero.market.service import MarketService
from hero.model import HourUsage, MarketState, SlaOutcome, apply
from hero.payments.billing_snapshot import BillingDecisions, decode_billing, encode_billing
from hero.payments.ledger import LedgerService
from hero.payments.snapshot_restore import newest_readable
from hero.store import (
    ANY_VERSION,
    EventStore,
    NewEvent,
    PoisonRow,
    SnapshotKeeper,
    decode_event,
    recorded_after,
    skip_row,
)
from schemas import (
    BalanceLow,
    CancelContract,
    ContractCancelled,
    ContractCreated,
    ContractResumed,
    ContractSuspended,
    Event,
    Money,
    SlaOutcomeRecorded,
    TransferKind,
    TransferPosted,
    UsageBilled,
    UsageRecorded,
)

__all__ = ["BillingReport", "BillingService", "BillingSettings", "billing_stream"]

GRACE_CANCEL_REASON = "grace_period_ended"
#: The name billing records its skipped rows under.
SOURCE = "billing"
#: The events of the part of the market model billing reads: its contracts' runs and hours
#: billed, usage facts, SLA outcomes and their refunds, low-balance warnings. The rest of
#: the state stays empty: billing decodes only what it needs from a long log.
_FOLLOWED = frozenset(
    kind.__name__
    for kind in (
        ContractCreated,
        ContractCancelled,
        UsageBilled,
        ContractSuspended,
        ContractResumed,
        BalanceLow,
        TransferPosted,
        UsageRecorded,
        SlaOutcomeRecorded,
    )
)


def billing_stream(contract_id: str) -> str:
    return f"billing-{contract_id}"


@dataclass(frozen=True, slots=True)
class BillingSettings:
    split: RevenueSplit = field(default_factory=RevenueSplit)
    grace: timedelta = timedelta(days=14)
    low_balance_hours: Decimal = Decimal(24)
    pricing: PricingPolicy = GENESIS
    pool_account: str = account_id(AccountKind.POOL, "grid")
    threefold_account: str = account_id(AccountKind.THREEFOLD, "cooperative")
    usage_wait: timedelta = timedelta(hours=2)
    """How long after the end of an hour a metered contract's hour waits for its usage fact."""


@dataclass
class BillingReport:
    bills: list[UsageBilled] = field(default_factory=list)
    suspended: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    low_balance: list[str] = field(default_factory=list)
    sla_penalties: list[str] = field(default_factory=list)
    """Contracts whose SLA penalty this run posted."""
    sla_paid: Money = field(default_factory=lambda: Money.zero("TFT"))
    sla_unpaid: Money = field(default_factory=lambda: Money.zero("TFT"))
    """What this run owed in penalties that neither the farmers nor the pool could cover."""

    @property
    def total(self) -> Money:
        return sum((bill.amount for bill in self.bills), Money.zero("TFT"))


class BillingService:
    """Bills the hours that are over: a view over the market model, folded from the store."""

    def __init__(
        self,
        store: EventStore,
        usd_rate: Callable[[], Decimal],
        clock: Clock | None = None,
        *,
        settings: BillingSettings | None = None,
        ledger: LedgerService | None = None,
        market: MarketService | None = None,
        actor: str = "billing",
        snapshots: SnapshotKeeper | None = None,
    ):
        """With ``snapshots`` the first catch-up starts from the newest one (see
        :mod:`hero.payments.billing_snapshot`), and one is saved when the cadence says so."""
        self._store = store
        self._usd_rate = usd_rate
        self._clock = clock or SystemClock()
        self.settings = settings or BillingSettings()
        self._ledger = ledger or LedgerService(store, self._clock, actor=actor)
        self._market = market or MarketService(
            store, self._clock, actor=actor, pricing=self.settings.pricing
        )
        self._actor = actor
        self._position = 0
        self._state = MarketState()
        self._finished: set[str] = set()
        """Contracts billed to their end: their usage facts are read no more."""
        self._waived: set[str] = set()
        """Contracts whose penalty is less than a TFT unit at the rate it was read."""
        self._lock = threading.Lock()
        self._snapshots = snapshots
        self._restored = snapshots is None

    # -- the read side ------------------------------------------------------------------------

    @property
    def state(self) -> MarketState:
        """Billing's part of the market model, folded from the store (see :data:`_FOLLOWED`)."""
        return self._state

    @property
    def contracts(self) -> dict[str, BillingContract]:
        return self._state.billing

    @property
    def usage(self) -> dict[str, dict[datetime, HourUsage]]:
        """Usage facts by contract and hour (a contract with any is metered), of the contracts
        not yet billed to their end."""
        return {
            contract_id: usage.hours
            for contract_id, usage in self._state.usage.items()
            if usage.hours and contract_id not in self._finished
        }

    @property
    def penalties(self) -> dict[str, SlaOutcome]:
        """SLA outcomes with a penalty not posted yet, by contract."""
        return {
            contract_id: outcome
            for contract_id, outcome in self._state.sla_outcomes.items()
            if outcome.penalty.amount > 0
            and contract_id not in self._state.sla_paid
            and contract_id not in self._waived
        }

    def catch_up(self) -> None:
        if not self._restored:
            self._restored = True
            self._restore()
        for row in recorded_after(self._store, self._position):
            self._position = row.position
            if row.type in _FOLLOWED:
                try:
                    envelope, event = decode_event(row)
                except PoisonRow as error:  # an unreadable row must not stop billing
                    skip_row(self._store, SOURCE, row, error)
                    continue
                apply(self._state, envelope, event)
        self._snapshot_if_due()

    def _restore(self) -> None:
        """Start from the newest readable snapshot; none usable: the whole log, logged."""
        keeper = self._snapshots
        assert keeper is not None
        restored = newest_readable(keeper, self._store.current_position(), decode_billing)
        if restored is None:
            return
        found, (state, decisions) = restored
        self._state, self._position = state, found.position
        self._finished, self._waived = decisions.finished, decisions.waived
        keeper.started_from(found.position)

    def _snapshot_if_due(self) -> None:
        keeper = self._snapshots
        if keeper is None or not keeper.due(self._position):
            return
        decisions = BillingDecisions(set(self._finished), set(self._waived))
        keeper.save(self._position, encode_billing(self._state, decisions))

    # -- the write side -----------------------------------------------------------------------

    def run(
        self, until_hour: datetime | None = None, contract_ids: Collection[str] | None = None
    ) -> BillingReport:
        """Bill every hour that is over (up to ``until_hour`` included), then handle funds;
        only ``contract_ids`` when given."""
        with self._lock:
            self.catch_up()
            now = self._clock.now()
            limit = now if until_hour is None else min(now, hour_of(until_hour) + HOUR)
            rate = self._usd_rate()
            report = BillingReport()
            chosen = sorted(self.contracts if contract_ids is None else contract_ids)
            for contract_id in chosen:
                if contract_id in self.contracts:
                    self._settle(self.contracts[contract_id], limit, now, rate, report)
                    self.catch_up()
            self._forget_finished_usage(chosen)
            for contract_id, outcome in sorted(self.penalties.items()):
                if contract_ids is None or contract_id in contract_ids:
                    self._pay_penalty(outcome, rate, report)
            self.catch_up()
            self._signal_low_balances(now, rate, report, set(chosen))
            self.catch_up()
            return report

    def _settle(
        self,
        contract: BillingContract,
        limit: datetime,
        now: datetime,
        rate: Decimal,
        report: BillingReport,
    ) -> None:
        paid_all = True
        usage, wait = self._state.usage.get(contract.contract.contract_id), self.settings.usage_wait
        facts = usage.hours if usage is not None else None
        for hour, seconds in list(contract.hours_due(limit)):
            fact = facts.get(hour) if facts else None  # there iff the basis is "metered"
            if billing_basis(bool(facts), fact is not None, hour, now, wait) is None:
                continue  # waits for its usage fact; later hours may have theirs
            try:
                bill = self._bill(contract, hour, seconds, rate, fact)
            except Rejected as refused:
                if refused.reason != "insufficient_funds":
                    raise
                paid_all = False
                if contract.suspended_at is None:
                    self._suspend(contract, hour, now)
                    report.suspended.append(contract.contract.contract_id)
                break
            if bill is not None:
                report.bills.append(bill)
        if contract.suspended_at is None or contract.closed:
            return
        if paid_all:
            self._resume(contract, now)
            report.resumed.append(contract.contract.contract_id)
        elif contract.grace_ends_at is not None and now >= contract.grace_ends_at:
            self._cancel(contract)
            report.cancelled.append(contract.contract.contract_id)

    def _bill(
        self,
        contract: BillingContract,
        hour: datetime,
        seconds: int,
        rate: Decimal,
        fact: HourUsage | None = None,
    ) -> UsageBilled | None:
        """Bill ``hour``: from its usage ``fact`` when given, else for its active ``seconds``."""
        terms, split, pricing = contract.contract, self.settings.split, self.settings.pricing
        if fact is None:
            priced = bill_hour(hourly_usd(terms, pricing), hour, seconds, rate, split)
        else:
            # the seconds the fact reports; a fact of 0 s (traffic only) keeps the active ones
            seconds = fact.seconds or seconds
            priced = bill_usd(metered_usd(terms, fact, pricing), hour, seconds, rate, split)
        bill_id = f"bill-{terms.contract_id}-{hour:%Y%m%dT%H}"
        payer = account_id(AccountKind.OFFTAKER, terms.offtaker_id)
        payees = [
            (account_id(AccountKind.FARMER, terms.farm_id), priced.farmer_share, "farmer"),
            (self.settings.pool_account, priced.pool_share, "pool"),
            (self.settings.threefold_account, priced.threefold_share, "threefold"),
        ]
        bill = UsageBilled(
            bill_id=bill_id,
            contract_id=terms.contract_id,
            offtaker_id=terms.offtaker_id,
            farm_id=terms.farm_id,
            grid=terms.grid,
            hour=hour,
            seconds=seconds,
            usd=priced.usd,
            rate=rate,
            amount=priced.amount,
            farmer_share=priced.farmer_share,
            pool_share=priced.pool_share,
            threefold_share=priced.threefold_share,
            basis="active" if fact is None else "metered",
        )
        transfers = [
            Transfer(f"{bill_id}-{who}", payer, payee, share, TransferKind.BILL, bill_id)
            for payee, share, who in payees
            if share.amount > 0
        ]
        result = self._ledger.post(
            transfers,
            bill_id,
            records=[(billing_stream(terms.contract_id), bill)],
            actor=self._actor,
            correlation_id=terms.contract_id,
        )
        return None if result.duplicate else bill

    def _forget_finished_usage(self, contract_ids: Collection[str]) -> None:
        """A cancelled contract billed to its end needs its usage facts no more."""
        usage, finished = self._state.usage, self._finished
        for contract_id in contract_ids:
            if contract_id not in usage or contract_id in finished:
                continue
            contract = self.contracts.get(contract_id)
            if contract is not None and contract.finished():
                finished.add(contract_id)

    def _pay_penalty(self, outcome: SlaOutcome, rate: Decimal, report: BillingReport) -> None:
        """Refund the penalty: the farmer pays what its balance allows, the pool the rest."""
        contract_id = outcome.contract_id
        owed = penalty_tft(outcome.penalty, rate)
        if owed.amount <= 0:
            self._waived.add(contract_id)  # less than a TFT unit at this rate
            return
        farmer = account_id(AccountKind.FARMER, outcome.farm_id)
        pool = self.settings.pool_account
        from_farmer, from_pool, unpaid = cover_penalty(
            owed, self._ledger.account(farmer).balance, self._ledger.account(pool).balance
        )
        payment_id = f"sla-{contract_id}"
        offtaker = account_id(AccountKind.OFFTAKER, outcome.offtaker_id)
        transfers = [
            Transfer(
                f"{payment_id}-{who}",
                payer,
                offtaker,
                amount,
                TransferKind.SLA_PENALTY,
                contract_id,
            )
            for payer, amount, who in ((farmer, from_farmer, "farmer"), (pool, from_pool, "pool"))
            if amount.amount > 0
        ]
        if not transfers:
            report.sla_unpaid += unpaid  # nothing to pay from yet: the next run tries again
            return
        try:
            result = self._ledger.post(
                transfers, payment_id, actor=self._actor, correlation_id=contract_id
            )
        except Rejected as refused:
            if refused.reason != "insufficient_funds":
                raise
            return  # a balance moved since it was read: the next run pays it
        # paid: its refund legs, once caught up, take it off the model's pending penalties
        if not result.duplicate:
            report.sla_penalties.append(contract_id)
            report.sla_paid += from_farmer + from_pool
            report.sla_unpaid += unpaid

    def _suspend(self, contract: BillingContract, hour: datetime, now: datetime) -> None:
        terms = contract.contract
        event = ContractSuspended(
            contract_id=terms.contract_id,
            offtaker_id=terms.offtaker_id,
            node_id=terms.node_id,
            unpaid_hour=hour,
            grace_ends_at=now + self.settings.grace,
        )
        command_id = f"suspend-{terms.contract_id}-{hour:%Y%m%dT%H}"
        self._append(billing_stream(terms.contract_id), event, command_id, now)

    def _resume(self, contract: BillingContract, now: datetime) -> None:
        terms, suspended = contract.contract, contract.suspended_at
        assert suspended is not None
        event = ContractResumed(
            contract_id=terms.contract_id, offtaker_id=terms.offtaker_id, node_id=terms.node_id
        )
        command_id = f"resume-{terms.contract_id}-{suspended:%Y%m%dT%H%M%S}"
        self._append(billing_stream(terms.contract_id), event, command_id, now)

    def _cancel(self, contract: BillingContract) -> None:
        terms = contract.contract
        self._market.handle(
            CancelContract(
                command_id=f"grace-cancel-{terms.contract_id}",
                contract_id=terms.contract_id,
                node_id=terms.node_id,
                reason=GRACE_CANCEL_REASON,
            ),
            actor=self._actor,
        )

    def _append(self, stream: str, event: Event, command_id: str, now: datetime) -> None:
        new = NewEvent.of(event, actor=self._actor, occurred_at=now, causation_id=command_id)
        self._store.append(stream, ANY_VERSION, [new], command_id)

    def _signal_low_balances(
        self, now: datetime, rate: Decimal, report: BillingReport, chosen: set[str]
    ) -> None:
        hourly: dict[str, Decimal] = {}
        for contract_id, contract in self.contracts.items():
            if contract_id in chosen and contract.running(now):
                terms = contract.contract
                usd = hourly_usd(terms, self.settings.pricing).amount
                hourly[terms.offtaker_id] = hourly.get(terms.offtaker_id, Decimal(0)) + usd * rate
        for offtaker_id, cost in sorted(hourly.items()):
            account = account_id(AccountKind.OFFTAKER, offtaker_id)
            if cost <= 0 or account in self._state.low_balance:
                continue
            balance = self._ledger.account(account).balance
            hours_left = (balance.amount / cost).quantize(Decimal("0.01"))
            if hours_left >= self.settings.low_balance_hours:
                continue
            event = BalanceLow(
                account_id=account,
                offtaker_id=offtaker_id,
                balance=balance,
                hourly_cost=Money.rounded(cost, "TFT"),
                hours_left=hours_left,
            )
            command_id = f"balance-low-{account}-{now:%Y%m%dT%H}"
            self._append(account_stream(account), event, command_id, now)
            report.low_balance.append(account)
