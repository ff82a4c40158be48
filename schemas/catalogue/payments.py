"""Fiat in, conversion to TFT, transfers, bills and payouts (``hero.payments``)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, Field

from schemas.ids import AccountId, ContractId, FarmId, Identifier, OfftakerId
from schemas.messages import Event, event
from schemas.money import Money
from schemas.registry import REGISTRY
from schemas.resources import Grid
from schemas.topics import Topic

__all__ = [
    "LEDGER",
    "BalanceLow",
    "FiatConverted",
    "FiatPaymentReceived",
    "QuoteIssued",
    "QuoteRefused",
    "TransferKind",
    "TransferPosted",
    "UsageBilled",
]

#: The writer of every money event: the ledger and the services that post through it (the
#: treasury, billing, payouts and refunds). ``hero events append`` refuses them.
LEDGER = "ledger"


@event(Topic.PAYMENTS, version=2, writer=LEDGER)
class FiatPaymentReceived(Event):
    """v2 carries the amount as Money; v1 had ``amount`` (string) and ``currency`` apart."""

    payment_id: Identifier
    provider: str = Field(min_length=1, max_length=64)
    provider_event_id: str = Field(min_length=1, max_length=200)
    offtaker_id: OfftakerId
    account_id: AccountId
    amount: Money


@REGISTRY.upcaster("FiatPaymentReceived", from_version=1)
def _payment_amount_as_money(payload: dict[str, Any]) -> dict[str, Any]:
    data = dict(payload)
    data["amount"] = {"amount": str(data.pop("amount")), "currency": data.pop("currency")}
    return data


class TransferKind(StrEnum):
    """Why money moved; each kind has its own idempotency key (payment, bill, payout...)."""

    PAYMENT = "payment"
    CONVERSION = "conversion"
    BILL = "bill"
    PAYOUT = "payout"
    REFUND = "refund"
    SLA_PENALTY = "sla_penalty"


@event(Topic.PAYMENTS, writer=LEDGER)
class QuoteIssued(Event):
    quote_id: Identifier
    payment_id: Identifier
    fiat: Money
    tft: Money
    min_tft: Money = Field(description="the slippage bound: less than this is never applied")
    rate: Decimal = Field(gt=0, description="TFT per unit of the fiat currency, after the spread")
    market_rate: Decimal = Field(gt=0, description="TFT per unit of fiat from the oracle")
    spread: Decimal = Field(ge=0, lt=1)
    source: str = Field(min_length=1, max_length=200, description="the oracle that gave the rate")
    expires_at: AwareDatetime


@event(Topic.PAYMENTS, writer=LEDGER)
class QuoteRefused(Event):
    """A quote that was not applied: it expired or the market moved past its slippage bound."""

    quote_id: Identifier
    payment_id: Identifier
    reason: str = Field(min_length=1, max_length=200)


@event(Topic.PAYMENTS, writer=LEDGER)
class FiatConverted(Event):
    payment_id: Identifier
    quote_id: Identifier
    offtaker_id: OfftakerId
    fiat: Money
    tft: Money


@event(Topic.PAYMENTS, writer=LEDGER)
class TransferPosted(Event):
    """One double-entry transfer: ``amount`` leaves ``debit_account`` for ``credit_account``.

    Recorded on both accounts' streams (each keyed by its account), with the same
    ``transfer_id``; a consumer summing balances counts the leg whose stream is the account.
    """

    transfer_id: Identifier
    debit_account: AccountId
    credit_account: AccountId
    amount: Money
    kind: TransferKind
    reference: Identifier = Field(description="the payment, bill, payout or refund it settles")


@event(Topic.PAYMENTS, writer=LEDGER)
class UsageBilled(Event):
    """One contract-hour, billed once: USD at the contract's price, paid in TFT."""

    bill_id: Identifier
    contract_id: ContractId
    offtaker_id: OfftakerId
    farm_id: FarmId
    grid: Grid
    hour: AwareDatetime
    seconds: int = Field(gt=0, le=3600, description="seconds of the hour the contract was active")
    usd: Money
    rate: Decimal = Field(gt=0, description="TFT per USD used for this bill")
    amount: Money
    farmer_share: Money
    pool_share: Money
    threefold_share: Money
    basis: Literal["active", "metered"] = Field(
        default="active",
        description="active: the seconds the contract was active; metered: its usage fact",
    )


@event(Topic.PAYMENTS, writer=LEDGER)
class BalanceLow(Event):
    """The balance covers fewer hours of the offtaker's running contracts than the threshold."""

    account_id: AccountId
    offtaker_id: OfftakerId
    balance: Money
    hourly_cost: Money
    hours_left: Decimal = Field(ge=0)
