"""What an agent asks a negotiation strategy, and what it answers. Pure pydantic, no I/O.

A brain that negotiates with a model does not call it: it raises a :class:`Question` (the
negotiation so far and the limits it moves within, as JSON-able facts) and the host that
runs it asks an :class:`Advisor`, then hands the :class:`Advice` back. The brain applies its
guardrails to the move and records the outcome on the move's event.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.money import MAX_AMOUNT, Currency

__all__ = ["NO_MODEL", "Advice", "Advisor", "Move", "NoAdvisor", "Question"]

#: The advisor's name when no model is configured.
NO_MODEL = "none"


class Move(BaseModel):
    """The next move in a negotiation, as a model proposes it."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["accept", "counter", "decline"] = Field(
        description=(
            "offtaker: accept the offer, counter it at price_hour, or decline it; "
            "farmer answering an RFQ: accept (offer at our asking price), counter (offer at "
            "price_hour), or decline; farmer answering a counter: accept or decline"
        )
    )
    price_hour: Decimal | None = Field(
        default=None, description="for counter: USD per hour for one replica"
    )
    node_ids: list[str] = Field(
        default_factory=list,
        description="farmer answering an RFQ: the nodes to offer; empty lets the rules choose",
    )
    reason: str = Field(default="", max_length=500, description="for decline: why")
    rationale: str = Field(max_length=2000, description="why this move; recorded on the event")

    @field_validator("price_hour")
    @classmethod
    def _a_price(cls, value: Decimal | None) -> Decimal | None:
        """A price no amount of money can be is an invalid answer (the rules then decide),
        not an error deep in the agent when it is made Money."""
        if value is None:
            return None
        if value <= 0:
            raise ValueError(f"must be above zero, got {value}")
        if value >= MAX_AMOUNT:
            raise ValueError(f"must be below 10^18, got {value}")
        exponent = value.as_tuple().exponent
        places = Currency.USD.places
        if isinstance(exponent, int) and -exponent > places:
            raise ValueError(f"has at most {places} decimal places, got {value}")
        return value


class Question(BaseModel):
    """One move to decide. ``question_id`` is unique per agent and stage of a negotiation."""

    model_config = ConfigDict(frozen=True)

    question_id: str
    agent_id: str
    negotiation_id: str
    role: Literal["offtaker", "farmer"]
    stage: Literal["offer", "rfq", "counter"]
    situation: dict[str, Any] = Field(description="the negotiation so far and the limits")
    asked_at: datetime
    answer_by: datetime = Field(description="after this the rules decide")


class Advice(BaseModel):
    """The answer to a question: a move, or why there is none (then the rules decide)."""

    model_config = ConfigDict(frozen=True)

    question_id: str
    move: Move | None = None
    error: str | None = None
    model: str = NO_MODEL
    raw: str | None = Field(default=None, description="the model's answer when unusable")
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: int = 0


class Advisor(ABC):
    """A port: answers a question with a move. Blocking; hosts call it off their loop."""

    name: str = NO_MODEL

    @abstractmethod
    def advise(self, question: Question) -> Advice: ...


class NoAdvisor(Advisor):
    """No model to ask: every question is answered at once by deferring to the rules, with
    ``reason`` (no model configured, or the configured one could not be built)."""

    def __init__(self, reason: str = "no model configured (HERO_LLM is unset)") -> None:
        self.reason = reason

    def advise(self, question: Question) -> Advice:
        return Advice(question_id=question.question_id, error=self.reason)
