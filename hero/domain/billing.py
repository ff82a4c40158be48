"""Hourly billing rules (pure): which hours a contract owes, and what one hour costs.

A contract runs over intervals: from its start until it ends, is cancelled, or is suspended
for want of funds; a resume opens a new interval. Every UTC hour that overlaps an interval
is billed once, prorated by the seconds it ran (TFChain bills by elapsed seconds too; a
second begun counts whole, so a contract ended within its first second is billed one), and
only once the hour is over.

A *metered* contract (one the usage aggregator has reported on) is billed from each hour's
usage fact instead (:func:`metered_usd`); an hour whose fact is late waits for it, up to a
limit, then falls back to the seconds it was active (:func:`billing_basis`).

An SLA penalty (``SlaOutcomeRecorded``) is refunded to the offtaker from the farmer's account
as far as it goes, then from the farming pool (:func:`cover_penalty`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from typing import Literal, Protocol

from hero.domain.ledger import RevenueSplit, split_revenue
from hero.domain.pricing import GENESIS, PricingPolicy, hourly_cost
from schemas import ContractCreated, Money

__all__ = [
    "HOUR",
    "Basis",
    "BillingContract",
    "HourBill",
    "UsageFigures",
    "bill_hour",
    "bill_usd",
    "billing_basis",
    "cover_penalty",
    "hour_of",
    "hourly_usd",
    "metered_usd",
    "penalty_tft",
]

Basis = Literal["active", "metered"]
"""How an hour was billed: for the seconds the contract was active, or from its usage fact."""

HOUR = timedelta(hours=1)
_SECONDS_PER_HOUR = Decimal(3600)


def hour_of(moment: datetime) -> datetime:
    """The start of the UTC hour that holds ``moment``."""
    return moment.replace(minute=0, second=0, microsecond=0)


def hourly_usd(contract: ContractCreated, policy: PricingPolicy = GENESIS) -> Money:
    """Grid 3 capacity is billed at TFChain's CU/SU prices; Grid 4 at the negotiated price."""
    if contract.grid == "grid3":
        return hourly_cost(contract.resources, policy).usd_hour
    return contract.price_hour


class UsageFigures(Protocol):
    """What pricing reads of an hour's usage fact (``UsageRecorded``, or the market model's
    record of it)."""

    @property
    def cu_hours(self) -> Decimal: ...
    @property
    def su_hours(self) -> Decimal: ...
    @property
    def nu_gb(self) -> Decimal: ...
    @property
    def seconds(self) -> int: ...


def metered_usd(
    contract: ContractCreated, fact: UsageFigures, policy: PricingPolicy = GENESIS
) -> Money:
    """What one hour of a metered contract costs, from its usage fact, rounded once.

    Grid 3 at ``policy``: ``cu_hours * cu_hour + su_hours * su_hour + nu_gb * nu_gb`` plus the
    contract's public IPv4s for the share of the hour the fact reports (``seconds / 3600``).
    Grid 4 at the negotiated price for the seconds reported: ``price_hour * seconds / 3600``;
    the price covers the capacity as a whole, traffic included, so it adds nothing for it.
    """
    share = Decimal(fact.seconds) / _SECONDS_PER_HOUR
    with localcontext() as context:
        context.prec = 60  # exact until the single rounding
        if contract.grid == "grid3":
            exact = (
                fact.cu_hours * policy.cu_hour.amount
                + fact.su_hours * policy.su_hour.amount
                + fact.nu_gb * policy.nu_gb.amount
                + contract.resources.ipv4 * policy.ipv4_hour.amount * share
            )
            return Money.rounded(exact, policy.cu_hour.currency)
        return Money.rounded(contract.price_hour.amount * share, contract.price_hour.currency)


def billing_basis(
    metered: bool, has_fact: bool, hour: datetime, now: datetime, wait: timedelta
) -> Basis | None:
    """How to bill ``hour`` at ``now``, or None while it waits for its usage fact.

    An unmetered contract is billed for its active seconds; a metered one from the hour's
    fact once it is there, or for its active seconds once ``wait`` has passed since the end
    of the hour without one.
    """
    if not metered:
        return "active"
    if has_fact:
        return "metered"
    return "active" if now >= hour + HOUR + wait else None


@dataclass(frozen=True, slots=True)
class HourBill:
    hour: datetime
    seconds: int
    usd: Money
    rate: Decimal
    amount: Money
    farmer_share: Money
    pool_share: Money
    threefold_share: Money


def bill_hour(
    usd_per_hour: Money, hour: datetime, seconds: int, rate: Decimal, split: RevenueSplit
) -> HourBill:
    """USD for ``seconds`` of the hour, converted at ``rate`` TFT per USD, then shared out."""
    usd = Money.rounded(usd_per_hour.amount * seconds / _SECONDS_PER_HOUR, usd_per_hour.currency)
    return bill_usd(usd, hour, seconds, rate, split)


