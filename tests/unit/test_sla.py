"""The SLA outcome of an ended contract: its life, the downtime in it, uptime, met, penalty.

Figures: the contract starts at T0 with a 99% SLA refunding 50% of the downtime's price, and
an hour of it is billed 0.02 USD; a penalty is 0.02 * hours_down * 0.5 = 0.01 USD per hour down.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from hero.domain.placement import sla_penalty
from hero.domain.sla import downtime, hours, sla_outcome
from schemas import ContractCreated, Grid, Money, Resources, Sla, SlaOutcomeRecorded

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
SLA = Sla(uptime_pct=Decimal(99), penalty_pct=Decimal(50))
PRICE = Money.of("0.02", "USD")


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def contract(sla: Sla = SLA, starts_at: datetime = T0) -> ContractCreated:
    return ContractCreated(
        contract_id="ctr_1",
        negotiation_id="neg_1",
        offer_id="o1",
        hold_id="o1",
        offtaker_id="off_1",
        workload_id="wl_1",
        farm_id="farm_1",
        node_id="node_1",
        grid=Grid.GRID4,
        resources=Resources.from_gb(cru=2, mru_gb=4, sru_gb=50),
        price_hour=PRICE,
        term_hours=720,
        sla=sla,
        starts_at=starts_at,
    )


def outcome(
    outages: list[tuple[datetime, datetime | None]], ended_at: datetime, sla: Sla = SLA
) -> SlaOutcomeRecorded | None:
    return sla_outcome(contract(sla), outages, ended_at, PRICE)


def test_a_contract_whose_node_never_went_down_has_no_outcome():
    assert outcome([], T0 + 100 * H) is None


def test_exactly_the_promised_uptime_is_met_and_owes_nothing():
    # 1 h down in 100 h: uptime 99%, the SLA's figure exactly
    result = outcome([(T0 + 10 * H, T0 + 11 * H)], T0 + 100 * H)

    assert result is not None
    assert (result.period_hours, result.hours_down) == (Decimal(100), Decimal(1))
    assert result.uptime_pct == Decimal(99)
    assert result.met is True
    assert result.penalty == usd("0")


def test_a_breach_owes_the_downtime_at_the_penalty_share_of_the_billed_price():
    # 2 h down in 100 h: uptime 98% < 99%: 0.02 * 2 * 50 / 100 = 0.02 USD
    result = outcome([(T0 + 10 * H, T0 + 12 * H)], T0 + 100 * H)

    assert result == SlaOutcomeRecorded(
        contract_id="ctr_1",
        offtaker_id="off_1",
        farm_id="farm_1",
        node_id="node_1",
        sla=SLA,
        started_at=T0,
        ended_at=T0 + 100 * H,
        period_hours=Decimal(100),
        hours_down=Decimal(2),
        uptime_pct=Decimal(98),
        met=False,
        penalty=usd("0.02"),
    )


def test_one_second_short_of_the_boundary_is_a_breach():
    one_hour_and_a_second = (T0 + 10 * H, T0 + 11 * H + timedelta(seconds=1))
    result = outcome([one_hour_and_a_second], T0 + 100 * H)
    assert result is not None
    assert result.hours_down == Decimal("1.0002778")  # 3601 s, to 7 places
    assert result.met is False
    assert result.penalty == sla_penalty(PRICE, Decimal("1.0002778"), SLA, Decimal(100))


def test_an_open_outage_runs_until_the_contract_ends():
    result = outcome([(T0 + 90 * H, None)], T0 + 100 * H)
    assert result is not None
    assert result.hours_down == Decimal(10)
    assert result.uptime_pct == Decimal(90)
    assert result.penalty == usd("0.1")


def test_only_the_part_of_an_outage_inside_the_contracts_life_counts():
    before = (T0 - 5 * H, T0 - 1 * H)  # ended before the contract started
    across_the_start = (T0 - 5 * H, T0 + 1 * H)
    after = (T0 + 200 * H, None)  # after it ended

    assert outcome([before, after], T0 + 100 * H) is None
    result = outcome([before, across_the_start, after], T0 + 100 * H)
    assert result is not None
    assert result.hours_down == Decimal(1)


def test_overlapping_outages_count_each_moment_once():
    result = outcome([(T0 + 10 * H, T0 + 13 * H), (T0 + 12 * H, T0 + 14 * H)], T0 + 100 * H)
    assert result is not None
    assert result.hours_down == Decimal(4)
    assert downtime([(T0, T0 + H), (T0, T0 + H)], T0, T0 + 2 * H) == H


def test_the_period_is_capped_at_the_720_hour_month():
    # 10 h down in a life of 1000 h: judged over 720 h, 710 / 720 = 98.6111111%
    result = outcome([(T0 + 500 * H, T0 + 510 * H)], T0 + 1000 * H)
    assert result is not None
    assert (result.period_hours, result.hours_down) == (Decimal(720), Decimal(10))
    assert result.uptime_pct == Decimal("98.6111111")
    assert result.penalty == usd("0.1")


def test_downtime_beyond_the_period_is_capped_at_it():
    result = outcome([(T0, None)], T0 + 1000 * H)
    assert result is not None
    assert (result.period_hours, result.hours_down, result.uptime_pct) == (
        Decimal(720),
        Decimal(720),
        Decimal(0),
    )
    assert result.penalty == usd("7.2")  # 0.02 * 720 * 50%


def test_uptime_is_rounded_to_seven_places_half_even():
    # 1 h down in 3 h: 66.666...% -> 66.6666667
    result = outcome([(T0 + H, T0 + 2 * H)], T0 + 3 * H)
    assert result is not None
    assert result.uptime_pct == Decimal("66.6666667")


@pytest.mark.parametrize("ended_at", [T0, T0 - H], ids=["at_the_start", "before_the_start"])
def test_a_contract_without_a_life_to_judge_has_no_outcome(ended_at):
    assert outcome([(T0 - 2 * H, None)], ended_at) is None


def test_downtime_below_seven_places_of_an_hour_is_no_downtime():
    blip = (T0 + H, T0 + H + timedelta(microseconds=100))  # 2.8e-8 h
    assert outcome([blip], T0 + 100 * H) is None


def test_hours_are_exact_decimals_never_floats():
    # read from the timedelta's days, seconds and microseconds, not total_seconds()' float
    span = timedelta(hours=2, seconds=90, microseconds=500_000)
    assert hours(span) == Decimal("2.0251389")  # 7290.5 s / 3600 = 2.025138...
    assert isinstance(hours(span), Decimal)
    result = outcome([(T0 + H, T0 + H + span)], T0 + 100 * H)
    assert result is not None
    figures = (result.period_hours, result.hours_down, result.uptime_pct, result.penalty.amount)
    assert all(isinstance(figure, Decimal) for figure in figures)
    with pytest.raises(TypeError, match="float"):
        Money.of(0.02, "USD")  # type: ignore[arg-type]  # a float price never reaches it
