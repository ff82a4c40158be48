"""Money leaving the grid: a farmer's payout, an offtaker's refund (both in TFT).

Each is one transfer to the outside world's TFT account, whose id is the command id: a
repeated command pays once, and the guard refuses more than the account holds.
"""

from __future__ import annotations

from hero.domain.errors import Rejected
from hero.domain.ledger import AccountKind, Transfer, account_id
from hero.payments.ledger import LedgerService, PostResult
from schemas import PayOutFarmer, RefundOfftaker, TransferKind

__all__ = ["OUTSIDE_TFT", "pay_out", "refund"]

OUTSIDE_TFT = account_id(AccountKind.WORLD, "outside", "TFT")


def pay_out(ledger: LedgerService, command: PayOutFarmer, *, actor: str = "payouts") -> PostResult:
    """Send ``command.amount`` TFT from the farmer's account out (to its Stellar address)."""
    _require_tft(command.amount.currency.value)
    transfer = Transfer(
        command.command_id,
        account_id(AccountKind.FARMER, command.farm_id),
        OUTSIDE_TFT,
        command.amount,
        TransferKind.PAYOUT,
        command.command_id,
    )
    return ledger.post([transfer], command.command_id, actor=actor)


def refund(ledger: LedgerService, command: RefundOfftaker, *, actor: str = "payouts") -> PostResult:
    """Return ``command.amount`` TFT from the offtaker's account to the outside world."""
    _require_tft(command.amount.currency.value)
    transfer = Transfer(
        command.command_id,
        account_id(AccountKind.OFFTAKER, command.offtaker_id),
        OUTSIDE_TFT,
        command.amount,
        TransferKind.REFUND,
        command.command_id,
    )
    return ledger.post([transfer], command.command_id, actor=actor)


def _require_tft(currency: str) -> None:
    if currency != "TFT":
        raise Rejected("currency_mismatch", f"payouts and refunds are in TFT, got {currency}")
