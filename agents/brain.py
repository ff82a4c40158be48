"""What an agent is: a pure object that folds events into its state and decides commands.

Brains never do I/O. A host feeds them the events routed to them (``observe``) and asks them,
when something changed or a deadline came (``decide``), which commands to send. Deciding is
level-triggered: a brain answers from its state, not from the last event, so a host that
replays the log after a restart and then calls ``decide`` resumes where the agent was.
Commands carry deterministic ids, so a repeat after a crash is applied once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import TYPE_CHECKING

from agents.strategies.deliberation import Deliberation
from agents.strategies.moves import Advice, Question
from schemas import Command, Envelope, Event

if TYPE_CHECKING:
    from agents.market import MarketView

__all__ = ["Brain"]


class Brain(ABC):
    """One agent: ``agent_id`` is ``farmer:<farm_id>`` or ``offtaker:<offtaker_id>``."""

    __slots__ = ("_deliberation", "agent_id")

    def __init__(self, agent_id: str):
        self.agent_id = agent_id
        self._deliberation: Deliberation | None = None

    @property
    def deliberation(self) -> Deliberation:
        """The questions this agent put to a strategy, made on first use (an agent of the
        rules never asks, and thousands of them share a host)."""
        if self._deliberation is None:
            self._deliberation = Deliberation()
        return self._deliberation

    @abstractmethod
    def observe(self, envelope: Envelope, event: Event, market: MarketView) -> None:
        """Fold one event routed to this agent into its state (called in log order)."""

    @abstractmethod
    def decide(self, now: datetime, market: MarketView) -> list[Command]:
        """The commands to send now; must not repeat a command whose effect it has seen."""

    def next_wakeup(self) -> datetime | None:
        """The next moment ``decide`` should run even if no event arrives (a deadline)."""
        return None

    def questions(self) -> list[Question]:
        """Questions for a strategy raised by the last ``decide``: the host asks them and
        hands each answer to ``advised``, then calls ``decide`` again."""
        return self._deliberation.questions() if self._deliberation is not None else []

    def advised(self, advice: Advice) -> bool:
        """Take a strategy's answer; False when no question awaits it."""
        return self._deliberation is not None and self._deliberation.advised(advice)

    def answer_due(self) -> datetime | None:
        """When the earliest awaited answer is overdue (then the rules decide)."""
        return self._deliberation.next_deadline() if self._deliberation is not None else None

    def forget_questions(self, prefix: str) -> None:
        if self._deliberation is not None:
            self._deliberation.forget(prefix)

    def awaiting_answer(self, prefix: str) -> bool:
        return self._deliberation is not None and self._deliberation.awaiting(prefix)
