"""Value objects shared across the catalogue."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.exact import honest_decimals
from schemas.ids import OfferId

__all__ = [
    "DeclineReason",
    "GuardrailHit",
    "Negotiator",
    "NodeStatus",
    "Sla",
    "StrategyDecision",
    "Value",
]


def _value_schema(schema: dict[str, Any], cls: type[Any]) -> None:
    honest_decimals(schema, floats=True)


class Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_value_schema)


class NodeStatus(StrEnum):
    UP = "up"
    DOWN = "down"
    STANDBY = "standby"


class DeclineReason(StrEnum):
    BELOW_FLOOR = "below_floor"
    INSUFFICIENT_CAPACITY = "insufficient_capacity"
    OFFTAKER_DENIED = "offtaker_denied"
    STANDING_TOO_LOW = "standing_too_low"
    REGION_NOT_SERVED = "region_not_served"
    GRID_NOT_SERVED = "grid_not_served"
    TERM_TOO_LONG = "term_too_long"
    SLA_NOT_MET = "sla_not_met"
    POLICY_OFF = "policy_off"
    NODE_UNAVAILABLE = "node_unavailable"
    NOT_WANTED = "not_wanted"


class Sla(Value):
    """What a farmer promises: uptime, and the share of the bill refunded when it is missed."""

    uptime_pct: Decimal = Field(ge=0, le=100)
    penalty_pct: Decimal = Field(default=Decimal(0), ge=0, le=100)


class Negotiator(StrEnum):
    """Who makes an agent's negotiation moves: the rules, or a language model under the
    same rules as guardrails (the rules decide whenever no model is configured)."""

    RULE = "rule"
    LLM = "llm"


class GuardrailHit(Value):
    """A hard limit a proposed move met: ``clamped`` (changed to fit) or ``refused``."""

    rule: Literal["floor", "ceiling", "budget", "capacity", "policy", "term", "protocol"]
    outcome: Literal["clamped", "refused"]
    detail: str = Field(max_length=500)


class StrategyDecision(Value):
    """Which strategy made a negotiation move and why, recorded on the move's event.

    ``strategy`` is the one whose move was taken: ``llm`` (possibly clamped by guardrails)
    or ``rule``; ``fallback`` says why the rules decided although the model was asked (a
    timeout, an error, an invalid answer, a refused move, no call budget left)."""

    strategy: Negotiator
    rationale: str = Field(default="", max_length=2000)
    model: str | None = Field(default=None, max_length=200, description="provider:model")
    offer_id: OfferId | None = None
    proposed: str | None = Field(
        default=None, max_length=2000, description="the model's move, when not taken as is"
    )
    guardrails: list[GuardrailHit] = Field(default_factory=list)
    fallback: str | None = Field(default=None, max_length=500)
    tokens_in: int = Field(default=0, ge=0)
    tokens_out: int = Field(default=0, ge=0)
    latency_ms: int = Field(default=0, ge=0)
