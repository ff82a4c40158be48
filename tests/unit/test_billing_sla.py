"""SLA penalties in billing: refunded once, from the farmer first, then the farming pool.

Figures: rate 100 TFT per USD, split 60/20/20. SHAPE on genesis is billed 0.01125 USD = 1.125
TFT an hour: 0.675 to the farmer, 0.225 to the pool, 0.225 to ThreeFold. The contracts here
are negotiated at 0.02 USD/h, but a Grid 3 contract's penalty is priced at what it is billed.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from hero.domain.billing import cover_penalty, penalty_tft
from hero.domain.ledger import AccountKind, Transfer, account_id
from hero.domain.usage import usage_fact, usage_stream
from hero.payments.billing import BillingService, BillingSettings
from hero.payments.ledger import LedgerService, read_ledger
from hero.store import ANY_VERSION, NewEvent
from schemas import (
    AcceptOffer,
    CancelContract,
    ChangeNodeStatus,
    ContractCreated,
    MakeOffer,
    NodeStatus,
    Sla,
    SlaOutcomeRecorded,
    TransferKind,
    TransferPosted,
)
from tests.unit._billing import farm_market, tft
from tests.unit._gwt import T0, Market, ctr, usd

RATE = Decimal(100)
H = timedelta(hours=1)
OFFTAKER = account_id(AccountKind.OFFTAKER, "off_1")
FARMER = account_id(AccountKind.FARMER, "farm_1")
POOL = account_id(AccountKind.POOL, "grid")
WORLD = account_id(AccountKind.WORLD, "outside")
CONTRACT = ctr("neg_1", "o1")


@pytest.fixture(params=["memory", "sqlite"])
def market(request, tmp_path) -> Market:
    m = farm_market(request.param, tmp_path)
    fund(m, OFFTAKER, "100")
    return m


def fund(market: Market, account: str, amount: str, transfer_id: str = "fund-1") -> None:
    transfer = Transfer(transfer_id, WORLD, account, tft(amount), TransferKind.PAYMENT, "pay")
    LedgerService(market.store, market.clock).post([transfer], transfer_id)


def contract_with(market: Market, penalty_pct: str) -> None:
    """CONTRACT on node_1 from now: 99% uptime, ``penalty_pct`` of the downtime refunded."""
    market.rfq("neg_1")
    market.handle(
        MakeOffer(
            command_id="offer-o1",
            negotiation_id="neg_1",
            offer_id="o1",
            farm_id="farm_1",
            node_id="node_1",
            price_hour=usd("0.02"),
            term_hours=720,
            sla=Sla(uptime_pct=Decimal(99), penalty_pct=Decimal(penalty_pct)),
            expires_at=market.clock.now() + timedelta(minutes=30),
        )
    )
    market.handle(AcceptOffer(command_id="accept-o1", negotiation_id="neg_1", offer_id="o1"))


def down_for(market: Market, up: timedelta, down: timedelta) -> None:
    """The node runs ``up``, goes down for ``down``, and the contract is cancelled then."""
    market.clock.advance(up)
    market.handle(ChangeNodeStatus(command_id="down", node_id="node_1", status=NodeStatus.DOWN))
    market.clock.advance(down)
    market.handle(
        CancelContract(command_id="cancel", contract_id=CONTRACT, node_id="node_1", reason="x")
    )


def billing(market: Market) -> BillingService:
    return BillingService(
        market.store, lambda: RATE, market.clock, settings=BillingSettings(), market=market.service
    )


def penalties_paid(market: Market) -> list[TransferPosted]:
    """Each SLA transfer once (both of its legs record it)."""
    legs = {
        e.transfer_id: e
        for e in market.all_events()
        if isinstance(e, TransferPosted) and e.kind == TransferKind.SLA_PENALTY
    }
    return list(legs.values())


def test_the_farmer_refunds_the_penalty_when_its_balance_covers_it(market):
    contract_with(market, "50")
    down_for(market, 10 * H, 2 * H)  # 2 h in 12 h: 0.01125 * 2 * 50% = 0.01125 USD = 1.125 TFT

    report = billing(market).run()

    assert len(report.bills) == 12  # the farmer earned 12 x 0.675 = 8.1 TFT first
    assert report.sla_penalties == [CONTRACT]
    assert (report.sla_paid, report.sla_unpaid) == (tft("1.125"), tft("0"))
    [paid] = penalties_paid(market)
    assert (paid.transfer_id, paid.debit_account, paid.credit_account) == (
        f"sla-{CONTRACT}-farmer",
        FARMER,
        OFFTAKER,
    )
    assert (paid.amount, paid.reference) == (tft("1.125"), CONTRACT)
    ledger = read_ledger(market.store)
    assert ledger.balance(FARMER) == tft("6.975")
    assert ledger.balance(OFFTAKER) == tft("87.625")  # 100 - 12 x 1.125 + 1.125
    assert all(total == 0 for total in ledger.totals().values())


def test_the_pool_pays_what_the_farmer_cannot_and_the_rest_is_reported_unpaid(market):
    contract_with(market, "100")
    down_for(market, H, 20 * H)  # 20 h in 21 h: 0.01125 * 20 * 100% = 0.225 USD = 22.5 TFT

    report = billing(market).run()

    # 21 bills: the farmer holds 14.175 TFT, the pool 4.725; 3.6 TFT is left owed
    paid = {e.debit_account: e.amount for e in penalties_paid(market)}
    assert paid == {FARMER: tft("14.175"), POOL: tft("4.725")}
    assert (report.sla_paid, report.sla_unpaid) == (tft("18.9"), tft("3.6"))
    ledger = read_ledger(market.store)
    assert (ledger.balance(FARMER), ledger.balance(POOL)) == (tft("0"), tft("0"))
    assert ledger.balance(OFFTAKER) == tft("95.275")  # 100 - 23.625 + 18.9


def test_a_funded_pool_covers_the_whole_remainder(market):
    fund(market, POOL, "100", "fund-pool")
    contract_with(market, "100")
    down_for(market, H, 20 * H)

    report = billing(market).run()

    paid = {e.debit_account: e.amount for e in penalties_paid(market)}
    assert paid == {FARMER: tft("14.175"), POOL: tft("8.325")}
    assert (report.sla_paid, report.sla_unpaid) == (tft("22.5"), tft("0"))


def test_a_penalty_is_posted_once_whatever_runs_again(market):
    contract_with(market, "50")
    down_for(market, 10 * H, 2 * H)
    billing(market).run()
    before = read_ledger(market.store).balance(OFFTAKER)
    market.clock.advance(3 * H)

    again, fresh = billing(market), billing(market)
    for report in (again.run(), fresh.run()):
        assert (report.sla_penalties, report.sla_paid, report.sla_unpaid) == (
            [],
            tft("0"),
            tft("0"),
        )
    assert len(penalties_paid(market)) == 1
    assert read_ledger(market.store).balance(OFFTAKER) == before


def test_a_met_sla_or_a_penalty_of_nothing_posts_nothing(market):
    contract_with(market, "0")  # downtime below 99%, but nothing promised back
    down_for(market, 10 * H, 2 * H)

    report = billing(market).run()

    [outcome] = [e for e in market.all_events() if isinstance(e, SlaOutcomeRecorded)]
    assert (outcome.met, outcome.penalty) == (False, usd("0"))
    assert (report.sla_penalties, report.sla_unpaid) == ([], tft("0"))
    assert penalties_paid(market) == []


def test_a_penalty_nothing_can_pay_yet_waits_for_a_later_run(market):
    outcome = SlaOutcomeRecorded(
        contract_id="ctr.elsewhere",
        offtaker_id="off_1",
        farm_id="farm_9",  # never billed: its account is empty, and so is the pool
        node_id="node_9",
        sla=Sla(uptime_pct=Decimal(99), penalty_pct=Decimal(50)),
        started_at=T0,
        ended_at=T0 + 10 * H,
        period_hours=Decimal(10),
        hours_down=Decimal(1),
        uptime_pct=Decimal(90),
        met=False,
        penalty=usd("0.01"),
    )
    new = NewEvent.of(outcome, actor="market", occurred_at=T0, causation_id="cancel-elsewhere")
    market.store.append("node-node_9", ANY_VERSION, [new], "cancel-elsewhere")
    service = billing(market)

    first = service.run()

    assert (first.sla_penalties, first.sla_unpaid) == ([], tft("1"))
    assert penalties_paid(market) == []

    fund(market, POOL, "5", "fund-pool")
    second = service.run()

    assert (second.sla_penalties, second.sla_paid, second.sla_unpaid) == (
        ["ctr.elsewhere"],
        tft("1"),
        tft("0"),
    )
    [paid] = penalties_paid(market)
    assert (paid.debit_account, paid.transfer_id) == (POOL, "sla-ctr.elsewhere-pool")


# -- the pure rules --------------------------------------------------------------------------


def test_cover_penalty_takes_from_the_farmer_then_the_pool_never_below_zero():
    assert cover_penalty(tft("5"), tft("8"), tft("8")) == (tft("5"), tft("0"), tft("0"))
    assert cover_penalty(tft("5"), tft("3"), tft("1")) == (tft("3"), tft("1"), tft("1"))
    assert cover_penalty(tft("5"), tft("-2"), tft("9")) == (tft("0"), tft("5"), tft("0"))


def test_a_penalty_is_converted_at_the_bills_rate_and_rounded_to_seven_places():
    assert penalty_tft(usd("0.01125"), Decimal(100)) == tft("1.125")
    assert penalty_tft(usd("0.0000001"), Decimal("0.45")) == tft("0")  # 4.5e-8: half-even
    assert penalty_tft(tft("2"), Decimal(100)) == tft("2")  # already TFT


# -- usage facts of finished contracts -------------------------------------------------------


def record_usage(market: Market, contract: ContractCreated, hour_offset: int, seconds: int):
    hour = T0 + hour_offset * H
    fact = usage_fact(contract, hour, seconds, 0, samples=seconds // 15)
    command_id = f"usage-{contract.contract_id}-{hour:%Y%m%dT%H}"
    new = NewEvent.of(fact, actor="usage", occurred_at=market.clock.now(), causation_id=command_id)
    market.store.append(usage_stream(contract.contract_id), ANY_VERSION, [new], command_id)


def test_a_cancelled_contract_billed_to_its_end_drops_its_usage_facts(market):
    contract_with(market, "0")
    [terms] = [e for e in market.all_events() if isinstance(e, ContractCreated)]
    record_usage(market, terms, 0, 3600)
    market.clock.advance(H + H / 2)  # 13:30
    market.handle(
        CancelContract(command_id="cancel", contract_id=CONTRACT, node_id="node_1", reason="x")
    )
    market.clock.advance(H / 2 + timedelta(minutes=5))  # 14:05: the 13:00 hour is over
    service = billing(market)

    first = service.run()

    # 13:00 has no fact yet and waits up to 2 h for one: the facts are still needed
    assert [(b.hour, b.basis) for b in first.bills] == [(T0, "metered")]
    assert CONTRACT in service.usage

    record_usage(market, terms, 1, 1800)
    report = service.run()

    assert [(b.hour, b.basis) for b in report.bills] == [(T0 + H, "metered")]
    assert CONTRACT not in service.usage


def test_a_running_contract_keeps_its_usage_facts(market):
    contract_with(market, "0")
    [terms] = [e for e in market.all_events() if isinstance(e, ContractCreated)]
    record_usage(market, terms, 0, 3600)
    market.clock.advance(2 * H)
    service = billing(market)

    service.run()

    assert set(service.usage[CONTRACT]) == {T0}
