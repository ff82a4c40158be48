"""The LLM negotiator's pure parts: guardrails, the call budget, waiting for an answer."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from agents.runtime.actor import _advisor
from agents.strategies import (
    Advice,
    CallBudget,
    Deliberation,
    FarmerLimits,
    Move,
    NoAdvisor,
    NodeRoom,
    OfftakerLimits,
    Question,
    guard_counter_answer,
    guard_farmer_offer,
    guard_offtaker,
)
from agents.strategies.situations import _answer_by
from hero.config import HeroSettings
from tests.unit._gwt import SHAPE, T0, usd

SECOND = timedelta(seconds=1)


def limits(**changes: object) -> OfftakerLimits:
    base = {
        "ask": usd("0.05"),
        "agreed": usd("0.05"),
        "resources": SHAPE,
        "max_price_cu_hour": usd("0.05"),
        "budget_left_month": usd("1000"),
        "may_counter": True,
    }
    return OfftakerLimits(**{**base, **changes})  # type: ignore[arg-type]


def counter(price: str) -> Move:
    return Move(action="counter", price_hour=Decimal(price), rationale="x")


def rules(guarded: object) -> list[tuple[str, str]]:
    return [(h.rule, h.outcome) for h in guarded.hits]  # type: ignore[attr-defined]


def test_offtaker_guardrails_clamp_or_refuse_what_is_outside_the_mandate():
    # Budget: 21.6 USD a month left is 0.03 USD/h.
    clamped = guard_offtaker(counter("0.04"), limits(budget_left_month=usd("21.6")))
    assert clamped.move is not None
    assert clamped.move.price_hour == Decimal("0.0300000")
    assert rules(clamped) == [("budget", "clamped")]
    assert guard_offtaker(counter("0.05"), limits()).refused  # not below the ask
    # A model's negative price is an invalid answer already; the guard refuses one anyway.
    with pytest.raises(ValueError, match="above zero"):
        counter("-1")
    negative = Move.model_construct(
        action="counter", price_hour=Decimal(-1), node_ids=[], reason="", rationale="x"
    )
    assert guard_offtaker(negative, limits()).refused
    assert rules(guard_offtaker(counter("0.01"), limits(may_counter=False))) == [
        ("protocol", "refused")
    ]
    accept = Move(action="accept", rationale="x")
    assert rules(guard_offtaker(accept, limits(counter_pending=True))) == [("protocol", "refused")]
    over = guard_offtaker(accept, limits(budget_left_month=usd("35")))  # 0.05 * 720 = 36
    assert rules(over) == [("budget", "refused")]
    assert not guard_offtaker(accept, limits(budget_left_month=usd("36"))).refused
    expensive = limits(ask=usd("5"), agreed=usd("5"), budget_left_month=usd("99999"))
    assert rules(guard_offtaker(accept, expensive)) == [("ceiling", "refused")]
    assert guard_offtaker(Move(action="decline", rationale="x"), limits()).hits == ()


def farmer_limits(replicas: int = 1) -> FarmerLimits:
    rooms = {
        "n1": NodeRoom("n1", usd("0.05"), usd("0.04")),
        "n2": NodeRoom("n2", usd("0.05"), usd("0.04")),
        "n3": NodeRoom("n3", usd("0.05"), usd("0.04"), why_not="the node is down"),
    }
    return FarmerLimits(ceiling=usd("0.06"), replicas=replicas, nodes=rooms)


def test_farmer_guardrails_keep_offers_on_nodes_with_room_within_floor_and_ceiling():
    many = guard_farmer_offer(
        Move(action="accept", node_ids=["n1", "n2", "n9", "n3"], rationale="x"), farmer_limits()
    )
    assert many.offers == (("n1", usd("0.05")),)
    assert rules(many) == [
        ("capacity", "refused"),  # n9 is not ours
        ("capacity", "refused"),  # n3 is down
        ("capacity", "clamped"),  # two nodes for one replica
    ]
    high = guard_farmer_offer(
        counter("0.09").model_copy(update={"node_ids": ["n2"]}), farmer_limits()
    )
    assert high.offers == (("n2", usd("0.06")),)
    assert rules(high) == [("ceiling", "clamped")]
    denied = FarmerLimits(
        ceiling=usd("0.06"),
        replicas=1,
        nodes={},
        refused_terms=(("term", "policy: term_too_long"),),
    )
    assert rules(guard_farmer_offer(Move(action="accept", rationale="x"), denied)) == [
        ("term", "refused")
    ]


def test_a_farmer_takes_a_counter_only_at_or_above_its_floor():
    accept = Move(action="accept", rationale="x")
    assert guard_counter_answer(accept, usd("0.04"), usd("0.04")).move == accept
    assert rules(guard_counter_answer(accept, usd("0.03"), usd("0.04"))) == [("floor", "refused")]
    assert rules(guard_counter_answer(counter("0.05"), usd("0.03"), usd("0.04"))) == [
        ("protocol", "refused")
    ]


def question(qid: str, nego: str = "n1", answer_by: int = 10) -> Question:
    return Question(
        question_id=qid,
        agent_id="offtaker:acme",
        negotiation_id=nego,
        role="offtaker",
        stage="offer",
        situation={},
        asked_at=T0,
        answer_by=T0 + answer_by * SECOND,
    )


def test_the_call_budget_bounds_calls_per_negotiation_and_per_minute():
    budget = CallBudget(per_negotiation=2, per_minute=3)
    assert budget.take(question("a"), T0) is None
    assert budget.take(question("b"), T0) is None
    assert "per negotiation" in (budget.take(question("c"), T0) or "")
    assert budget.take(question("d", nego="n2"), T0 + SECOND) is None
    assert "per minute" in (budget.take(question("e", nego="n3"), T0 + 2 * SECOND) or "")
    assert budget.take(question("f", nego="n3"), T0 + 61 * SECOND) is None  # the window slid


def test_a_question_is_asked_once_and_answered_by_the_rules_when_overdue():
    deliberation = Deliberation()
    asked: list[str] = []

    def ask() -> Question:
        asked.append("q")
        return question("n1:o1:offer")

    assert deliberation.consult("n1:o1:offer", ask, T0) is None
    assert deliberation.consult("n1:o1:offer", ask, T0 + SECOND) is None
    assert asked == ["q"]
    assert [q.question_id for q in deliberation.questions()] == ["n1:o1:offer"]
    assert deliberation.questions() == []
    assert deliberation.next_deadline() == T0 + 10 * SECOND
    late = deliberation.consult("n1:o1:offer", ask, T0 + 10 * SECOND)
    assert late is not None
    assert (late.error or "").startswith("no answer by")
    assert not deliberation.advised(Advice(question_id="n1:o1:offer", error="too late"))
    deliberation.forget("n1:")
    assert len(deliberation) == 0


def test_an_rfq_window_of_two_seconds_leaves_the_model_one_and_a_half():
    assert _answer_by(T0, T0 + 2 * SECOND) == T0 + timedelta(milliseconds=1500)
    assert _answer_by(T0, T0 + 60 * SECOND) == T0 + 20 * SECOND
    assert _answer_by(T0, T0) == T0


def test_a_host_whose_model_cannot_be_built_negotiates_by_the_rules_and_says_why():
    advisor = _advisor(HeroSettings(llm="nope:model"))
    assert isinstance(advisor, NoAdvisor)
    assert advisor.reason.startswith("model unavailable")
    assert isinstance(_advisor(HeroSettings()), NoAdvisor)
