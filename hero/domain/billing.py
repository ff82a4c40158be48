"""Hourly billing rules (pure): which hours a contract owes, and what one hour costs.

A contract runs over intervals: from its start until it ends, is cancelled, or is suspended
for want of funds; a resume opens a new interval. Every UTC hour that overlaps an interval
is billed once, prorated by the seconds it ran (TFChain bills by elapsed seconds too), and
only once the hour is over.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from hero.domain.ledger import RevenueSplit, split_revenue
from hero.domain.pricing import GENESIS, PricingPolicy, hourly_cost
from schemas import ContractCreated, Money

__all__ = [
    "HOUR",
    "BillingContract",
    "HourBill",
    "bill_hour",
    "hour_of",
    "hourly_usd",
]

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
    amount = Money.rounded(usd.amount * rate, "TFT")
    farmer, pool, threefold = split_revenue(amount, split)
    return HourBill(hour, seconds, usd, rate, amount, farmer, pool, threefold)


@dataclass
class BillingContract:
    """What billing knows of one contract, folded from its events."""

    contract: ContractCreated
    intervals: list[tuple[datetime, datetime | None]] = field(default_factory=list)
    billed: set[datetime] = field(default_factory=set)
    suspended_at: datetime | None = None
    grace_ends_at: datetime | None = None
    closed: bool = False
    """Cancelled after its grace period: what it still owes is written off."""
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

    def suspend(self, at: datetime, grace_ends_at: datetime) -> None:
        self.stop(at)
        self.suspended_at, self.grace_ends_at = at, grace_ends_at

    def resume(self, at: datetime) -> None:
        self.suspended_at = self.grace_ends_at = None
        if at < self.term_end:
            self.intervals.append((at, self.term_end))

    def seconds_in(self, hour: datetime) -> int:
        end_of_hour = hour + HOUR
        total = 0
        for start, end in self.intervals:
            stop = end_of_hour if end is None else min(end, end_of_hour)
            total += max(0, int((stop - max(start, hour)).total_seconds()))
        return min(total, 3600)

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
