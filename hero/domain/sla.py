"""How an ended contract did against its farmer's SLA (pure: no I/O, no clock).

A contract is judged over its life, ``starts_at`` to when it ended, at most the 720-hour month
TFChain bills (:mod:`hero.domain.placement`); the downtime is the part of the node's outages
that falls inside that life. The penalty is :func:`hero.domain.placement.sla_penalty`'s, so
the figures recorded and the refund paid come from one rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from hero.domain.placement import sla_penalty
from schemas import ContractCreated, Money, SlaOutcomeRecorded

__all__ = ["MONTH_HOURS", "Outage", "downtime", "hours", "sla_outcome"]

Outage = tuple[datetime, datetime | None]
"""When a node left UP, and when it came back (None: it has not yet)."""

#: TFChain bills a 720-hour month (cost.rs); the SLA is judged over at most that.
MONTH_HOURS = Decimal(720)

_PLACES = Decimal("0.0000001")
_SECONDS_PER_HOUR = Decimal(3600)


def hours(span: timedelta) -> Decimal:
    """A span in hours, to 7 places (a third of a millisecond), without passing through a
    float: ``timedelta.total_seconds()`` would."""
    seconds = Decimal(span.days * 86_400 + span.seconds) + Decimal(span.microseconds) / 10**6
    return (seconds / _SECONDS_PER_HOUR).quantize(_PLACES, rounding=ROUND_HALF_EVEN)


def downtime(outages: Iterable[Outage], start: datetime, end: datetime) -> timedelta:
    """How much of ``start`` to ``end`` the outages cover; an open outage runs to ``end``.
    Overlapping outages are merged first, so no moment counts twice."""
    spans = sorted((max(down, start), min(end if up is None else up, end)) for down, up in outages)
    total, reached = timedelta(0), start
    for down, up in spans:
        down = max(down, reached)
        if up > down:
            total += up - down
            reached = up
    return total


def sla_outcome(
    contract: ContractCreated,
    outages: Iterable[Outage],
    ended_at: datetime,
    price_hour: Money,
) -> SlaOutcomeRecorded | None:
    """The SLA outcome of ``contract`` ending at ``ended_at`` on a node with ``outages``,
    ``price_hour`` being what an hour of it is billed; None when it saw no downtime (at
    7 places of an hour) or had no life to judge.

    ``period_hours = min(life, 720)``, ``hours_down = min(downtime in its life, period)``,
    ``uptime_pct = (period - down) / period * 100`` rounded to 7 places half-even; ``met``
    compares without dividing, as :func:`sla_penalty` does, so exactly the promised uptime
    is met.
    """
    period = min(hours(ended_at - contract.starts_at), MONTH_HOURS)
    if period <= 0:
        return None
    down = min(hours(downtime(outages, contract.starts_at, ended_at)), period)
    if down == 0:
        return None
    uptime = ((period - down) * 100 / period).quantize(_PLACES, rounding=ROUND_HALF_EVEN)
    return SlaOutcomeRecorded(
        contract_id=contract.contract_id,
        offtaker_id=contract.offtaker_id,
        farm_id=contract.farm_id,
        node_id=contract.node_id,
        sla=contract.sla,
        started_at=contract.starts_at,
        ended_at=ended_at,
        period_hours=period,
        hours_down=down,
        uptime_pct=uptime,
        met=(period - down) * 100 >= contract.sla.uptime_pct * period,
        penalty=sla_penalty(price_hour, down, contract.sla, period),
    )
