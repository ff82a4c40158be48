"""What a host needs to ask a strategy on its agents' behalf: a call budget and a timed call.

Cost control: calls are bounded per agent and negotiation and per minute for the host (a
sliding 60-second window). A question over budget is answered at once with the reason, so the
rules decide; nothing waits.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from agents.strategies.moves import Advice, Advisor, NoAdvisor, Question

__all__ = ["CallBudget", "ConsultStats", "answer_at_once", "ask_within", "failed_advice"]

_WINDOW = timedelta(minutes=1)
#: Negotiations whose call count is remembered; the oldest are forgotten past this.
_REMEMBERED = 10_000


class CallBudget:
    """Thread-safe. ``per_negotiation`` or ``per_minute`` at 0 means no calls at all; the
    defaults are ``HERO_LLM_MAX_CALLS_PER_NEGOTIATION`` and ``..._PER_MINUTE``'s."""

    def __init__(self, per_negotiation: int = 8, per_minute: int = 60):
        self.per_negotiation = per_negotiation
        self.per_minute = per_minute
        self._calls: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._recent: deque[datetime] = deque()
        self._lock = threading.Lock()

    def take(self, question: Question, now: datetime) -> str | None:
        """Count a call for ``question``; or, over budget, the reason it may not be made."""
        key = (question.agent_id, question.negotiation_id)
        with self._lock:
            while self._recent and self._recent[0] <= now - _WINDOW:
                self._recent.popleft()
            used = self._calls.get(key, 0)
            if used >= self.per_negotiation:
                return f"call budget: {self.per_negotiation} model call(s) per negotiation used"
            if len(self._recent) >= self.per_minute:
                return f"call budget: {self.per_minute} model call(s) per minute used"
            self._calls[key] = used + 1
            self._calls.move_to_end(key)
            while len(self._calls) > _REMEMBERED:
                self._calls.popitem(last=False)
            self._recent.append(now)
            return None


@dataclass
class ConsultStats:
    """Model usage as a host saw it (kept in its stats; the events carry it per decision)."""

    llm_calls: int = 0
    llm_answers: int = 0
    llm_errors: int = 0
    llm_timeouts: int = 0
    llm_over_budget: int = 0
    llm_tokens_in: int = 0
    llm_tokens_out: int = 0
    llm_latency_ms_total: int = 0

    def record(self, advice: Advice, timed_out: bool = False) -> None:
        self.llm_answers += advice.move is not None
        self.llm_errors += advice.move is None and not timed_out
        self.llm_timeouts += timed_out
        self.llm_tokens_in += advice.tokens_in
        self.llm_tokens_out += advice.tokens_out
        self.llm_latency_ms_total += advice.latency_ms

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def failed_advice(question: Question, advisor: Advisor, error: str, started: float) -> Advice:
    return Advice(
        question_id=question.question_id,
        error=error[:500],
        model=advisor.name,
        latency_ms=int((time.monotonic() - started) * 1000),
    )


_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hero-llm")


def ask_within(advisor: Advisor, question: Question, timeout_s: float) -> tuple[Advice, bool]:
    """Ask, waiting at most ``timeout_s``; returns the advice and whether it timed out. A call
    cut short keeps running in its thread until the model answers; its answer is dropped."""
    started = time.monotonic()
    future = _POOL.submit(advisor.advise, question)
    try:
        return future.result(timeout=timeout_s), False
    except FutureTimeout:
        return failed_advice(question, advisor, f"timeout after {timeout_s:g} s", started), True
    except Exception as error:  # an advisor must not raise; one that does is an error answer
        return failed_advice(question, advisor, f"advisor error: {error!r}", started), False


def answer_at_once(
    advisor: Advisor, budget: CallBudget, question: Question, now: datetime, stats: ConsultStats
) -> Advice | None:
    """The answer when no model call is needed (no model, or no budget left); ``None``
    when the model must be asked (the call is then counted)."""
    if isinstance(advisor, NoAdvisor):
        return advisor.advise(question)
    refusal = budget.take(question, now)
    if refusal is not None:
        stats.llm_over_budget += 1
        return Advice(question_id=question.question_id, error=refusal, model=advisor.name)
    stats.llm_calls += 1
    return None
