"""Money: an exact Decimal amount with its currency. Never a float.

Every currency carries at most 7 decimal places: TFT has 7 on TFChain, and TFChain keeps
USD prices in units of 1e-7 USD (DOMAIN.md), so fiat prices per hour stay exact too.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, WithJsonSchema, field_serializer, field_validator

__all__ = [
    "AMOUNT_PATTERN",
    "MAX_AMOUNT",
    "POSITIVE_AMOUNT_PATTERN",
    "Currency",
    "CurrencyMismatch",
    "Money",
    "in_currency",
]

#: Amounts stay below 10^18 so that sums and differences (25 significant digits at most with
#: 7 places) are exact in Decimal's default 28-digit context.
MAX_AMOUNT = Decimal(10) ** 18
#: How an amount is written in JSON, read and written: a fixed-point decimal string, below
#: 10^18 in magnitude, with at most 7 places (what the validators below enforce).
AMOUNT_PATTERN = r"^-?[0-9]{1,18}(\.[0-9]{1,7})?$"
#: Amounts above 0, as published for fields that take only those (no trailing zeros).
POSITIVE_AMOUNT_PATTERN = r"^([1-9][0-9]{0,17}(\.[0-9]{1,7})?|0\.[0-9]{0,6}[1-9])$"
# The published schema says "a string", in both modes: JSON numbers are refused (a float
# cannot hold 0.1), so pydantic's default for Decimal (a number or a string) would promise
# what the validator refuses.
_AMOUNT_SCHEMA = WithJsonSchema(
    {
        "type": "string",
        "pattern": AMOUNT_PATTERN,
        "description": "a decimal string, at most 7 places: never a JSON number",
        "examples": ["12.50", "0.0000001"],
    }
)


class Currency(StrEnum):
    USD = "USD"
    EUR = "EUR"
    TFT = "TFT"

    @property
    def places(self) -> int:
        return 7

    @property
    def quantum(self) -> Decimal:
        return Decimal(1).scaleb(-self.places)


def in_currency(
    currency: Currency | str, *, positive: bool = False
) -> Callable[[dict[str, Any]], None]:
    """The ``Field(json_schema_extra=...)`` of a Money field that takes one currency (and,
    if ``positive``, only amounts above 0): the published schema says so, as the checks of
    the model or service do. (``allOf`` rather than a sibling of ``$ref``, which OpenAPI 3.0
    tools ignore.)"""
    properties: dict[str, Any] = {"currency": {"const": Currency(currency).value}}
    if positive:
        properties["amount"] = {"pattern": POSITIVE_AMOUNT_PATTERN}
    only = {"properties": properties}

    def narrow(schema: dict[str, Any]) -> None:
        for branch in [schema, *schema.get("anyOf", [])]:
            if "$ref" in branch:
                branch["allOf"] = [{"$ref": branch.pop("$ref")}, only]

    return narrow


class CurrencyMismatch(ValueError):
    """Arithmetic or comparison between two currencies; convert through a quote first."""


class Money(BaseModel):
    """An amount in one currency. ``Money.of("12.50", "USD")``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: Annotated[Decimal, _AMOUNT_SCHEMA]
    currency: Currency

    @field_validator("amount", mode="before")
    @classmethod
    def _no_floats(cls, value: Any) -> Any:
        if isinstance(value, float):
            raise ValueError(
                "amount must be a string, integer or Decimal, not a float "
                "(binary floats cannot hold amounts like 0.1 exactly)"
            )
        return value

    @field_validator("amount")
    @classmethod
    def _finite(cls, value: Decimal) -> Decimal:
        if not value.is_finite():
            raise ValueError("amount must be a finite number")
        if abs(value) >= MAX_AMOUNT:
            raise ValueError(f"amount must be below 10^18 in magnitude, got {value}")
        return value

    @field_serializer("amount", when_used="json")
    def _fixed_point(self, amount: Decimal) -> str:
        """``0.0000005``, never ``5E-7``: what a person and a JSON consumer expect to read."""
        return format(amount, "f")

    def model_post_init(self, __context: Any) -> None:
        exponent = self.amount.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > self.currency.places:
            raise ValueError(
                f"{self.currency} amounts carry at most {self.currency.places} decimal places, "
                f"got {self.amount}"
            )

    @classmethod
    def of(cls, amount: Decimal | int | str, currency: Currency | str) -> Money:
        if isinstance(amount, float):
            raise TypeError("amount must be a string, integer or Decimal, not a float")
        try:
            value = Decimal(amount)
        except InvalidOperation as error:
            raise ValueError(f"not a decimal amount: {amount!r}") from error
        return cls(amount=value, currency=Currency(currency))

    @classmethod
    def zero(cls, currency: Currency | str) -> Money:
        return _ZEROS[Currency(currency)]

    @classmethod
    def rounded(
        cls, amount: Decimal, currency: Currency | str, rounding: str = ROUND_HALF_EVEN
    ) -> Money:
        """A computed amount brought to the currency's places, with an explicit rounding."""
        unit = Currency(currency)
        with localcontext() as context:
            context.prec = 60  # room for a product of two large factors before rounding
            value = amount.quantize(unit.quantum, rounding=rounding)
        if cls is Money and value.is_finite() and abs(value) < MAX_AMOUNT:
            return _checked(value, unit)  # quantized: its places are the currency's
        return cls(amount=value, currency=unit)

    def times(self, factor: Decimal | int, rounding: str = ROUND_HALF_EVEN) -> Money:
        if isinstance(factor, float):
            raise TypeError("factor must be a Decimal or an int, not a float")
        with localcontext() as context:
            context.prec = 60
            product = self.amount * Decimal(factor)
        return Money.rounded(product, self.currency, rounding)

    def _same(self, other: object) -> Money:
        if not isinstance(other, Money):
            raise TypeError(f"expected Money, got {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")
        return other

    def __add__(self, other: object) -> Money:
        return _sum(self.amount + self._same(other).amount, self.currency)

    def __sub__(self, other: object) -> Money:
        return _sum(self.amount - self._same(other).amount, self.currency)

    def __neg__(self) -> Money:
        return _checked(-self.amount, self.currency)

    def __lt__(self, other: object) -> bool:
        return self.amount < self._same(other).amount

    def __le__(self, other: object) -> bool:
        return self.amount <= self._same(other).amount

    def __gt__(self, other: object) -> bool:
        return self.amount > self._same(other).amount

    def __ge__(self, other: object) -> bool:
        return self.amount >= self._same(other).amount

    @property
    def is_zero(self) -> bool:
        return self.amount == 0

    @property
    def is_negative(self) -> bool:
        return self.amount < 0

    def __str__(self) -> str:
        return f"{self.amount:f} {self.currency}"


_FIELDS = frozenset({"amount", "currency"})


def _checked(amount: Decimal, currency: Currency) -> Money:
    """A Money whose amount is known to hold (finite, below 10^18, at most the currency's
    places), built as ``model_construct`` would, without validating it again: sums, negations
    and roundings are computed on every bill and every price, and pydantic's validation of
    what was already valid was a fifth of the market twin's time."""
    money = Money.__new__(Money)
    object.__setattr__(money, "__dict__", {"amount": amount, "currency": currency})
    object.__setattr__(money, "__pydantic_fields_set__", set(_FIELDS))
    object.__setattr__(money, "__pydantic_extra__", None)
    object.__setattr__(money, "__pydantic_private__", None)
    return money


def _sum(amount: Decimal, currency: Currency) -> Money:
    """A sum or difference of two valid amounts: it has their places; only its size may
    break the limit (then validation says so)."""
    if abs(amount) < MAX_AMOUNT:
        return _checked(amount, currency)
    return Money(amount=amount, currency=currency)


_ZEROS = {currency: Money(amount=Decimal(0), currency=currency) for currency in Currency}
