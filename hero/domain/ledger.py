"""Double-entry ledger rules: accounts, transfers, guards, the revenue split (pure).

Every transfer moves one amount from a debit account to a credit account in one currency, so
the sum over all accounts of a currency is zero by construction. Money from outside the grid
enters through a ``world`` account per currency, the only kind allowed to go negative.

A transfer is recorded as two legs, the same ``TransferPosted`` on the debit account's stream
and on the credit account's. Only a matched pair moves a balance (:func:`match_leg`, the one
rule the CLI, the read models and the ledger service share): a leg whose pair is missing or
differs is reported with its transfer id and counts for nothing, so a one-sided leg can
neither make a balance look right nor be spent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Literal

from hero.domain.errors import Rejected
from schemas import Currency, Money, TransferKind, TransferPosted

__all__ = [
    "ACCOUNT_STREAM_PREFIX",
    "AccountKind",
    "AccountState",
    "Ledger",
    "Leg",
    "LegProblem",
    "LegSide",
    "Matched",
    "RevenueSplit",
    "Transfer",
    "account_id",
    "account_kind",
    "account_of_stream",
    "account_stream",
    "check_transfer",
    "evolve_account",
    "match_leg",
    "orphan_reason",
    "split_revenue",
    "third_leg",
]

LegSide = Literal["debit", "credit"]


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


@lru_cache(maxsize=1 << 16)  # every leg of a replay names the same few accounts again
def account_kind(account: str) -> AccountKind:
    parts = account.split(".")
    try:
        if len(parts) < 3 or not all(parts):
            raise ValueError(account)
        return AccountKind(parts[0])
    except ValueError:
        raise Rejected("unknown_account", f"{account!r} is not KIND.OWNER.CURRENCY") from None


@lru_cache(maxsize=1 << 16)
def account_currency(account: str) -> Currency:
    try:
        return Currency(account.rsplit(".", 1)[-1])
    except ValueError:
        raise Rejected("unknown_account", f"{account!r} does not end in a currency") from None


ACCOUNT_STREAM_PREFIX = "account-"


def account_stream(account: str) -> str:
    return f"{ACCOUNT_STREAM_PREFIX}{account}"


def account_of_stream(stream: str) -> str | None:
    """The account whose stream this is, or None for any other stream."""
    if not stream.startswith(ACCOUNT_STREAM_PREFIX):
        return None
    return stream.removeprefix(ACCOUNT_STREAM_PREFIX) or None


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


# -- legs: a transfer counts only when both of its legs are recorded and agree ------------------


@dataclass(frozen=True, slots=True)
class Leg:
    """One recorded leg: the transfer, and the account whose stream holds it (or None)."""

    account: str | None
    event: TransferPosted

    @property
    def side(self) -> LegSide | None:
        if self.account is None:
            return None
        if self.account == self.event.debit_account:
            return "debit"
        if self.account == self.event.credit_account:
            return "credit"
        return None


class LegProblem(StrEnum):
    """Why a transfer is unsound, as a code: what a read model may show an account's owner
    (the full reason may name accounts of other tenants)."""

    INVALID_LEG = "invalid_leg"
    MISMATCHED_LEGS = "mismatched_legs"
    ORPHAN_LEG = "orphan_leg"
    THIRD_LEG = "third_leg"


@dataclass(frozen=True, slots=True)
class Matched:
    """What one leg did: ``posted`` (its pair was there: move the balances), ``waiting`` (the
    first of a pair), or ``fault`` (the transfer is unsound, the reason; nothing moves)."""

    posted: TransferPosted | None = None
    waiting: Leg | None = None
    fault: str | None = None
    problem: LegProblem | None = None


def third_leg(leg: Leg) -> Matched:
    """A leg of a transfer whose pair was already matched: it moves nothing, and makes the
    transfer unsound."""
    return Matched(fault=f"a third leg, on {leg.account}", problem=LegProblem.THIRD_LEG)


def _leg_fault(leg: Leg) -> str | None:
    """Why this leg can never be half of a sound transfer, or None."""
    event = leg.event
    if leg.account is None:
        return "a leg recorded outside the accounts' streams"
    if leg.side is None:
        return (
            f"a leg recorded on {leg.account}, which the transfer neither debits "
            f"({event.debit_account}) nor credits ({event.credit_account})"
        )
    if event.debit_account == event.credit_account:
        return f"debits and credits the same account {event.debit_account}"
    if event.amount.amount <= 0:
        return f"moves {event.amount}, not more than 0"
    for account in (event.debit_account, event.credit_account):
        try:
            account_kind(account)
            currency = account_currency(account)
        except Rejected as error:
            return str(error)
        if currency != event.amount.currency:
            return f"{account} holds {currency}, the leg moves {event.amount}"
    return None


def _pair_fault(first: Leg, second: Leg) -> str | None:
    if first.side == second.side:
        return f"two {first.side} legs on {first.account}"
    a, b = first.event, second.event
    if a == b:  # the sound pair's case, answered at once: equal legs pass every check below
        return None
    if (a.debit_account, a.credit_account) != (b.debit_account, b.credit_account):
        return (
            f"its legs name different accounts: {a.debit_account} -> {a.credit_account} "
            f"on {first.account}, {b.debit_account} -> {b.credit_account} on {second.account}"
        )
    if a.amount != b.amount or a.amount.currency != b.amount.currency:
        return f"its legs differ: {a.amount} on {first.account}, {b.amount} on {second.account}"
    if a != b:
        return "its legs differ in kind or reference"
    return None


def match_leg(waiting: Leg | None, leg: Leg) -> Matched:
    """Match ``leg`` with the leg of the same transfer seen before (``waiting``), if any.

    The one rule for every reader of the ledger: a transfer moves money only when exactly one
    debit leg on the debit account's stream and one credit leg on the credit account's stream,
    equal in accounts, amount and currency, are recorded.
    """
    fault = _leg_fault(leg)
    if fault is not None:
        return Matched(waiting=waiting, fault=fault, problem=LegProblem.INVALID_LEG)
    if waiting is None:
        return Matched(waiting=leg)
    fault = _pair_fault(waiting, leg)
    if fault is not None:
        return Matched(fault=fault, problem=LegProblem.MISMATCHED_LEGS)
    return Matched(posted=leg.event)


def orphan_reason(leg: Leg) -> str:
    """The report of a leg whose pair never came."""
    event = leg.event
    missing, where = (
        ("credit", event.credit_account) if leg.side == "debit" else ("debit", event.debit_account)
    )
    return (
        f"only its {leg.side} leg is recorded (on {leg.account}): "
        f"the {missing} leg on {where} is missing"
    )