def bill_usd(
    usd: Money, hour: datetime, seconds: int, rate: Decimal, split: RevenueSplit
) -> HourBill:
    """An hour that costs ``usd``, converted at ``rate`` TFT per USD, then shared out."""
    amount = Money.rounded(usd.amount * rate, "TFT")
    farmer, pool, threefold = split_revenue(amount, split)
    return HourBill(hour, seconds, usd, rate, amount, farmer, pool, threefold)


@dataclass
class BillingContract:
    """What billing knows of one contract; the market model (``hero.model``) keeps one per
    contract, moved by its events."""

    contract: ContractCreated
    intervals: list[tuple[datetime, datetime | None]] = field(default_factory=list)
    billed: set[datetime] = field(default_factory=set)
    suspended_at: datetime | None = None
    grace_ends_at: datetime | None = None
    closed: bool = False
    """Cancelled after its grace period: what it still owes is written off."""
    cancelled: bool = False
    _cursor: datetime | None = None

    def __post_init__(self) -> None:
        if not self.intervals:
            self.intervals = [(self.contract.starts_at, self.term_end)]

    @property
    def term_end(self) -> datetime:
        return self.contract.starts_at + timedelta(hours=self.contract.term_hours)

    def running(self, now: datetime) -> bool:
        end = self.intervals[-1][1]
        return not self.closed and self.suspended_at is None and (end is None or now < end)

    def stop(self, at: datetime) -> None:
        start, end = self.intervals[-1]
        if end is None or at < end:
            self.intervals[-1] = (start, max(start, at))

    def cancel(self, at: datetime) -> None:
        """Cancelled at ``at``: while suspended, what it still owes is written off."""
        self.stop(at)
        self.cancelled = True
        self.closed = self.suspended_at is not None

    def suspend(self, at: datetime, grace_ends_at: datetime) -> None:
        self.stop(at)
        self.suspended_at, self.grace_ends_at = at, grace_ends_at

    def resume(self, at: datetime) -> None:
        """Paid again: it runs on from ``at``, unless it was cancelled before its unpaid hour
        was found (then the resume only clears the suspension: what ended stays ended)."""
        self.suspended_at = self.grace_ends_at = None
        if at < self.term_end and not self.cancelled:
            self.intervals.append((at, self.term_end))

    def seconds_in(self, hour: datetime) -> int:
        """The seconds it ran in ``hour``, a second it started counted whole: a contract that
        ran at all owes its hour a bill, even one ended within its first second."""
        end_of_hour = hour + HOUR
        ran = timedelta(0)
        for start, end in self.intervals:
            stop = end_of_hour if end is None else min(end, end_of_hour)
            ran += max(timedelta(0), stop - max(start, hour))
        return min(math.ceil(ran / timedelta(seconds=1)), 3600)

    def hours_due(self, now: datetime) -> Iterator[tuple[datetime, int]]:
        """Hours over by ``now`` that ran and are not billed yet, oldest first."""
        if self.closed:
            return
        if self._cursor is None:
            self._cursor = hour_of(self.intervals[0][0])
        # Hours behind the cursor are billed or ran zero seconds: both stay so for good.
        while self._cursor + HOUR <= now and (
            self._cursor in self.billed or self.seconds_in(self._cursor) == 0
        ):
            self.billed.discard(self._cursor)
            self._cursor += HOUR
        last = self.intervals[-1][1]
        hour = self._cursor
        while hour + HOUR <= now and (last is None or hour < last):
            if hour not in self.billed:
                seconds = self.seconds_in(hour)
                if seconds > 0:
                    yield hour, seconds
            hour += HOUR

    def mark_billed(self, hour: datetime) -> None:
        if self._cursor is None or hour >= self._cursor:
            self.billed.add(hour)

    def finished(self) -> bool:
        """Cancelled, and no hour of it is left to bill (or what is left was written off)."""
        if not self.cancelled:
            return False
        end = self.intervals[-1][1]
        if self.closed or end is None:
            return self.closed
        # every hour it ran is over once the hour holding its end is
        return next(self.hours_due(hour_of(end) + HOUR), None) is None


def penalty_tft(penalty: Money, rate: Decimal) -> Money:
    """An SLA penalty in TFT: converted at ``rate`` TFT per USD, as a bill is."""
    if penalty.currency == "TFT":
        return penalty
    return Money.rounded(penalty.amount * rate, "TFT")


def cover_penalty(owed: Money, farmer: Money, pool: Money) -> tuple[Money, Money, Money]:
    """(from the farmer, from the pool, unpaid): the farmer's balance pays first, the pool
    (kept for support and SLA) the rest; neither goes below zero."""
    nothing = Money.zero(owed.currency)
    from_farmer = min(max(farmer, nothing), owed)
    from_pool = min(max(pool, nothing), owed - from_farmer)
    return from_farmer, from_pool, owed - from_farmer - from_pool
