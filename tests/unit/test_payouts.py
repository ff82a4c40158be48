"""Payouts and refunds: once per command, never more than the account holds."""

from __future__ import annotations

import pytest

from hero.domain.errors import Rejected
from hero.domain.ledger import Transfer
from hero.payments.ledger import LedgerService, read_ledger
from hero.payments.payouts import OUTSIDE_TFT, pay_out, refund
from hero.store import MemoryEventStore
from schemas import Money, PayOutFarmer, RefundOfftaker, TransferKind


def tft(amount: str) -> Money:
    return Money.of(amount, "TFT")


@pytest.fixture
def ledger() -> LedgerService:
    service = LedgerService(MemoryEventStore())
    for account, transfer_id in (("farmer.farm-1.TFT", "f1"), ("offtaker.acme.TFT", "f2")):
        seed = Transfer(transfer_id, OUTSIDE_TFT, account, tft("10"), TransferKind.PAYMENT, "p")
        service.post([seed], transfer_id)
    return service


def test_a_payout_leaves_the_farmer_account_once(ledger):
    command = PayOutFarmer(command_id="payout-1", farm_id="farm-1", amount=tft("4"))
    assert pay_out(ledger, command).duplicate is False
    assert pay_out(ledger, command).duplicate is True
    books = read_ledger(ledger.store)
    assert books.balance("farmer.farm-1.TFT") == tft("6")
    assert all(total == 0 for total in books.totals().values())


def test_a_refund_beyond_the_balance_is_refused_and_writes_nothing(ledger):
    position = ledger.store.current_position()
    command = RefundOfftaker(command_id="r-1", offtaker_id="acme", amount=tft("11"), reason="x")
    with pytest.raises(Rejected, match="insufficient_funds"):
        refund(ledger, command)
    assert ledger.store.current_position() == position


def test_a_payout_in_fiat_is_refused(ledger):
    command = PayOutFarmer(command_id="p-2", farm_id="farm-1", amount=Money.of("1", "USD"))
    with pytest.raises(Rejected, match="currency_mismatch"):
        pay_out(ledger, command)


def test_a_repeated_payout_returns_the_first_appends_and_pays_once(ledger):
    command = PayOutFarmer(command_id="payout-r", farm_id="farm-1", amount=tft("4"))
    first = pay_out(ledger, command)
    position = ledger.store.current_position()
    again = pay_out(ledger, command)
    assert again.duplicate is True
    assert [(r.stream, r.event_ids, r.last_position) for r in again.results] == [
        (r.stream, r.event_ids, r.last_position) for r in first.results
    ]
    assert [r.stream for r in first.results] == [
        "account-farmer.farm-1.TFT",
        f"account-{OUTSIDE_TFT}",
    ]
    assert ledger.store.current_position() == position
    assert read_ledger(ledger.store).balance("farmer.farm-1.TFT") == tft("6")


@pytest.mark.parametrize(
    "other",
    [
        PayOutFarmer(command_id="k-1", farm_id="farm-1", amount=tft("5")),  # another amount
        RefundOfftaker(command_id="k-1", offtaker_id="acme", amount=tft("4"), reason="x"),
    ],
)
def test_the_same_command_id_for_another_request_is_refused_and_writes_nothing(ledger, other):
    pay_out(ledger, PayOutFarmer(command_id="k-1", farm_id="farm-1", amount=tft("4")))
    position = ledger.store.current_position()
    with pytest.raises(Rejected, match="idempotency_key_reused") as refused:
        (pay_out if isinstance(other, PayOutFarmer) else refund)(ledger, other)
    assert "payout of 4 TFT from farmer.farm-1.TFT" in str(refused.value)
    assert ledger.store.current_position() == position
    books = read_ledger(ledger.store)
    assert (books.balance("farmer.farm-1.TFT"), books.balance("offtaker.acme.TFT")) == (
        tft("6"),
        tft("10"),
    )
