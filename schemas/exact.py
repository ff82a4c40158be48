"""Exact numbers only: a float such as 0.1 is not 0.1, so models of money and ratios refuse it
(a whole number written ``5.0`` is exact, and is taken as the integer 5).

And the JSON Schema of a Decimal field says what the validator takes. Pydantic publishes a
Decimal as "a number, or any string": the number's bounds do not reach the string, and an
:class:`ExactModel` refuses the number when it is a float. :func:`honest_decimals` rewrites
those properties (the validation-mode schema; serialization already says "a string").
"""

from __future__ import annotations

from decimal import Decimal
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

__all__ = [
    "DECIMAL_PATTERN",
    "EXACT_FLOAT_INTEGERS",
    "ExactModel",
    "honest_decimals",
    "refuse_float",
]

#: A decimal written as JSON text: digits, an optional sign and fraction, no exponent.
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
_NON_NEGATIVE = r"^[0-9]+(\.[0-9]+)?$"
_POSITIVE = r"^([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)$"
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def refuse_float(value: Any) -> Any:
    """A ``mode="before"`` validator: Decimals, ints and strings pass, floats do not."""
    if isinstance(value, float):
        raise ValueError("use a Decimal, an int or a string, not a float")
    return value


#: Every integer up to this magnitude is exact as a float (a JSON number such as ``5.0``).
EXACT_FLOAT_INTEGERS = 2**53
_WHOLE = (int, Decimal)


def _takes_whole(model: type[BaseModel], name: str | None) -> bool:
    """Does the field take an int or a Decimal (alone or with None)?"""
    field = model.model_fields.get(name or "")
    if field is None:
        return False
    annotation = field.annotation
    if get_origin(annotation) in (Union, UnionType):
        return any(arg in _WHOLE for arg in get_args(annotation))
    return annotation in _WHOLE


def _string_pattern(bounds: dict[str, Any]) -> str | None:
    """A pattern for decimal strings within ``bounds``; None where a pattern cannot say it
    (an upper bound): then the schema offers the number form alone."""
    if not bounds:
        return DECIMAL_PATTERN
    if bounds == {"minimum": 0}:
        return _NON_NEGATIVE
    if bounds == {"exclusiveMinimum": 0}:
        return _POSITIVE
    return None


def _honest(branches: list[dict[str, Any]], floats: bool) -> list[dict[str, Any]] | None:
    number = next((b for b in branches if b.get("type") == "number"), None)
    if number is None or {"type": "string"} not in branches:
        return None  # not pydantic's Decimal shape
    pattern = _string_pattern({k: number[k] for k in _BOUNDS if k in number})
    honest: list[dict[str, Any]] = []
    for branch in branches:
        if branch is number:
            honest.append(branch if floats else {**branch, "type": "integer"})
        elif branch == {"type": "string"}:
            if pattern is not None:
                honest.append({"type": "string", "pattern": pattern})
        else:
            honest.append(branch)
    return honest


def honest_decimals(schema: dict[str, Any], *, floats: bool) -> None:
    """Rewrite the Decimal properties of a model's JSON ``schema`` in place: strings get a
    decimal pattern (or go, where the field has an upper bound a pattern cannot state), and
    the number form becomes "integer" unless the model takes ``floats``."""
    for prop in schema.get("properties", {}).values():
        branches = prop.get("anyOf")
        if isinstance(branches, list):
            honest = _honest(branches, floats)
            if honest is not None:
                prop["anyOf"] = honest
                _default_as_number(prop)


def _default_as_number(prop: dict[str, Any]) -> None:
    """A default written as a decimal string, where strings are no longer offered."""
    default = prop.get("default")
    offered = {branch.get("type") for branch in prop["anyOf"]}
    if isinstance(default, str) and "string" not in offered:
        value = Decimal(default)
        prop["default"] = int(value) if value == value.to_integral_value() else float(value)


def _exact_schema(schema: dict[str, Any], cls: type[Any]) -> None:
    honest_decimals(schema, floats=False)


class ExactModel(BaseModel):
    """Frozen, no unknown fields, and no field takes a float."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_exact_schema)

    @field_validator("*", mode="before")
    @classmethod
    def _no_floats(cls, value: Any, info: ValidationInfo) -> Any:
        # JSON has one number type: 5.0 is an integer to JSON Schema, and a float holds it
        # exactly (up to 2^53), so int and Decimal fields take it as the integer it is.
        if (
            isinstance(value, float)
            and value.is_integer()
            and abs(value) <= EXACT_FLOAT_INTEGERS
            and _takes_whole(cls, info.field_name)
        ):
            return int(value)
        return refuse_float(value)
