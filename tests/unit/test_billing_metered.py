"""Metered billing: a contract with usage facts is billed from them, hour by hour, once.

Figures on genesis pricing (USD): CU-hour 0.010, SU-hour 0.005, GB of traffic 0.0015, IPv4-hour
0.004; the rate is 100 TFT per USD and the split 60/20/20. SHAPE (2 vCPU, 4 GB, 50 GB SSD) is
CU 1 and SU 0.25, so an hour active costs 0.01125 USD = 1.125 TFT.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from hero.domain.billing import billing_basis, metered_usd
from hero.domain.ledger import AccountKind, Transfer, account_id
from hero.domain.pricing import GENESIS
from hero.domain.usage import usage_fact, usage_stream
from hero.payments.billing import BillingService, BillingSettings
from hero.payments.ledger import LedgerService, read_ledger
from hero.store import ANY_VERSION, NewEvent
from schemas import ContractCreated, Grid, Resources, TransferKind, UsageBilled
from tests.unit._billing import farm_market, tft
from tests.unit._gwt import SHAPE, T0, Market, ctr, usd

RATE = Decimal(100)  # TFT per USD
OFFTAKER = account_id(AccountKind.OFFTAKER, "off_1")
FARMER = account_id(AccountKind.FARMER, "farm_1")
WORLD = account_id(AccountKind.WORLD, "outside")
GB = 10**9
H = timedelta(hours=1)


@pytest.fixture(params=["memory", "sqlite"])
def market(request, tmp_path) -> Market:
    m = farm_market(request.param, tmp_path)
    m.rfq("neg_1")
    m.make_offer("neg_1", "o1", "node_1")
    m.accept("neg_1", "o1")
    transfer = Transfer("fund-1", WORLD, OFFTAKER, tft("100"), TransferKind.PAYMENT, "pay-1")
    LedgerService(m.store, m.clock).post([transfer], "fund-1")
    return m


def billing(market: Market, **settings) -> BillingService:
    return BillingService(
        market.store,
        lambda: RATE,
        market.clock,
        settings=BillingSettings(**settings),
        market=market.service,
    )


def contract_of(market: Market, contract_id: str) -> ContractCreated:
    [created] = [
        e
        for e in market.all_events()
        if isinstance(e, ContractCreated) and e.contract_id == contract_id
    ]
    return created


def record_usage(
    market: Market, contract: ContractCreated, hour: datetime, seconds: int, traffic: int = 0
) -> None:
    """What the usage aggregator writes once ``hour`` has closed."""
    fact = usage_fact(contract, hour, seconds, traffic, samples=seconds // 15)
    command_id = f"usage-{contract.contract_id}-{hour:%Y%m%dT%H}"
    new = NewEvent.of(fact, actor="usage", occurred_at=market.clock.now(), causation_id=command_id)
    market.store.append(usage_stream(contract.contract_id), ANY_VERSION, [new], command_id)


def bills(market: Market) -> list[UsageBilled]:
    return [e for e in market.all_events() if isinstance(e, UsageBilled)]


def zero_sum(market: Market) -> bool:
    return all(total == 0 for total in read_ledger(market.store).totals().values())


# -- the pure rules --------------------------------------------------------------------------


def _terms(grid: Grid, resources: Resources, price_hour: str) -> ContractCreated:
    """A contract of ``resources`` on ``grid`` at ``price_hour`` USD, started at T0."""
    return ContractCreated(
        contract_id="ctr.n.o",
        negotiation_id="n",
        offer_id="o",
        hold_id="h",
        offtaker_id="off_1",
        workload_id="wl",
        farm_id="farm_1",
        node_id="node_1",
        grid=grid,
        resources=resources,
        price_hour=usd(price_hour),
        term_hours=720,
        sla={"uptime_pct": Decimal(99)},
        starts_at=T0,
    )


def test_grid3_metered_usd_prices_the_fact_at_the_policy_with_ipv4_for_its_share():
    terms = _terms(Grid.GRID3, Resources.from_gb(cru=2, mru_gb=4, sru_gb=50, ipv4=1), "0.02")
    fact = usage_fact(terms, T0, 1800, int(Decimal("1.5") * GB), samples=120)
    assert (fact.cu_hours, fact.su_hours, fact.nu_gb) == (
        Decimal("0.5"),
        Decimal("0.125"),
        Decimal("1.5"),
    )
    # 0.5 CU-h x 0.010 = 0.005; 0.125 SU-h x 0.005 = 0.000625; 1.5 GB x 0.0015 = 0.00225;
    # 1 IPv4 x 0.004 x 1800/3600 = 0.002; in all 0.009875 USD
    assert metered_usd(terms, fact, GENESIS) == usd("0.009875")
    # Grid 4: the negotiated 0.02 USD/h for the 1800 s reported, nothing for the traffic
    grid4 = terms.model_copy(update={"grid": Grid.GRID4})
    assert metered_usd(grid4, fact, GENESIS) == usd("0.01")


def test_metered_usd_is_rounded_once_to_seven_places_half_even():
    terms = _terms(Grid.GRID4, SHAPE, "0.0000003")
    fact = usage_fact(terms, T0, 1800, 0, samples=120)
    assert metered_usd(terms, fact, GENESIS) == usd("0.0000002")  # 0.00000015 -> even


def test_the_basis_of_an_hour():
    wait = timedelta(hours=2)
    end = T0 + H
    assert billing_basis(False, False, T0, end, wait) == "active"
    assert billing_basis(True, True, T0, end, wait) == "metered"
    assert billing_basis(True, False, T0, end + wait - timedelta(seconds=1), wait) is None
    assert billing_basis(True, False, T0, end + wait, wait) == "active"


# -- on the store ----------------------------------------------------------------------------


def test_a_grid3_contract_with_usage_facts_is_billed_from_them(market):
    contract = contract_of(market, ctr("neg_1", "o1"))
    market.clock.advance(2 * H + timedelta(minutes=10))  # 14:10: 12:00 and 13:00 are over
    record_usage(market, contract, T0, 3600, traffic=2 * GB)
    record_usage(market, contract, T0 + H, 1800)

    report = billing(market).run()

    first, second = report.bills
    # 12:00: 1 CU-h x 0.010 + 0.25 SU-h x 0.005 + 2 GB x 0.0015 = 0.01425 USD = 1.425 TFT,
    # shared 0.855 / 0.285 / 0.285
    assert (first.hour, first.basis, first.seconds) == (T0, "metered", 3600)
    assert (first.usd, first.amount) == (usd("0.01425"), tft("1.425"))
    assert (first.farmer_share, first.pool_share, first.threefold_share) == (
        tft("0.855"),
        tft("0.285"),
        tft("0.285"),
    )
    # 13:00: the replica ran half the hour: 0.5 CU-h x 0.010 + 0.125 SU-h x 0.005
    # = 0.005625 USD = 0.5625 TFT (active for the whole hour, it would be 1.125 TFT)
    assert (second.hour, second.basis, second.seconds) == (T0 + H, "metered", 1800)
    assert (second.usd, second.amount) == (usd("0.005625"), tft("0.5625"))
    ledger = read_ledger(market.store)
    assert ledger.balance(OFFTAKER) == tft("98.0125")  # 100 - 1.425 - 0.5625
    assert ledger.balance(FARMER) == tft("1.1925")  # 0.855 + 0.3375
    assert zero_sum(market)


def test_a_grid4_contract_with_a_fact_of_1800_s_is_billed_for_half_an_hour(market):
    grid3 = contract_of(market, ctr("neg_1", "o1"))
    grid4 = grid3.model_copy(
        update={"contract_id": "ctr.g4.o1", "grid": Grid.GRID4, "price_hour": usd("0.02")}
    )
    new = NewEvent.of(grid4, actor="market", occurred_at=T0, causation_id="g4")
    market.store.append("node-g4", ANY_VERSION, [new], "create-g4")
    market.clock.advance(H + timedelta(minutes=10))
    record_usage(market, grid4, T0, 1800, traffic=5 * GB)

    [bill] = billing(market).run(contract_ids=["ctr.g4.o1"]).bills

    # 0.02 USD/h x 1800/3600 = 0.01 USD = 1 TFT; the traffic is in the negotiated price
    assert (bill.grid, bill.basis, bill.seconds) == (Grid.GRID4, "metered", 1800)
    assert (bill.usd, bill.amount) == (usd("0.01"), tft("1"))
    assert (bill.farmer_share, bill.pool_share, bill.threefold_share) == (
        tft("0.6"),
        tft("0.2"),
        tft("0.2"),
    )
    assert zero_sum(market)


def test_a_metered_hour_waits_for_its_fact_then_bills_when_it_arrives(market):
    contract = contract_of(market, ctr("neg_1", "o1"))
    service = billing(market)
    market.clock.advance(2 * H + timedelta(minutes=10))  # 14:10
    record_usage(market, contract, T0, 3600)  # 13:00's fact is not in yet

    assert [(b.hour, b.basis) for b in service.run().bills] == [(T0, "metered")]

    market.clock.advance(timedelta(minutes=20))  # 14:30: still no fact, still waiting
    assert service.run().bills == []
    record_usage(market, contract, T0 + H, 3600)
    [late] = service.run().bills

    # 1 CU-h x 0.010 + 0.25 SU-h x 0.005 = 0.01125 USD = 1.125 TFT
    assert (late.hour, late.basis, late.amount) == (T0 + H, "metered", tft("1.125"))
    assert [b.hour for b in bills(market)] == [T0, T0 + H]
    assert zero_sum(market)


def test_a_fact_missing_past_usage_wait_falls_back_to_the_active_seconds(market):
    contract = contract_of(market, ctr("neg_1", "o1"))
    service = billing(market, usage_wait=timedelta(hours=2))
    record_usage(market, contract, T0, 3600)
    market.clock.advance(H * 3 + timedelta(minutes=59))  # 15:59: 13:00 waits until 16:00

    assert [b.hour for b in service.run().bills] == [T0]

    market.clock.advance(timedelta(minutes=1))  # 16:00: 13:00 + 1 h + 2 h
    [fallback] = service.run().bills

    assert (fallback.hour, fallback.basis, fallback.seconds) == (T0 + H, "active", 3600)
    assert fallback.amount == tft("1.125")  # a full hour active
    # the fact arriving after all changes nothing: the hour is billed
    record_usage(market, contract, T0 + H, 600)
    market.clock.advance(timedelta(minutes=1))
    assert service.run().bills == []
    assert billing(market).run().bills == []
    assert [(b.hour, b.basis) for b in bills(market)] == [(T0, "metered"), (T0 + H, "active")]
    assert zero_sum(market)


def test_a_contract_without_facts_is_still_billed_for_its_active_seconds(market):
    market.clock.advance(2 * H)
    report = billing(market).run()
    assert [(b.basis, b.amount) for b in report.bills] == [("active", tft("1.125"))] * 2


def test_a_repeated_run_bills_nothing_twice(market):
    contract = contract_of(market, ctr("neg_1", "o1"))
    market.clock.advance(3 * H + timedelta(minutes=10))
    for hour in range(3):
        record_usage(market, contract, T0 + hour * H, 3600, traffic=GB)
    service = billing(market)

    assert len(service.run().bills) == 3
    assert service.run().bills == []
    assert billing(market).run().bills == []  # a fresh process reads what was billed

    assert [b.hour for b in bills(market)] == [T0, T0 + H, T0 + 2 * H]
    # each hour 0.01125 + 1 GB x 0.0015 = 0.01275 USD = 1.275 TFT
    assert read_ledger(market.store).balance(OFFTAKER) == tft("96.175")
    assert zero_sum(market)


def test_a_waiting_hour_does_not_hold_back_the_later_hours_that_have_their_fact(market):
    contract = contract_of(market, ctr("neg_1", "o1"))
    market.clock.advance(2 * H + timedelta(minutes=10))  # 14:10
    record_usage(market, contract, T0 + H, 3600)  # 12:00's fact is late

    service = billing(market)
    assert [(b.hour, b.basis) for b in service.run().bills] == [(T0 + H, "metered")]
    record_usage(market, contract, T0, 900)
    # 12:00 from its fact: 0.25 CU-h x 0.010 + 0.0625 SU-h x 0.005 = 0.0028125 USD
    [late] = service.run().bills
    assert (late.hour, late.seconds, late.usd) == (T0, 900, usd("0.0028125"))
    assert billing(market).run().bills == []
    assert zero_sum(market)
