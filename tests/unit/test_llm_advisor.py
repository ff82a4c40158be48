"""LlmAdvisor against the scripted chat model: moves, unusable answers, provider errors."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage, SystemMessage

from agents.strategies.chat import LlmConfigError
from agents.strategies.llm import (
    LlmAdvisor,
    advisor_from_settings,
    situation_json,
    system_prompt,
)
from agents.strategies.moves import NO_MODEL, Move, NoAdvisor, Question
from agents.strategies.scripted import ScriptedChatModel
from hero.config import HeroSettings

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SITUATION: dict[str, Any] = {
    "rfq": {"replicas": 2, "cpu": 4, "deadline": NOW + timedelta(minutes=5)},
    "limits": {"floor_price_hour": Decimal("0.0800"), "asking_price_hour": Decimal("0.1250")},
    "history": [{"at": NOW, "event": "RfqIssued"}],
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.upper().startswith("HERO_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def question(role="farmer", stage="rfq", question_id="q-1") -> Question:
    return Question(
        question_id=question_id,
        agent_id="farmer-7",
        negotiation_id="n-1",
        role=role,
        stage=stage,
        situation=SITUATION,
        asked_at=NOW,
        answer_by=NOW + timedelta(seconds=20),
    )


def move_step(args: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": "Move", "args": args}], **extra}


def advisor(*steps: dict[str, Any], timeout_s: float | None = None) -> LlmAdvisor:
    return LlmAdvisor(ScriptedChatModel.from_steps(list(steps), timeout_s=timeout_s), "scripted:t")


# -- moves --------------------------------------------------------------------------------


def test_a_valid_move_becomes_advice_with_tokens_and_latency():
    subject = advisor(
        move_step(
            {"action": "counter", "price_hour": "0.11", "rationale": "undercut the market"},
            usage={"input_tokens": 120, "output_tokens": 30},
            delay_s=0.02,
        )
    )
    advice = subject.advise(question())
    assert advice.error is None
    assert advice.move == Move(
        action="counter", price_hour=Decimal("0.11"), rationale="undercut the market"
    )
    assert advice.question_id == "q-1"
    assert advice.model == "scripted:t"
    assert (advice.tokens_in, advice.tokens_out) == (120, 30)
    assert advice.latency_ms >= 20
    assert advice.raw is None


def test_the_model_is_sent_the_role_prompt_and_the_situation():
    class Recorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.sent: list[list[Any]] = []

        def on_chat_model_start(self, serialized, messages, **kwargs):
            self.sent.extend(messages)

    recorder = Recorder()
    model = ScriptedChatModel.from_steps([move_step({"action": "accept", "rationale": "ok"})])
    model.callbacks = [recorder]
    LlmAdvisor(model, "scripted:t").advise(question(role="offtaker", stage="offer"))

    assert len(recorder.sent) == 1
    system, human = recorder.sent[0]
    assert isinstance(system, SystemMessage)
    assert system.content == system_prompt("offtaker", "offer")
    assert isinstance(human, HumanMessage)
    assert json.loads(human.content) == json.loads(situation_json(SITUATION))
    assert human.content.startswith("{\n  ")  # indented


def test_concurrent_advice_from_a_thread_pool():
    subject = advisor(move_step({"action": "accept", "rationale": "ok"}))
    with ThreadPoolExecutor(max_workers=8) as pool:
        advice = list(pool.map(lambda n: subject.advise(question(question_id=f"q{n}")), range(16)))
    assert [a.question_id for a in advice] == [f"q{n}" for n in range(16)]
    assert all(a.move == Move(action="accept", rationale="ok") for a in advice)


# -- unusable answers ---------------------------------------------------------------------


def test_a_text_answer_is_an_invalid_answer_with_the_text():
    subject = advisor({"content": "I'd accept, the price is fair.", "usage": {"input_tokens": 9}})
    advice = subject.advise(question())
    assert advice.move is None
    assert advice.error == "invalid answer: no move in the model's answer"
    assert advice.raw == "I'd accept, the price is fair."
    assert advice.tokens_in == 9
    assert advice.model == "scripted:t"


def test_a_long_text_answer_is_truncated():
    advice = advisor({"content": "x" * 2000}).advise(question())
    assert advice.raw == "x" * 500


def test_tool_args_failing_validation_are_an_invalid_answer():
    args = {"action": "buy", "price_hour": "0.1", "rationale": "cheap"}
    advice = advisor(move_step(args)).advise(question())
    assert advice.move is None
    assert advice.error is not None
    assert advice.error.startswith("invalid answer: action: Input should be")
    assert advice.raw is not None
    assert json.loads(advice.raw) == args


def test_several_validation_problems_summarise_the_first():
    args = {"action": "counter", "price_hour": "cheap", "rationale": "r", "mood": "happy"}
    advice = advisor(move_step(args)).advise(question())
    assert (
        advice.error == "invalid answer: price_hour: Input should be a valid decimal (and 1 more)"
    )


def test_a_call_to_another_tool_is_an_invalid_answer():
    step = {"tool_calls": [{"name": "Shrug", "args": {"why": "dunno"}}]}
    advice = advisor(step).advise(question())
    assert advice.error is not None
    assert advice.error.startswith("invalid answer: ")
    assert "Shrug" in advice.error
    assert advice.raw == '{"why": "dunno"}'


# -- provider errors ----------------------------------------------------------------------


def test_a_provider_error_is_a_model_error():
    advice = advisor({"error": "429 rate limited"}).advise(question())
    assert advice.move is None
    assert advice.error == "model error: RuntimeError: 429 rate limited"
    assert advice.raw is None
    assert advice.model == "scripted:t"
    assert (advice.tokens_in, advice.tokens_out) == (0, 0)


def test_a_long_provider_error_is_truncated():
    advice = advisor({"error": "e" * 1000}).advise(question())
    assert advice.error is not None
    assert len(advice.error) == 500
    assert advice.error.startswith("model error: RuntimeError: eee")


def test_a_timeout_is_a_model_error():
    subject = advisor({"content": "late", "delay_s": 30}, timeout_s=0.05)
    advice = subject.advise(question())
    assert advice.error == "model error: TimeoutError: scripted model timed out after 0.05s"
    assert 50 <= advice.latency_ms < 5000


def test_the_advisor_recovers_after_an_error():
    subject = advisor({"error": "boom"}, move_step({"action": "decline", "rationale": "full"}))
    assert subject.advise(question()).error == "model error: RuntimeError: boom"
    assert subject.advise(question()).move == Move(action="decline", rationale="full")


# -- prompts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "stage", "must_say"),
    [
        ("offtaker", "offer", ["buying agent of an offtaker", "`counter` proposes `price_hour`"]),
        ("farmer", "rfq", ["selling agent of a farmer", "RFQ", "`node_ids`"]),
        ("farmer", "counter", ["selling agent of a farmer", "cannot counter a counter"]),
        ("farmer", "offer", ["selling agent of a farmer", "farmer answering a counter"]),
        ("offtaker", "rfq", ["buying agent of an offtaker", "farmer's offer"]),
    ],
)
def test_system_prompt_per_role_and_stage(role, stage, must_say):
    prompt = system_prompt(role, stage)
    for text in [*must_say, "ThreeFold Grid", "hard limits", "wasted", "rationale"]:
        assert text in prompt
    assert "structured output" in prompt


def test_situation_json_handles_decimals_and_datetimes():
    data = json.loads(situation_json(SITUATION))
    assert data["limits"]["floor_price_hour"] == "0.0800"
    assert data["history"][0]["at"] == "2026-05-01T12:00:00+00:00"
    assert data["rfq"]["deadline"] == "2026-05-01T12:05:00+00:00"


# -- settings -----------------------------------------------------------------------------


def test_no_llm_configured_is_no_advisor():
    subject = advisor_from_settings(HeroSettings())
    assert isinstance(subject, NoAdvisor)
    advice = subject.advise(question())
    assert advice.move is None
    assert advice.error is not None
    assert "no model configured" in advice.error
    assert advice.model == NO_MODEL


def test_a_scripted_llm_is_an_llm_advisor(tmp_path):
    path = tmp_path / "script.json"
    path.write_text(json.dumps([move_step({"action": "accept", "rationale": "ok"})]))
    settings = HeroSettings(llm=f"scripted:{path}", llm_timeout_s=4)
    subject = advisor_from_settings(settings)
    assert isinstance(subject, LlmAdvisor)
    assert subject.name == f"scripted:{path}"
    assert isinstance(subject.model, ScriptedChatModel)
    assert subject.model.timeout_s == 4
    advice = subject.advise(question())
    assert advice.move == Move(action="accept", rationale="ok")
    assert advice.model == f"scripted:{path}"


def test_hero_llm_from_the_environment(monkeypatch, tmp_path):
    path = tmp_path / "script.json"
    path.write_text(json.dumps([{"content": "hm"}]))
    monkeypatch.setenv("HERO_LLM", f"scripted:{path}")
    subject = advisor_from_settings(HeroSettings())
    assert subject.name == f"scripted:{path}"


def test_a_bad_llm_spec_fails_at_configuration():
    with pytest.raises(LlmConfigError, match="unknown provider 'gpt'"):
        advisor_from_settings(HeroSettings(llm="gpt:4"))
