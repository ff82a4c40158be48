"""Negotiation strategies: the rules (in the brains), and a language model kept inside them.

This package's own modules are pure (moves, guardrails, deliberation, situations, consulting);
only ``chat``, ``scripted``, ``llm`` and ``compiler`` import LangChain, and nothing here imports
them: a stack without a model never loads LangChain.

See docs/architecture.md for the layers and the flow of one command.
"""

from agents.strategies.consulting import CallBudget, ConsultStats
from agents.strategies.deliberation import Deliberation, decision_for
from agents.strategies.guardrails import (
    FarmerLimits,
    Guarded,
    NodeRoom,
    OfftakerLimits,
    guard_counter_answer,
    guard_farmer_offer,
    guard_offtaker,
)
from agents.strategies.moves import Advice, Advisor, Move, NoAdvisor, Question

__all__ = [
    "Advice",
    "Advisor",
    "CallBudget",
    "ConsultStats",
    "Deliberation",
    "FarmerLimits",
    "Guarded",
    "Move",
    "NoAdvisor",
    "NodeRoom",
    "OfftakerLimits",
    "Question",
    "decision_for",
    "guard_counter_answer",
    "guard_farmer_offer",
    "guard_offtaker",
]
