"""An agent's side of consulting a strategy: the questions it raised, the answers it got,
and the decision notes it records. Pure: the host does the asking.

A brain calls :meth:`Deliberation.consult` each time it decides; the first call raises the
question (handed to the host by :meth:`Deliberation.questions`), later calls return ``None``
until the host hands the answer back (:meth:`Deliberation.advised`) or the question's
``answer_by`` passes -- then the answer is "no answer in time" and the rules decide.
Deciding stays level-triggered: the same question id always gets the same answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from agents.strategies.guardrails import Guarded
from agents.strategies.moves import Advice, Move, Question
from schemas import GuardrailHit, Negotiator, StrategyDecision

__all__ = ["REFUSED", "Deliberation", "apply_guardrails", "decision_for"]

#: The fallback reason when the guardrails refused the model's move.
REFUSED = "the model's move was refused by the guardrails"


class Deliberation:
    __slots__ = ("_answers", "_new", "_open")

    def __init__(self) -> None:
        self._open: dict[str, Question] = {}
        self._new: list[Question] = []
        self._answers: dict[str, Advice] = {}

    def consult(
        self, question_id: str, ask: Callable[[], Question], now: datetime
    ) -> Advice | None:
        """The answer to ``question_id``, or ``None`` while it is awaited (asking it first)."""
        answer = self._answers.get(question_id)
        if answer is not None:
            return answer
        question = self._open.get(question_id)
        if question is None:
            question = ask()
            self._open[question_id] = question
            self._new.append(question)
            return None
        if now < question.answer_by:
            return None
        del self._open[question_id]
        answer = Advice(
            question_id=question_id,
            error=f"no answer by {question.answer_by.isoformat(timespec='seconds')}",
        )
        self._answers[question_id] = answer
        return answer

    def questions(self) -> list[Question]:
        """The questions raised since the last call, for the host to ask."""
        new, self._new = self._new, []
        return [q for q in new if q.question_id in self._open]

    def advised(self, advice: Advice) -> bool:
        """Take an answer; False when the question is not awaited (late or unknown)."""
        if self._open.pop(advice.question_id, None) is None:
            return False
        self._answers[advice.question_id] = advice
        return True

    def forget(self, prefix: str) -> None:
        """Drop the questions and answers of a negotiation that ended."""
        for store in (self._open, self._answers):
            for key in [k for k in store if k.startswith(prefix)]:
                del store[key]

    def awaiting(self, prefix: str) -> bool:
        """A question whose id starts with ``prefix`` awaits its answer."""
        return any(key.startswith(prefix) for key in self._open)

    def next_deadline(self) -> datetime | None:
        return min((q.answer_by for q in self._open.values()), default=None)

    def __len__(self) -> int:
        return len(self._open) + len(self._answers)


def apply_guardrails(advice: Advice, guard: Callable[[Move], Guarded]) -> Guarded | None:
    """The guardrails' verdict on the advised move; ``None`` when the advice holds no move.

    A move the guardrails cannot even weigh (an amount no Money can hold) is refused with the
    reason: a model's answer must never stop the agent's decisions."""
    if advice.move is None:
        return None
    try:
        return guard(advice.move)
    except (ValueError, ArithmeticError) as error:
        detail = f"the move cannot be weighed: {type(error).__name__}: {error}"
        hit = GuardrailHit(rule="protocol", outcome="refused", detail=detail[:500])
        return Guarded(None, (hit,))


def _move_text(move: Move | None, raw: str | None) -> str | None:
    if move is not None:
        return json.dumps(move.model_dump(mode="json", exclude_defaults=True))[:2000]
    return raw[:2000] if raw else None


def decision_for(
    advice: Advice,
    guarded: Guarded | None,
    *,
    rule_rationale: str,
    offer_id: str | None = None,
) -> StrategyDecision:
    """The note recorded on the move's event: the model's move when the guardrails let it
    through (clamped or not), else the rules' with the reason they decided."""
    hits: tuple[GuardrailHit, ...] = guarded.hits if guarded is not None else ()
    common = {
        "model": advice.model,
        "offer_id": offer_id,
        "tokens_in": advice.tokens_in,
        "tokens_out": advice.tokens_out,
        "latency_ms": advice.latency_ms,
        "guardrails": list(hits),
    }
    if advice.move is not None and guarded is not None and guarded.move is not None:
        return StrategyDecision(
            strategy=Negotiator.LLM,
            rationale=advice.move.rationale[:2000],
            proposed=_move_text(advice.move, None) if hits else None,
            **common,
        )
    return StrategyDecision(
        strategy=Negotiator.RULE,
        rationale=rule_rationale[:2000],
        proposed=_move_text(advice.move, advice.raw),
        fallback=(advice.error or REFUSED)[:500],
        **common,
    )
