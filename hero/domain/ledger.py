"""Double-entry ledger rules: accounts, transfers, guards, the revenue split (pure).

Every transfer moves one amount from a debit account to a credit account in one currency, so
the sum over all accounts of a currency is zero by construction. Money from outside the grid
enters through a ``world`` account per currency, the only kind allowed to go negative.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum

from hero.domain.errors import Rejected
from schemas import Currency, Money, TransferKind, TransferPosted

__all__ = [
    "AccountKind",
    "AccountState",
    "Ledger",
    "RevenueSplit",
    "Transfer",
    "account_id",
    "account_kind",
    "account_stream",
    "check_transfer",
    "evolve_account",
    "split_revenue",
]


class AccountKind(StrEnum):
    OFFTAKER = "offtaker"
    FARMER = "farmer"
    POOL = "pool"
    THREEFOLD = "threefold"
    TREASURY = "treasury"
    WORLD = "world"

    @property
    def guarded(self) -> bool:
        """Every account but the outside world must never go negative."""
        return self is not AccountKind.WORLD


def account_id(kind: AccountKind | str, owner: str, currency: Currency | str = "TFT") -> str:
    """``offtaker.acme.TFT``: kind, owner and currency, so one owner may hold several."""
    return f"{AccountKind(kind).value}.{owner}.{Currency(currency).value}"


def account_kind(account: str) -> AccountKind:
    parts = account.split(".")
    try:
        if len(parts) < 3 or not all(parts):
            raise ValueError(account)
        return AccountKind(parts[0])
    except ValueError:
        raise Rejected("unknown_account", f"{account!r} is not KIND.OWNER.CURRENCY") from None


def account_currency(account: str) -> Currency:
    try:
        return Currency(account.rsplit(".", 1)[-1])
    except ValueError:
        raise Rejected("unknown_account", f"{account!r} does not end in a currency") from None


def account_stream(account: str) -> str:
    return f"account-{account}"


@dataclass(frozen=True, slots=True)
class Transfer:
    """A transfer about to be posted; ``transfer_id`` makes it happen once."""

    transfer_id: str
    debit_account: str
    credit_account: str
    amount: Money
    kind: TransferKind
    reference: str

    def event(self) -> TransferPosted:
        return TransferPosted(
            transfer_id=self.transfer_id,
            debit_account=self.debit_account,
            credit_account=self.credit_account,
            amount=self.amount,
            kind=self.kind,
            reference=self.reference,
        )


@dataclass(frozen=True, slots=True)
class AccountState:
    account: str
    balance: Money
    transfers: int = 0

    @classmethod
    def empty(cls, account: str) -> AccountState:
        return cls(account, Money.zero(account_currency(account)))

    @property
    def guarded(self) -> bool:
        return account_kind(self.account).guarded


def evolve_account(state: AccountState, event: TransferPosted) -> AccountState:
    """Apply a transfer leg recorded on this account's stream."""
    if event.credit_account == state.account:
        return replace(state, balance=state.balance + event.amount, transfers=state.transfers + 1)
    if event.debit_account == state.account:
        return replace(state, balance=state.balance - event.amount, transfers=state.transfers + 1)
    return state


def check_transfer(transfer: Transfer, debit: AccountState) -> None:
    """Refuse a transfer the rules forbid, before anything is written."""
    for account in (transfer.debit_account, transfer.credit_account):
        account_kind(account)
        if account_currency(account) != transfer.amount.currency:
            raise Rejected(
                "currency_mismatch",
                f"{account} holds {account_currency(account)}, "
                f"the transfer is in {transfer.amount.currency}",
            )
    if transfer.debit_account == transfer.credit_account:
        raise Rejected("same_account", f"{transfer.debit_account} cannot pay itself")
    if transfer.amount.amount <= 0:
        raise Rejected("amount_not_positive", f"a transfer moves more than 0: {transfer.amount}")
    if debit.guarded and debit.balance < transfer.amount:
        raise Rejected(
            "insufficient_funds",
            f"{transfer.debit_account} holds {debit.balance}, the transfer needs {transfer.amount}",
        )


@dataclass(frozen=True, slots=True)
class RevenueSplit:
    """How a bill is shared: farmer, farming pool, ThreeFold (DOMAIN.md: 60/20/20 by default).

    Rounding rule: the pool's and ThreeFold's shares are rounded *down* to the currency's
    smallest unit and the farmer takes the remainder, so the three shares always add up to the
    bill exactly and any rounding unit goes to the farmer who ran the workload.
    """

    farmer: Decimal = Decimal("0.6")
    pool: Decimal = Decimal("0.2")
    threefold: Decimal = Decimal("0.2")

    def __post_init__(self) -> None:
        parts = (self.farmer, self.pool, self.threefold)
        if not all(isinstance(part, Decimal) for part in parts):
            raise TypeError(f"a revenue split takes Decimal shares, not floats: {parts}")
        if any(part < 0 for part in parts) or sum(parts) != 1:
            raise ValueError(f"a revenue split needs shares >= 0 summing to 1, got {parts}")


def split_revenue(amount: Money, split: RevenueSplit) -> tuple[Money, Money, Money]:
    """(farmer, pool, threefold) shares of ``amount``; they sum to ``amount`` exactly."""
    pool = amount.times(split.pool, ROUND_DOWN)
    threefold = amount.times(split.threefold, ROUND_DOWN)
    return amount - pool - threefold, pool, threefold


@dataclass
class Ledger:
    """All accounts folded in memory: the reference model for tests and read-side views."""

    accounts: dict[str, AccountState] = field(default_factory=dict)
    applied: set[str] = field(default_factory=set)

    def state(self, account: str) -> AccountState:
        return self.accounts.get(account) or AccountState.empty(account)

    def post(self, transfer: Transfer) -> bool:
        """Apply once; False when the transfer id was applied before. Raises Rejected."""
        if transfer.transfer_id in self.applied:
            return False
        check_transfer(transfer, self.state(transfer.debit_account))
        self.apply(transfer.event())
        return True

    def apply(self, event: TransferPosted) -> None:
        if event.transfer_id in self.applied:
            return
        self.applied.add(event.transfer_id)
        for account in (event.debit_account, event.credit_account):
            self.accounts[account] = evolve_account(self.state(account), event)

    def balance(self, account: str) -> Money:
        return self.state(account).balance

    def totals(self) -> Mapping[Currency, Decimal]:
        """The sum of every account per currency: zero, always."""
        totals: dict[Currency, Decimal] = {}
        for state in self.accounts.values():
            currency = state.balance.currency
            totals[currency] = totals.get(currency, Decimal(0)) + state.balance.amount
        return totals

    def apply_all(self, events: Iterable[TransferPosted]) -> None:
        for event in events:
            self.apply(event)
