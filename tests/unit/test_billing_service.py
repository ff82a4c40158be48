"""Hourly billing over a store: once per contract-hour, exact shares, grace and resume."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from hero.domain.billing import BillingContract
from hero.domain.ledger import AccountKind, Transfer, account_id
from hero.payments.billing import BillingService, BillingSettings, billing_stream
from hero.payments.ledger import LedgerService, read_ledger
from schemas import (
    CancelContract,
    ContractCancelled,
    ContractCreated,
    Money,
    TransferKind,
    UsageBilled,
)
from tests.unit._billing import farm_market, tft
from tests.unit._gwt import T0, Market, ctr

RATE = Decimal(100)  # TFT per USD
#: SHAPE (2 vCPU, 4 GB, 50 GB SSD) on genesis: CU 1 x 0.010 + SU 0.25 x 0.005 = 0.01125 USD/h
HOUR_TFT = Decimal("1.125")
OFFTAKER = account_id(AccountKind.OFFTAKER, "off_1")
FARMER = account_id(AccountKind.FARMER, "farm_1")
WORLD = account_id(AccountKind.WORLD, "outside")


@pytest.fixture(params=["memory", "sqlite"])
def market(request, tmp_path) -> Market:
    m = farm_market(request.param, tmp_path)
    m.rfq("neg_1")
    m.make_offer("neg_1", "o1", "node_1")
    m.accept("neg_1", "o1")
    return m


def fund(market: Market, amount: str, transfer_id: str = "fund-1") -> None:
    transfer = Transfer(transfer_id, WORLD, OFFTAKER, tft(amount), TransferKind.PAYMENT, "pay-1")
    LedgerService(market.store, market.clock).post([transfer], transfer_id)


def billing(market: Market, **settings) -> BillingService:
    return BillingService(
        market.store,
        lambda: RATE,
        market.clock,
        settings=BillingSettings(**settings),
        market=market.service,
    )


def bills(market: Market) -> list[UsageBilled]:
    return [e for e in market.all_events() if isinstance(e, UsageBilled)]


def test_each_hour_that_is_over_is_billed_once_prorated_and_shared_exactly(market):
    fund(market, "100")
    start = market.clock.now()  # T0, on the hour
    market.clock.advance(timedelta(hours=3, minutes=30))

    report = billing(market).run()

    assert [b.hour for b in report.bills] == [
        start,
        start + timedelta(hours=1),
        start + timedelta(hours=2),
    ]
    first = report.bills[0]
    assert (first.seconds, first.usd, first.amount) == (
        3600,
        Money.of("0.01125", "USD"),
        tft(HOUR_TFT),
    )
    assert (first.farmer_share, first.pool_share, first.threefold_share) == (
        tft("0.675"),
        tft("0.225"),
        tft("0.225"),
    )
    ledger = read_ledger(market.store)
    assert ledger.balance(OFFTAKER) == tft(Decimal(100) - 3 * HOUR_TFT)
    assert ledger.balance(FARMER) == tft("2.025")
    assert all(total == 0 for total in ledger.totals().values())


def test_running_again_or_from_a_second_service_bills_nothing_twice(market):
    fund(market, "100")
    market.clock.advance(timedelta(hours=5))
    assert len(billing(market).run().bills) == 5

    assert billing(market).run().bills == []  # a fresh process reads what was billed
    assert len(bills(market)) == 5
    assert read_ledger(market.store).balance(OFFTAKER) == tft(Decimal(100) - 5 * HOUR_TFT)


def test_a_partial_first_hour_is_prorated_by_the_seconds_it_ran(tmp_path):
    m = Market()
    m.clock.advance(timedelta(minutes=45))  # the contract starts at 12:45
    m.farm("farm_1")
    m.node("node_1")
    m.rfq("neg_1")
    m.make_offer("neg_1", "o1", "node_1")
    m.accept("neg_1", "o1")
    fund(m, "10")
    m.clock.advance(timedelta(minutes=20))  # 13:05: the 12:00 hour is over

    [bill] = billing(m).run().bills

    assert (bill.hour, bill.seconds) == (T0, 900)
    assert bill.amount == tft("0.28125")  # a quarter of 1.125


@pytest.mark.parametrize("ran_ms", [1, 250, 999])
def test_a_contract_ended_within_its_first_second_is_billed_one_second(market, ran_ms):
    """The demo's failure: a node fails a moment after a replica on it was contracted, the
    replica moves, its contract ends less than a second after it began. Billed for whole
    seconds rounded down it had no bill at all, though the demo reported it made."""
    fund(market, "100")
    market.clock.advance(timedelta(milliseconds=ran_ms))
    market.handle(
        CancelContract(
            command_id="cancel-o1",
            contract_id=ctr("neg_1", "o1"),
            node_id="node_1",
            reason="migrated: node down",
        )
    )
    market.clock.advance(timedelta(hours=3))  # the demo's billing clock, hours ahead

    report = billing(market).run(contract_ids={ctr("neg_1", "o1")})

    assert [(b.contract_id, b.hour, b.seconds) for b in report.bills] == [
        (ctr("neg_1", "o1"), T0, 1)
    ]
    assert report.bills[0].amount == tft("0.00031")  # 0.01125 USD / 3600, to 7 places, x 100
    assert billing(market).run().bills == []  # and only once


def test_a_second_begun_counts_whole_and_an_hour_never_exceeds_3600(market):
    [created] = [e for e in market.all_events() if isinstance(e, ContractCreated)]
    half = BillingContract(created)
    half.stop(created.starts_at + timedelta(minutes=30, microseconds=1))
    assert half.seconds_in(T0) == 1801
    assert BillingContract(created).seconds_in(T0) == 3600
    never = BillingContract(created)
    never.stop(created.starts_at)  # ended as it began: it never ran, nothing to bill
    assert never.seconds_in(T0) == 0
    assert list(never.hours_due(T0 + timedelta(hours=2))) == []


def test_until_hour_bills_only_up_to_that_hour(market):
    fund(market, "100")
    market.clock.advance(timedelta(hours=6))
    report = billing(market).run(until_hour=T0 + timedelta(hours=1))
    assert [b.hour for b in report.bills] == [T0, T0 + timedelta(hours=1)]


def test_out_of_funds_suspends_then_a_top_up_resumes_and_pays_what_is_owed(market):
    fund(market, "2.5")  # two hours and a bit
    market.clock.advance(timedelta(hours=3))
    service = billing(market)

    report = service.run()

    assert len(report.bills) == 2
    assert report.suspended == [ctr("neg_1", "o1")]
    contract = service.contracts[ctr("neg_1", "o1")]
    assert contract.suspended_at == market.clock.now()
    assert contract.grace_ends_at == market.clock.now() + timedelta(days=14)
    assert read_ledger(market.store).balance(OFFTAKER) == tft("0.25")  # never negative

    market.clock.advance(timedelta(hours=5))  # suspended: these hours do not run
    assert service.run().bills == []

    market.clock.advance(timedelta(minutes=30))  # 20:30
    fund(market, "10", "fund-2")
    report = service.run()
    assert [b.hour for b in report.bills] == [T0 + timedelta(hours=2)]  # the owed hour
    assert report.resumed == [ctr("neg_1", "o1")]
    assert market.types(billing_stream(ctr("neg_1", "o1")))[-2:] == [
        "UsageBilled",
        "ContractResumed",
    ]
    market.clock.advance(timedelta(hours=1))  # 21:30
    [bill] = service.run().bills
    assert (bill.hour, bill.seconds) == (T0 + timedelta(hours=8), 1800)  # from the resume on


def test_a_contract_that_ended_before_its_unpaid_hour_is_not_reopened_by_the_top_up(market):
    """CI's demo at midnight: the hour turned before the top-ups, so the stack's billing found
    no funds for a replica's contract that had already ended by migration and suspended it;
    the top-up then resumed it, and the resume opened a new interval to its term's end: the
    demo billed it hours after it had ended."""
    market.clock.advance(timedelta(minutes=90))
    market.handle(
        CancelContract(
            command_id="cancel-o1",
            contract_id=ctr("neg_1", "o1"),
            node_id="node_1",
            reason="migrated: node down",
        )
    )
    market.clock.advance(timedelta(minutes=40))  # 2 h 10 min: both hours it ran are over
    service = billing(market)
    assert service.run().suspended == [ctr("neg_1", "o1")]  # no funds: ended, then suspended

    fund(market, "100")
    market.clock.advance(timedelta(hours=3))
    report = service.run()

    assert report.resumed == [ctr("neg_1", "o1")]
    assert [(b.hour, b.seconds) for b in report.bills] == [
        (T0, 3600),
        (T0 + timedelta(hours=1), 1800),
    ]  # the hours it ran, and none after its end
    market.clock.advance(timedelta(days=2))
    assert service.run().bills == []
    assert billing(market).run().bills == []  # a fresh fold of the log agrees


def test_the_grace_period_ends_in_a_cancellation_and_billing_stops(market):
    fund(market, "1.5")
    market.clock.advance(timedelta(hours=2))
    service = billing(market, grace=timedelta(days=1))
    assert service.run().suspended == [ctr("neg_1", "o1")]

    market.clock.advance(timedelta(days=1))
    report = service.run()

    assert report.cancelled == [ctr("neg_1", "o1")]
    [cancelled] = [e for e in market.all_events() if isinstance(e, ContractCancelled)]
    assert cancelled.reason == "grace_period_ended"
    assert market.node_state("node_1").contracts == {}  # the capacity is free again
    market.clock.advance(timedelta(days=2))
    fund(market, "100", "fund-late")
    assert service.run().bills == []  # what it owed is written off with the contract
    assert billing(market).run().bills == []


def test_a_low_balance_is_signalled_once_until_the_next_credit(market):
    fund(market, "30")  # about 26 hours at 1.125 TFT/h
    market.clock.advance(timedelta(hours=3))
    service = billing(market)

    first = service.run()
    assert first.low_balance == [OFFTAKER]  # 26.625 TFT left: 23.67 h < 24 h
    market.clock.advance(timedelta(hours=1))
    assert service.run().low_balance == []
    fund(market, "0.5", "fund-2")
    market.clock.advance(timedelta(hours=1))
    assert service.run().low_balance == [OFFTAKER]
