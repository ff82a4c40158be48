"""Money leaving the grid: a farmer's payout, an offtaker's refund (both in TFT).

Each is one transfer to the outside world's TFT account, whose id is the command id: a
repeated command pays once, and the guard refuses more than the account holds.
"""

from __future__ import annotations

from hero.domain.errors import Rejected
from hero.domain.ledger import AccountKind, Transfer, account_id
from hero.payments.ledger import LedgerService, PostResult
from schemas import Money, PayOutFarmer, RefundOfftaker, TransferKind

__all__ = ["OUTSIDE_TFT", "pay_out", "refund"]

OUTSIDE_TFT = account_id(AccountKind.WORLD, "outside", "TFT")


def pay_out(ledger: LedgerService, command: PayOutFarmer, *, actor: str = "payouts") -> PostResult:
    """Send ``command.amount`` TFT from the farmer's account out (to its Stellar address)."""
    payer = account_id(AccountKind.FARMER, command.farm_id)
    return _out(ledger, command.command_id, payer, command.amount, TransferKind.PAYOUT, actor)


def refund(ledger: LedgerService, command: RefundOfftaker, *, actor: str = "payouts") -> PostResult:
    """Return ``command.amount`` TFT from the offtaker's account to the outside world."""
    payer = account_id(AccountKind.OFFTAKER, command.offtaker_id)
    return _out(ledger, command.command_id, payer, command.amount, TransferKind.REFUND, actor)


def _out(
    ledger: LedgerService,
    command_id: str,
    payer: str,
    amount: Money,
    kind: TransferKind,
    actor: str,
) -> PostResult:
    if amount.currency.value != "TFT":
        raise Rejected(
            "currency_mismatch", f"payouts and refunds are in TFT, got {amount.currency}"
        )
    transfer = Transfer(command_id, payer, OUTSIDE_TFT, amount, kind, command_id)
    return ledger.post([transfer], command_id, actor=actor)
