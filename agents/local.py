"""Agents in-process, fed straight from an event store: for pure tests and single-process tools.

The Ray runtime does the same from Kafka; this driver needs neither, and with a manual clock
it makes whole negotiations reproducible step by step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from agents.agentset import AgentSet
from agents.strategies.consulting import CallBudget, ConsultStats, answer_at_once, ask_within
from agents.strategies.moves import Advisor, NoAdvisor
from hero.domain.clock import Clock
from hero.domain.usage import sample_envelope
from hero.market.service import CommandRejected, MarketService
from hero.store import EventStore, PoisonRow, decode_trusted, recorded_after, skip_row
from schemas import Command, UtilizationSampled

__all__ = ["LocalMarket"]

log = logging.getLogger(__name__)


class LocalMarket:
    def __init__(
        self,
        store: EventStore,
        clock: Clock,
        service: MarketService | None = None,
        *,
        advisor: Advisor | None = None,
        budget: CallBudget | None = None,
        llm_timeout_s: float = 15.0,
    ):
        self.store = store
        self.clock = clock
        self.service = service or MarketService(store, clock)
        self.advisor = advisor or NoAdvisor()
        self.budget = budget or CallBudget()
        self.llm_timeout_s = llm_timeout_s
        self.consulted = ConsultStats()
        self.agents = AgentSet()
        self.position = 0
        self.rejected: list[tuple[str, Command, str]] = []

    def catch_up(self) -> int:
        """Apply every event committed since the last call; returns how many."""
        count = 0
        for row in recorded_after(self.store, self.position, 1000):
            self.position = row.position
            try:  # rows of our own store, validated when appended (as the hosts' feed does)
                envelope, event = decode_trusted(row)
            except PoisonRow as error:  # step over it, as the agent hosts do
                skip_row(self.store, "agents", row, error)
                continue
            self.agents.apply(envelope, event)
            count += 1
        return count

    def sample(self, samples: Iterable[tuple[UtilizationSampled, int]], at: datetime) -> None:
        """Deliver telemetry as a host gets it from Kafka (samples are not in the store)."""
        for sample, sequence in samples:
            envelope = sample_envelope(sample, sequence, actor="telemetry", recorded_at=at)
            self.agents.apply(envelope, sample)

    def step(self) -> int:
        """Catch up, let due agents decide, send their commands; returns commands sent."""
        self.catch_up()
        commands = self.agents.decide(self.clock.now())
        try:
            with self.store.group_commit():  # one commit for the whole step
                for agent_id, command in commands:
                    try:
                        self.service.handle(command, actor=agent_id)
                    except CommandRejected as error:
                        log.info("%s: %s rejected: %s", agent_id, type(command).__name__, error)
                        self.rejected.append((agent_id, command, error.reason))
        except BaseException:
            self.service.forget()  # its cache may hold what was undone
            raise
        return len(commands) + self._consult()

    def _consult(self) -> int:
        """Ask the strategy the agents' questions, in turn (a host asks them concurrently);
        returns how many were answered."""
        questions = self.agents.questions()
        for agent_id, question in questions:
            now = self.clock.now()
            advice = answer_at_once(self.advisor, self.budget, question, now, self.consulted)
            if advice is None:
                advice, timed_out = ask_within(self.advisor, question, self.llm_timeout_s)
                self.consulted.record(advice, timed_out)
            self.agents.advise(agent_id, advice)
        return len(questions)

    def run_until_quiet(self, max_steps: int = 1000) -> int:
        """Step until no agent has anything to say; returns the steps taken."""
        for steps in range(1, max_steps + 1):
            if self.step() == 0 and self.catch_up() == 0:
                return steps
        raise RuntimeError(f"agents still busy after {max_steps} steps")
