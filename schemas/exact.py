"""Exact numbers only: a float such as 0.1 is not 0.1, so models of money and ratios refuse it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = ["ExactModel", "refuse_float"]


def refuse_float(value: Any) -> Any:
    """A ``mode="before"`` validator: Decimals, ints and strings pass, floats do not."""
    if isinstance(value, float):
        raise ValueError("use a Decimal, an int or a string, not a float")
    return value


class ExactModel(BaseModel):
    """Frozen, no unknown fields, and no field takes a float."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    _no_floats = field_validator("*", mode="before")(refuse_float)
