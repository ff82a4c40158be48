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
