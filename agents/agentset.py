"""A set of agents sharing one market view: fold events into it, route them, ask for commands.

Pure; both the Ray agent host and the in-process market driver use it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from agents.brain import Brain
from agents.market import MarketView
from agents.roster import Roster, market_roster
from agents.strategies.moves import Advice, Question
from schemas import Command, Envelope, Event

__all__ = ["AgentSet", "deliver"]


def deliver(
    market: MarketView,
    brains: dict[str, Brain],
    owns: Callable[[str], bool],
    envelope: Envelope,
    event: Event,
    roster: Roster = market_roster,
) -> set[str]:
    """Fold one event into the view, adopt the agents ``roster`` says it creates that ``owns``
    accepts, and let the agents it concerns observe it; returns those agents' ids."""
    market.apply(envelope, event)  # first: a brain observing the event sees it in the view
    for brain in roster(envelope, event):
        if owns(brain.agent_id) and brain.agent_id not in brains:
            brains[brain.agent_id] = brain
    observed: set[str] = set()
    for agent_id in market.route(envelope, event):
        found = brains.get(agent_id)
        if found is not None:
            found.observe(envelope, event, market)
            observed.add(agent_id)
    return observed


class AgentSet:
    """``owns(agent_id)`` says which agents live here (a host's shard); the view sees all."""

    def __init__(
        self, owns: Callable[[str], bool] = lambda _: True, roster: Roster = market_roster
    ):
        self.market = MarketView()
        self._roster = roster
        self.brains: dict[str, Brain] = {}
        self._owns = owns
        self._dirty: set[str] = set()
        self._seen: dict[str, int] = {}  # stream -> last version applied
        self._decided: list[str] = []

    def apply(self, envelope: Envelope, event: Event) -> bool:
        """Fold one event; False when this (stream, version) was applied before."""
        if envelope.version <= self._seen.get(envelope.stream, 0):
            return False
        self._seen[envelope.stream] = envelope.version
        self._dirty |= deliver(self.market, self.brains, self._owns, envelope, event, self._roster)
        return True

    def decide(self, now: datetime) -> list[tuple[str, Command]]:
        """Commands from the agents that saw events since the last call or whose time came."""
        due = set(self._dirty)
        self._dirty.clear()
        for agent_id, brain in self.brains.items():
            wakeup = brain.next_wakeup()
            if wakeup is not None and wakeup <= now:
                due.add(agent_id)
        self._decided = sorted(due)
        return [
            (agent_id, command)
            for agent_id in self._decided
            for command in self.brains[agent_id].decide(now, self.market)
        ]

    def questions(self) -> list[tuple[str, Question]]:
        """The questions for a strategy the agents of the last ``decide`` raised."""
        return [
            (agent_id, question)
            for agent_id in self._decided
            for question in self.brains[agent_id].questions()
        ]

    def advise(self, agent_id: str, advice: Advice) -> None:
        """Hand an answer to its agent, which decides again at the next ``decide``."""
        brain = self.brains.get(agent_id)
        if brain is not None and brain.advised(advice):
            self._dirty.add(agent_id)
