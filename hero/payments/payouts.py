"""Money leaving the grid: a farmer's payout, an offtaker's refund (both in TFT).

Each is one transfer to the outside world's TFT account, whose id is the command id: a
repeated command pays once, and the guard refuses more than the account holds.

The command id is the request's idempotency key, as payment providers use one: a repeat
returns the first result (the appends it made, read back from the store), and the same id
for another request -- another amount, account or kind -- is refused as
``idempotency_key_reused``. What the request asked for is read from the transfer the store
recorded under that id, in the same append as the money moved, so the check can never
disagree with what happened (no second system to update, no window after a crash).
"""

from __future__ import annotations

from dataclasses import dataclass

from hero.domain.errors import Rejected
from hero.domain.ledger import AccountKind, Transfer, account_id, account_stream
from hero.payments.ledger import LedgerService, PostResult
from hero.store import AppendResult, EventStore
from schemas import Money, PayOutFarmer, RefundOfftaker, TransferKind, TransferPosted

__all__ = ["KEY_REUSED", "OUTSIDE_TFT", "Recorded", "pay_out", "recorded_out", "refund"]

OUTSIDE_TFT = account_id(AccountKind.WORLD, "outside", "TFT")
KEY_REUSED = "idempotency_key_reused"


@dataclass(frozen=True, slots=True)
class Recorded:
    """What a command id moved out: its transfer, and the appends it made (payer first)."""

    transfer: TransferPosted
    results: list[AppendResult]


def pay_out(ledger: LedgerService, command: PayOutFarmer, *, actor: str = "payouts") -> PostResult:
    """Send ``command.amount`` TFT from the farmer's account out (to its Stellar address)."""
    payer = account_id(AccountKind.FARMER, command.farm_id)
    return _out(ledger, command.command_id, payer, command.amount, TransferKind.PAYOUT, actor)


def refund(ledger: LedgerService, command: RefundOfftaker, *, actor: str = "payouts") -> PostResult:
    """Return ``command.amount`` TFT from the offtaker's account to the outside world."""
    payer = account_id(AccountKind.OFFTAKER, command.offtaker_id)
    return _out(ledger, command.command_id, payer, command.amount, TransferKind.REFUND, actor)


def recorded_out(store: EventStore, command_id: str) -> Recorded | None:
    """The transfer to the outside world that ``command_id`` posted, if it posted one."""
    outside = store.command_result(account_stream(OUTSIDE_TFT), command_id)
    if outside is None:
        return None
    rows = store.read_all(outside.first_position, 1)
    event = rows[0].envelope().decode() if rows else None
    if not isinstance(event, TransferPosted):
        return None
    payer = store.command_result(account_stream(event.debit_account), command_id)
    results = [result for result in (payer, outside) if result is not None]
    return Recorded(event, results)


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
    earlier = recorded_out(ledger.store, command_id)
    if earlier is None:
        transfer = Transfer(command_id, payer, OUTSIDE_TFT, amount, kind, command_id)
        result = ledger.post([transfer], command_id, actor=actor)
        if not result.duplicate:
            return result
        earlier = recorded_out(ledger.store, command_id)  # a concurrent twin was first
        if earlier is None:
            raise Rejected(KEY_REUSED, f"command id {command_id} was used for another command")
    _same_request(earlier.transfer, command_id, payer, amount, kind)
    return PostResult(earlier.results, duplicate=True)


def _same_request(
    recorded: TransferPosted, command_id: str, payer: str, amount: Money, kind: TransferKind
) -> None:
    if (recorded.kind, recorded.debit_account, recorded.amount) != (kind, payer, amount):
        raise Rejected(
            KEY_REUSED,
            f"{command_id} was used for a {recorded.kind.value} of {recorded.amount} from "
            f"{recorded.debit_account}, not a {kind.value} of {amount} from {payer}; "
            "nothing written (use a new key for a new request)",
        )
