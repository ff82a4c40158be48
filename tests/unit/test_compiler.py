"""The policy and mandate compiler against scripted model answers: real LangChain plumbing
(tool binding, AIMessage tool calls), a fake model that answers from a script."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from agents.strategies.compiler import (
    ASK_QUESTIONS,
    PROPOSE_MANDATE,
    PROPOSE_POLICY,
    Clarify,
    Compiled,
    CompileError,
    MarketFacts,
    Refused,
    compile_mandate,
    compile_policy,
)
from agents.strategies.diff import diff
from agents.strategies.scripted import ScriptedChatModel
from hero.market.fleet import REGIONS
from schemas import FarmerPolicy, Grid, Mandate, Money, PolicyMode, Resources, Sla

EXAMPLE = (
    "auto-accept Grid 4 reservations in Europe above 0.9x market price, keep 20% free, "
    "never more than 12 months"
)
MARKET = MarketFacts(regions=list(REGIONS))
GB = 1024**3


class Recording(ScriptedChatModel):
    """The scripted model, keeping the messages it was sent."""

    seen: list[list[BaseMessage]] = []

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def model(*steps: dict[str, Any]) -> Recording:
    return Recording.from_steps(list(steps), timeout_s=None)  # type: ignore[return-value]


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "args": args}]}


def usd(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "USD"}


EXAMPLE_ARGS: dict[str, Any] = {
    "mode": "auto",
    "markup": "0.9",
    "reserve_share": "0.2",
    "max_term_hours": 8640,
    "regions": ["europe"],
    "grids": ["grid4"],
    "assumptions": ["'market price' is the reference price per CU- and SU-hour"],
}


# -- policies -------------------------------------------------------------------------------------


def test_the_example_compiles_to_the_exact_policy() -> None:
    scripted = model({**call(PROPOSE_POLICY, **EXAMPLE_ARGS), "usage": {"input_tokens": 1}})

    result = compile_policy(scripted, EXAMPLE, current=None, market=MARKET)

    assert isinstance(result, Compiled)
    assert result.value == FarmerPolicy(
        mode=PolicyMode.AUTO,
        grids=[Grid.GRID4],
        regions=["europe"],
        markup=Decimal("0.9"),
        reserve_share=Decimal("0.2"),
        max_term_hours=12 * 720,
    )
    assert result.assumptions == ["'market price' is the reference price per CU- and SU-hour"]
    assert result.source_text == EXAMPLE
    system, human = scripted.seen[-1]
    assert human.content == EXAMPLE
    # The model is told the market: its regions, the reference prices, the 720-hour month.
    assert '"regions":["europe","north-america"' in str(system.content)
    assert '"reference_cu_hour":{"amount":"0.010","currency":"USD"}' in str(system.content)
    assert "a month is 720 hours" in str(system.content)
    assert "There is no current policy" in str(system.content)


def test_numbers_the_transport_made_floats_are_read_as_the_decimals_written() -> None:
    args = {**EXAMPLE_ARGS, "markup": 0.9, "reserve_share": 0.2, "floor_cu_hour": None}
    result = compile_policy(
        model(call(PROPOSE_POLICY, **args)), EXAMPLE, current=None, market=MARKET
    )

    assert isinstance(result, Compiled)
    assert (result.value.markup, result.value.reserve_share) == (Decimal("0.9"), Decimal("0.2"))


def test_the_current_policy_is_given_to_the_model() -> None:
    current = FarmerPolicy(markup=Decimal("1.2"), regions=["asia"])
    scripted = model(call(PROPOSE_POLICY, **EXAMPLE_ARGS))

    compile_policy(scripted, EXAMPLE, current=current, market=MARKET)

    assert f"The current policy: {current.model_dump_json()}" in str(scripted.seen[-1][0].content)


def test_fixed_prices_and_a_markup_together_are_refused_with_the_field_errors() -> None:
    args = {**EXAMPLE_ARGS, "price_cu_hour": usd("0.02"), "reserve_share": "1.5"}
    result = compile_policy(
        model(call(PROPOSE_POLICY, **args)), EXAMPLE, current=None, market=MARKET
    )

    assert isinstance(result, Refused)
    assert result.reason == "the proposed policy is not valid"
    assert result.field_errors == [("reserve_share", "Input should be less than 1")]

    both = {**EXAMPLE_ARGS, "price_cu_hour": usd("0.02")}
    result = compile_policy(
        model(call(PROPOSE_POLICY, **both)), EXAMPLE, current=None, market=MARKET
    )
    assert isinstance(result, Refused)
    assert result.field_errors == [
        ("(whole)", "give either fixed prices or a markup on the reference, not both")
    ]


def test_a_money_amount_in_another_currency_is_refused_as_a_hand_written_one_is() -> None:
    args = {**EXAMPLE_ARGS, "markup": None, "price_cu_hour": {"amount": "0.02", "currency": "TFT"}}
    result = compile_policy(
        model(call(PROPOSE_POLICY, **args)), EXAMPLE, current=None, market=MARKET
    )

    assert isinstance(result, Refused)
    assert result.field_errors == [("(whole)", "price_cu_hour must be in USD")]


def test_an_ambiguous_request_gets_the_models_questions() -> None:
    questions = ["Which price do you mean: a markup on the reference, or a fixed price?"]
    scripted = model(call(ASK_QUESTIONS, questions=questions))

    result = compile_policy(scripted, "sell cheap", current=None, market=MARKET)

    assert result == Clarify(questions=questions)


def test_questions_win_over_a_proposal_made_beside_them() -> None:
    answer = {
        "tool_calls": [
            {"name": PROPOSE_POLICY, "args": EXAMPLE_ARGS},
            {"name": ASK_QUESTIONS, "args": {"questions": ["Grid 3 too?"]}},
        ]
    }
    result = compile_policy(model(answer), EXAMPLE, current=None, market=MARKET)

    assert result == Clarify(questions=["Grid 3 too?"])


def test_a_region_the_market_does_not_know_becomes_a_question_listing_the_known_ones() -> None:
    args = {**EXAMPLE_ARGS, "regions": ["europe", "antarctica"]}
    result = compile_policy(
        model(call(PROPOSE_POLICY, **args)), EXAMPLE, current=None, market=MARKET
    )

    assert isinstance(result, Clarify)
    (question,) = result.questions
    assert "'antarctica'" in question
    assert "europe, north-america, asia, africa, south-america, oceania" in question


def test_a_grid_the_market_does_not_run_becomes_a_question() -> None:
    market = MarketFacts(regions=list(REGIONS), grids=[Grid.GRID3])
    result = compile_policy(model(call(PROPOSE_POLICY, **EXAMPLE_ARGS)), EXAMPLE, current=None,
                            market=market)  # fmt: skip

    assert isinstance(result, Clarify)
    assert result.questions == [
        "The market does not run grid4 (the grids to serve); which of grid3 then?"
    ]


def test_a_text_only_answer_is_refused_never_guessed() -> None:
    result = compile_policy(
        model({"content": "Sure! A markup of 0.9 sounds good."}),
        EXAMPLE,
        current=None,
        market=MARKET,
    )

    assert result == Refused(
        reason="the model answered in text instead of calling a tool: "
        "Sure! A markup of 0.9 sounds good."
    )


def test_an_empty_answer_an_unknown_tool_and_two_proposals_are_refused() -> None:
    empty = compile_policy(model({"content": ""}), EXAMPLE, current=None, market=MARKET)
    assert empty == Refused(reason="the model answered nothing (no tool call, no text)")

    other = compile_policy(
        model(call("delete_farm", farm="x")), EXAMPLE, current=None, market=MARKET
    )
    assert other == Refused(reason="the model called an unknown tool: delete_farm")

    proposal = {"name": PROPOSE_POLICY, "args": EXAMPLE_ARGS}
    two = compile_policy(
        model({"tool_calls": [proposal, proposal]}), EXAMPLE, current=None, market=MARKET
    )
    assert two == Refused(reason="the model made 2 proposals at once; expected one")


@pytest.mark.parametrize(
    "beside", [[], [{"name": PROPOSE_POLICY, "args": EXAMPLE_ARGS, "id": "2"}]]
)
def test_unreadable_tool_args_are_refused(beside: list[dict[str, Any]]) -> None:
    """Also beside a readable call: what the unreadable one said is unknown."""

    class Broken(ScriptedChatModel):
        def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
            unreadable = {"name": ASK_QUESTIONS, "args": "{questions: [", "id": "1",
                          "error": None, "type": "invalid_tool_call"}  # fmt: skip
            message = AIMessage(content="", tool_calls=beside, invalid_tool_calls=[unreadable])
            return ChatResult(generations=[ChatGeneration(message=message)])

    broken = Broken.from_steps([{"content": "unused"}])
    result = compile_policy(broken, EXAMPLE, current=None, market=MARKET)

    assert result == Refused(
        reason="the model's ask_questions call could not be read: its arguments are not valid JSON"
    )


def test_assumptions_that_are_not_strings_are_refused() -> None:
    args = {**EXAMPLE_ARGS, "assumptions": "none"}
    result = compile_policy(
        model(call(PROPOSE_POLICY, **args)), EXAMPLE, current=None, market=MARKET
    )

    assert result == Refused(
        reason="the proposal could not be read",
        field_errors=[("assumptions", "must be a list of strings")],
    )


def test_questions_with_no_question_are_refused() -> None:
    result = compile_policy(model(call(ASK_QUESTIONS, questions=[])), "x", current=None,
                            market=MARKET)  # fmt: skip

    assert isinstance(result, Refused)
    assert result.field_errors == [
        ("questions", "List should have at least 1 item after validation, not 0")
    ]


def test_a_failing_model_is_a_clear_error() -> None:
    with pytest.raises(CompileError, match="the model failed: RuntimeError: provider is down"):
        compile_policy(model({"error": "provider is down"}), EXAMPLE, current=None, market=MARKET)


def test_a_model_without_tools_is_a_clear_error() -> None:
    class NoTools(ScriptedChatModel):
        def bind_tools(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

    with pytest.raises(CompileError, match="does not support tool calls"):
        compile_policy(NoTools.from_steps([{"content": "x"}]), EXAMPLE, current=None,
                       market=MARKET)  # fmt: skip


def test_blank_text_is_refused_without_asking_the_model() -> None:
    scripted = model({"error": "must not be called"})

    assert compile_policy(scripted, "  ", current=None, market=MARKET) == Refused(
        reason="no text to compile into a policy"
    )
    assert scripted.calls == 0


# -- mandates -------------------------------------------------------------------------------------

WEB_ARGS: dict[str, Any] = {
    "workloads": [
        {
            "workload_id": "web",
            "resources": {"cru": 2, "mru": 4 * GB, "sru": 50 * GB},
            "replicas": 3,
            "regions": ["europe"],
        }
    ],
    "budget_month": usd("500"),
    "max_price_cu_hour": usd("0.05"),
    "prefer_grid": "grid3",
    "assumptions": ["SSD, not HDD, for the 50 GB disk"],
}
WEB_TEXT = (
    "run 3 web servers in Europe, 2 cores, 4 GB RAM and 50 GB disk each, $500/month, "
    "at most 5 cents per CU-hour, Grid 3 preferred"
)


def test_a_mandate_compiles() -> None:
    scripted = model(call(PROPOSE_MANDATE, **WEB_ARGS))

    result = compile_mandate(scripted, WEB_TEXT, current=None, market=MARKET)

    assert isinstance(result, Compiled)
    assert result.value == Mandate.model_validate(
        {key: value for key, value in WEB_ARGS.items() if key != "assumptions"}
    )
    assert result.value.workloads[0].resources == Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)
    assert result.assumptions == ["SSD, not HDD, for the 50 GB disk"]
    assert "1 GB is 1073741824 bytes" in str(scripted.seen[-1][0].content)


def test_a_mandate_with_an_unknown_region_or_invalid_fields() -> None:
    workload = {**WEB_ARGS["workloads"][0], "regions": ["mars"]}
    unknown = compile_mandate(model(call(PROPOSE_MANDATE, **{**WEB_ARGS, "workloads": [workload]})),
                              WEB_TEXT, current=None, market=MARKET)  # fmt: skip
    assert isinstance(unknown, Clarify)
    assert "'mars' (workload web)" in unknown.questions[0]

    bad = {**WEB_ARGS, "workloads": [], "budget_month": usd("-")}
    refused = compile_mandate(model(call(PROPOSE_MANDATE, **bad)), WEB_TEXT, current=None,
                              market=MARKET)  # fmt: skip
    assert isinstance(refused, Refused)
    assert [path for path, _ in refused.field_errors] == ["workloads", "budget_month.amount"]


# -- diff -----------------------------------------------------------------------------------------


def test_diff_shows_only_changed_fields_dotted_with_money_readable() -> None:
    current = FarmerPolicy(
        price_cu_hour=Money.of("0.12", "USD"), regions=["asia"], sla=Sla(uptime_pct=Decimal(99))
    )
    new = FarmerPolicy(
        markup=Decimal("0.9"),
        regions=["europe"],
        grids=[Grid.GRID4],
        sla=Sla(uptime_pct=Decimal("99.5")),
        max_term_hours=8640,
    )

    assert diff(current, new) == [
        "- price_cu_hour: 0.12 USD",
        "+ markup: 0.9",
        "+ max_term_hours: 8640",
        "- regions: [asia]",
        "+ regions: [europe]",
        "- grids: [grid3, grid4]",
        "+ grids: [grid4]",
        "- sla.uptime_pct: 99",
        "+ sla.uptime_pct: 99.5",
    ]
    assert diff(new, new) == []


def test_diff_without_a_current_one_lists_every_field_set_away_from_its_default() -> None:
    new = FarmerPolicy(markup=Decimal("0.9"), reserve_share=Decimal("0.2"), grids=[Grid.GRID4],
                       sla=Sla(uptime_pct=Decimal(99), penalty_pct=Decimal(10)))  # fmt: skip

    assert diff(None, new) == [
        "+ markup: 0.9",
        "+ reserve_share: 0.2",
        "+ grids: [grid4]",
        "+ sla.penalty_pct: 10",
    ]


def test_diff_of_mandates_walks_the_workloads() -> None:
    payload = {key: value for key, value in WEB_ARGS.items() if key != "assumptions"}
    first = Mandate.model_validate(payload)
    workload = {**payload["workloads"][0], "replicas": 5}
    second = Mandate.model_validate(
        {**payload, "workloads": [workload], "budget_month": usd("800"), "certified_only": True}
    )

    assert diff(first, second) == [
        "- workloads.0.replicas: 3",
        "+ workloads.0.replicas: 5",
        "- budget_month: 500 USD",
        "+ budget_month: 800 USD",
        "- certified_only: false",
        "+ certified_only: true",
    ]
    created = diff(None, first)
    assert created[:3] == ["+ workloads.0.workload_id: web", "+ workloads.0.resources.cru: 2",
                           f"+ workloads.0.resources.mru: {4 * GB}"]  # fmt: skip
    assert "+ max_price_cu_hour: 0.05 USD" in created
    assert "+ prefer_grid: grid3" in created
