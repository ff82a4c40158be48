"""Fiat in, conversion to TFT, transfers, bills and payouts (``hero.payments``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, Field

from schemas.ids import AccountId, ContractId, FarmId, Identifier, OfftakerId
from schemas.messages import Event, event
from schemas.money import Money
from schemas.registry import REGISTRY
from schemas.topics import Topic

__all__ = [
    "BalanceLow",
    "FiatConverted",
    "FiatPaymentReceived",
    "QuoteIssued",
    "TransferPosted",
    "UsageBilled",
]


@event(Topic.PAYMENTS, version=2)
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


@event(Topic.PAYMENTS)
class QuoteIssued(Event):
    quote_id: Identifier
    payment_id: Identifier
    fiat: Money
    tft: Money
    rate: Decimal = Field(gt=0, description="TFT per unit of the fiat currency")
    spread: Decimal = Field(ge=0, lt=1)
    expires_at: AwareDatetime


@event(Topic.PAYMENTS)
class FiatConverted(Event):
    payment_id: Identifier
    quote_id: Identifier
    fiat: Money
    tft: Money


@event(Topic.PAYMENTS)
class TransferPosted(Event):
    """One double-entry transfer: ``amount`` leaves ``debit_account`` for ``credit_account``."""

    transfer_id: Identifier
    debit_account: AccountId
    credit_account: AccountId
    amount: Money
    reason: str


@event(Topic.PAYMENTS)
class UsageBilled(Event):
    bill_id: Identifier
    contract_id: ContractId
    offtaker_id: OfftakerId
    farm_id: FarmId
    hour: AwareDatetime
    amount: Money
    farmer_share: Money
    pool_share: Money
    threefold_share: Money


@event(Topic.PAYMENTS)
class BalanceLow(Event):
    account_id: AccountId
    balance: Money
    hours_left: Decimal = Field(ge=0)
