"""Checks on new input that facts already recorded are not held to.

A mandate with a negative budget is refused when it is set, but an old store may hold one:
the registry decodes recorded payloads with :data:`RECORDED` as the validation context, and
these checks let such payloads through, so a reader can still fold the stream (and the
offtaker can replace the mandate) instead of meeting a row it cannot read.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationInfo

from schemas.money import Money

__all__ = ["RECORDED", "is_recorded", "non_negative", "positive"]

RECORDED: dict[str, Any] = {"recorded": True}

M = TypeVar("M", Money, Money | None)


def is_recorded(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get("recorded"))


def positive(value: M, info: ValidationInfo) -> M:
    """A ``field_validator``'s body: the amount must be above zero."""
    if value is not None and value.amount <= 0 and not is_recorded(info):
        raise ValueError(f"must be above zero, got {value}")
    return value


def non_negative(value: M, info: ValidationInfo) -> M:
    """A ``field_validator``'s body: the amount must not be below zero."""
    if value is not None and value.amount < 0 and not is_recorded(info):
        raise ValueError(f"must not be negative, got {value}")
    return value
