"""Value objects shared across the catalogue."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DeclineReason", "NodeStatus", "Sla", "Value"]


class Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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


class Sla(Value):
    """What a farmer promises: uptime, and the share of the bill refunded when it is missed."""

    uptime_pct: Decimal = Field(ge=0, le=100)
    penalty_pct: Decimal = Field(default=Decimal(0), ge=0, le=100)
