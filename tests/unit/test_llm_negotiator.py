"""The LLM negotiator in-process: agents on a memory store and a manual clock, the model a
scripted LangChain fake (``ScriptedChatModel``) behind the real ``LlmAdvisor``.

Each test makes one agent model-driven (its mandate or policy says ``negotiator: llm``) and
scripts the model's answers; the other agent follows the rules. The guardrails are checked by
what reaches the store: the moves' events and the decision recorded on them.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agents.local import LocalMarket
from agents.strategies.consulting import CallBudget
from agents.strategies.deliberation import REFUSED, apply_guardrails
from agents.strategies.guardrails import FarmerLimits, NodeRoom, guard_farmer_offer
from agents.strategies.llm import LlmAdvisor
from agents.strategies.moves import Advice, Move, NoAdvisor
from agents.strategies.scripted import ScriptedChatModel
from hero.cli import app as hero_app
from hero.cli import common
from hero.config import HeroSettings
from hero.domain.clock import ManualClock
from hero.domain.pricing import ask_price, floor_price
from hero.gateway._strategy_metrics import DECISION_EVENTS, StrategyTally, strategy_metrics
from hero.store import EventStore, MemoryEventStore, open_store
from schemas import (
    ContractCreated,
    CounterAccepted,
    CounterOffered,
    CounterRejected,
    Event,
    FarmerPolicy,
    Grid,
    Mandate,
    Money,
    NegotiationAwarded,
    NegotiationFailed,
    Negotiator,
    OfferAccepted,
    OfferDeclined,
    OfferMade,
    RegisterFarm,
    RegisterNode,
    Resources,
    SetFarmerPolicy,
    SetOfftakerMandate,
    StrategyDecision,
    WorkloadSpec,
)
from tests.unit._gwt import SHAPE, T0, usd

SECOND = timedelta(seconds=1)
PLACE = {"grid": Grid.GRID4, "country": "BE", "region": "europe"}
PRICE_CU = "0.02"
USAGE = {"input_tokens": 300, "output_tokens": 40}


def move(action: str, rationale: str = "scripted", **fields: Any) -> dict[str, Any]:
    return {
        "tool_calls": [
            {"name": "Move", "args": {"action": action, "rationale": rationale, **fields}}
        ],
        "usage": USAGE,
    }


def ask() -> Money:
    """The farm's ask for one replica-hour of SHAPE at PRICE_CU per CU-hour."""
    return ask_price(FarmerPolicy(price_cu_hour=usd(PRICE_CU)), SHAPE)


class Market:
    """One farm (nodes n1 and n2, or n1 too small) and one offtaker wanting one replica."""

    def __init__(
        self,
        steps: list[dict[str, Any]],
        *,
        offtaker: Negotiator = Negotiator.RULE,
        farmer: Negotiator = Negotiator.RULE,
        budget: str = "1000",
        counter_discount: str = "0",
        floor_cu: str | None = None,
        small_n1: bool = False,
        deny: bool = False,
        per_negotiation: int = 8,
        timeout_s: float = 5.0,
        store: EventStore | None = None,
    ) -> None:
        self.clock = ManualClock(T0)
        self.store = store or MemoryEventStore(self.clock)
        self.model = ScriptedChatModel.from_steps(steps)
        self.local = LocalMarket(
            self.store,
            self.clock,
            advisor=LlmAdvisor(self.model, "scripted:test"),
            budget=CallBudget(per_negotiation=per_negotiation, per_minute=100),
            llm_timeout_s=timeout_s,
        )
        handle = self.local.service.handle
        handle(RegisterFarm(command_id="farm", farm_id="f1", name="f1", **PLACE))
        for node, total in (
            ("n1", SHAPE if not small_n1 else Resources.from_gb(cru=1, mru_gb=2, sru_gb=10)),
            ("n2", SHAPE.times(4)),
        ):
            handle(RegisterNode(command_id=node, node_id=node, farm_id="f1", total=total, **PLACE))
        self.policy = FarmerPolicy(
            price_cu_hour=usd(PRICE_CU),
            floor_cu_hour=usd(floor_cu) if floor_cu else None,
            deny_offtakers=["acme"] if deny else [],
            negotiator=farmer,
        )
        handle(SetFarmerPolicy(command_id="policy", farm_id="f1", policy=self.policy))
        self.mandate = Mandate(
            workloads=[
                WorkloadSpec(workload_id="web", resources=SHAPE, replicas=1, grids=[Grid.GRID4])
            ],
            budget_month=usd(budget),
            max_price_cu_hour=usd("0.05"),
            offer_window_s=Decimal(2),
            counter_discount=Decimal(counter_discount),
            negotiator=offtaker,
        )
        handle(SetOfftakerMandate(command_id="mandate", offtaker_id="acme", mandate=self.mandate))

    def settle(self, seconds: int = 10) -> None:
        """Run the agents, moving time on a quarter second at a time, until the first
        negotiation has closed (or ``seconds`` passed)."""
        end = self.clock.now() + seconds * SECOND
        while self.clock.now() < end:
            self.local.run_until_quiet()
            if self.of(NegotiationAwarded) or self.of(NegotiationFailed):
                return
            self.clock.advance(SECOND / 4)

    def events(self) -> list[Event]:
        rows = self.store.read_all(1, self.store.current_position() + 1)
        return [r.envelope().decode() for r in rows]

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events() if isinstance(e, kind)]


def note(event: Any) -> StrategyDecision:
    assert event.decision is not None, f"{type(event).__name__} carries no decision"
    return event.decision


# -- the offtaker's model --------------------------------------------------------------------


def test_a_model_accept_within_the_limits_makes_the_contract_with_its_rationale():
    market = Market([move("accept", "fair: 60% under our ceiling")], offtaker=Negotiator.LLM)
    market.settle()
    (accepted,) = market.of(OfferAccepted)
    decision = note(accepted)
    assert decision.strategy == Negotiator.LLM
    assert decision.rationale == "fair: 60% under our ceiling"
    assert decision.model == "scripted:test"
    assert (decision.tokens_in, decision.tokens_out) == (300, 40)
    assert decision.fallback is None
    assert decision.guardrails == []
    assert len(market.of(ContractCreated)) == 1
    assert market.of(NegotiationAwarded)
    assert market.local.consulted.llm_calls == 1
    assert market.local.consulted.llm_tokens_in == 300


def test_an_accept_over_budget_is_refused_and_the_rules_decide_and_the_close_says_so():
    # The offer costs ask * 720 a month; the budget is a dollar short of it.
    monthly = ask().times(720).amount
    market = Market([move("accept", "take it")], offtaker=Negotiator.LLM, budget=str(monthly - 1))
    market.settle()
    assert market.of(OfferAccepted) == []
    assert market.of(ContractCreated) == []
    (failed,) = market.of(NegotiationFailed)
    (decision,) = failed.decisions
    assert decision.strategy == Negotiator.RULE
    assert decision.fallback == REFUSED
    assert [(h.rule, h.outcome) for h in decision.guardrails] == [("budget", "refused")]
    assert '"accept"' in (decision.proposed or "")
    assert "budget" in decision.rationale


def test_a_counter_above_what_the_budget_allows_is_clamped_to_it():
    monthly = ask().times(720).amount
    budget = (monthly * Decimal("0.8")).quantize(Decimal("0.01"))
    market = Market(
        [
            move(
                "counter",
                "try lower",
                price_hour=str(Money.rounded(ask().amount * Decimal("0.95"), "USD").amount),
            ),
            move("accept", "ok"),
        ],
        offtaker=Negotiator.LLM,
        budget=str(budget),
    )
    market.settle()
    (counter,) = market.of(CounterOffered)
    decision = note(counter)
    assert decision.strategy == Negotiator.LLM
    assert [(h.rule, h.outcome) for h in decision.guardrails] == [("budget", "clamped")]
    assert counter.price_hour.amount <= budget / 720
    assert counter.price_hour.amount == Money.rounded(budget / 720, "USD").amount
    assert "price_hour" in (decision.proposed or "")


def test_garbage_from_the_model_falls_back_to_the_rules_which_accept():
    market = Market(
        [{"content": "I think you should probably buy it, maybe?"}], offtaker=Negotiator.LLM
    )
    market.settle()
    (accepted,) = market.of(OfferAccepted)
    decision = note(accepted)
    assert decision.strategy == Negotiator.RULE
    assert decision.fallback is not None
    assert decision.fallback.startswith("invalid answer")
    assert decision.proposed == "I think you should probably buy it, maybe?"
    assert "rules accept" in decision.rationale
    assert market.of(ContractCreated)


def test_an_invalid_move_a_model_error_and_a_timeout_each_fall_back():
    for steps, expected in (
        (
            [{"tool_calls": [{"name": "Move", "args": {"action": "buy", "rationale": "x"}}]}],
            "invalid answer",
        ),
        ([{"error": "rate limited"}], "model error"),
        ([{"delay_s": 2, **move("accept")}], "timeout"),
    ):
        market = Market(steps, offtaker=Negotiator.LLM, timeout_s=0.2)
        market.settle()
        (accepted,) = market.of(OfferAccepted)
        decision = note(accepted)
        assert decision.strategy == Negotiator.RULE, steps
        assert expected in (decision.fallback or ""), decision.fallback


def test_no_call_budget_left_means_the_rules_decide_without_a_call():
    market = Market([move("decline", reason="never")], offtaker=Negotiator.LLM, per_negotiation=0)
    market.settle()
    (accepted,) = market.of(OfferAccepted)
    decision = note(accepted)
    assert decision.strategy == Negotiator.RULE
    assert decision.fallback is not None
    assert decision.fallback.startswith("call budget")
    assert market.model.calls == 0
    assert market.local.consulted.llm_over_budget == 1


def test_a_model_decline_skips_the_offer_and_the_close_records_why():
    market = Market(
        [move("decline", "too far from our users", reason="latency")], offtaker=Negotiator.LLM
    )
    market.settle()
    assert market.of(OfferAccepted) == []
    (failed,) = market.of(NegotiationFailed)
    (decision,) = failed.decisions
    assert decision.strategy == Negotiator.LLM
    assert decision.rationale == "too far from our users"


# -- the farmer's model ------------------------------------------------------------------------


def test_a_farmer_model_accepting_a_counter_below_the_floor_is_refused():
    # The rule offtaker counters 50% below the ask; the floor is the ask (no floor_cu_hour).
    market = Market(
        [move("accept", "any deal is a good deal")],
        farmer=Negotiator.LLM,
        counter_discount="0.5",
    )
    market.settle()
    (rejected,) = market.of(CounterRejected)
    decision = note(rejected)
    assert decision.strategy == Negotiator.RULE
    assert decision.fallback == REFUSED
    assert [(h.rule, h.outcome) for h in decision.guardrails] == [("floor", "refused")]
    assert market.of(CounterAccepted) == []
    (accepted,) = market.of(OfferAccepted)  # the rule offtaker then takes the ask
    assert accepted.price_hour == ask()


def test_a_farmer_model_overbooking_a_node_is_refused_and_the_rules_offer_elsewhere():
    market = Market(
        [move("accept", "n1 twice", node_ids=["n1", "n1"])], farmer=Negotiator.LLM, small_n1=True
    )
    market.settle()
    (offer,) = market.of(OfferMade)
    assert offer.node_id == "n2"
    decision = note(offer)
    assert decision.strategy == Negotiator.RULE
    assert decision.fallback == REFUSED
    rules = [(h.rule, h.outcome) for h in decision.guardrails]
    assert rules.count(("capacity", "refused")) == 3  # n1 full, n1 again, then nothing left
    assert market.of(ContractCreated)[0].node_id == "n2"


def test_a_farmer_model_offer_below_the_floor_is_clamped_to_the_floor():
    market = Market(
        [move("counter", "undercut", price_hour="0.0001", node_ids=["n2"])],
        farmer=Negotiator.LLM,
        floor_cu="0.015",
    )
    market.settle()
    (offer,) = market.of(OfferMade)
    decision = note(offer)
    assert decision.strategy == Negotiator.LLM
    assert [(h.rule, h.outcome) for h in decision.guardrails] == [("floor", "clamped")]
    assert offer.price_hour == floor_price(market.policy, SHAPE)


@pytest.mark.parametrize(
    ("price", "why"),
    [
        (str(ask().amount + Decimal("0.000000001")), "at most 7 decimal places"),
        ("-0.01", "above zero"),
        ("1e30", "below 10^18"),
    ],
)
def test_a_farmer_model_price_no_money_can_be_is_a_fallback_and_the_farmer_goes_on(
    price: str, why: str
) -> None:
    """A price of 9 places inside the limits raised a ValidationError in the farmer's brain
    (made Money), which stopped its decisions; a negative one was taken as a clamped move."""
    market = Market([move("counter", "odd", price_hour=price)], farmer=Negotiator.LLM)
    market.settle()
    (offer,) = market.of(OfferMade)
    decision = note(offer)
    assert decision.strategy == Negotiator.RULE
    assert decision.fallback is not None
    assert decision.fallback.startswith("invalid answer: price_hour")
    assert why in decision.fallback
    assert offer.price_hour == ask()  # the rules' ask
    assert market.of(ContractCreated), "the farmer stopped deciding"


def test_an_offtaker_model_counter_of_9_places_is_a_fallback_with_the_reason():
    nine = str(ask().amount * Decimal("0.9") + Decimal("0.000000001"))
    market = Market([move("counter", "odd", price_hour=nine)], offtaker=Negotiator.LLM)
    market.settle()
    (accepted,) = market.of(OfferAccepted)
    decision = note(accepted)
    assert decision.strategy == Negotiator.RULE
    assert "at most 7 decimal places" in (decision.fallback or "")
    assert market.of(CounterOffered) == []


def test_a_move_the_guardrails_cannot_weigh_is_refused_not_raised():
    """Defence in depth: a move that skipped validation (built elsewhere) with a price no
    Money can hold is refused with the reason, never an exception out of the brain."""
    bad = Move.model_construct(
        action="counter", price_hour=Decimal("0.0200000001"), node_ids=["n2"], reason="",
        rationale="odd",
    )  # fmt: skip
    room = NodeRoom("n2", ask=ask(), floor=usd("0.01"))
    limits = FarmerLimits(ceiling=usd("1"), replicas=1, nodes={"n2": room})
    guarded = apply_guardrails(
        Advice(question_id="q", move=bad), lambda m: guard_farmer_offer(m, limits)
    )
    assert guarded is not None
    assert guarded.move is None
    ((hit),) = guarded.hits
    assert (hit.rule, hit.outcome) == ("protocol", "refused")
    assert "cannot be weighed" in hit.detail


def test_a_farmer_model_cannot_offer_to_a_denied_offtaker():
    market = Market([move("accept", "they pay well")], farmer=Negotiator.LLM, deny=True)
    market.settle()
    assert market.of(OfferMade) == []
    (declined,) = market.of(OfferDeclined)
    decision = note(declined)
    assert decision.strategy == Negotiator.RULE
    assert decision.fallback == REFUSED
    assert [(h.rule, h.outcome) for h in decision.guardrails] == [("policy", "refused")]
    assert [r.value for r in declined.reasons] == ["offtaker_denied"]


def test_without_a_model_an_llm_mandate_is_served_by_the_rules():
    market = Market([move("decline")], offtaker=Negotiator.LLM)
    market.local.advisor = NoAdvisor()
    market.settle()
    (accepted,) = market.of(OfferAccepted)
    decision = note(accepted)
    assert decision.strategy == Negotiator.RULE
    assert decision.fallback == "no model configured (HERO_LLM is unset)"
    assert market.model.calls == 0


# -- metrics ------------------------------------------------------------------------------------


def test_the_gateway_metrics_count_moves_fallbacks_guardrails_and_model_usage():
    tally = StrategyTally()  # what the gateway's LogTally folds from the log's move events
    for steps, budget in (
        ([move("accept", "ok")], "1000"),
        ([move("accept", "take it")], "1"),
        ([{"content": "hmm"}], "1000"),
    ):
        market = Market(steps, offtaker=Negotiator.LLM, budget=budget)
        market.settle()
        for row in market.store.read_all(1, market.store.current_position() + 1):
            if row.type in DECISION_EVENTS:
                tally.apply(row.envelope_json)
    text = "\n".join(metric.render() for metric in strategy_metrics(tally.snapshot()))
    assert 'hero_strategy_moves_total{strategy="llm",outcome="as_proposed"} 1' in text
    assert 'hero_strategy_moves_total{strategy="rule",outcome="fallback"} 2' in text
    assert 'hero_strategy_fallbacks_total{reason="guardrails"} 1' in text
    assert 'hero_strategy_fallbacks_total{reason="invalid_answer"} 1' in text
    assert 'hero_strategy_guardrails_total{rule="budget",outcome="refused"} 1' in text
    assert 'hero_llm_tokens_total{direction="in"} 600' in text  # two scripted tool answers
    assert "hero_llm_calls_recorded_total 3" in text


# -- the CLI ------------------------------------------------------------------------------------


def test_hero_negotiations_show_gives_each_move_with_who_decided_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common.console, "_width", 250)
    store = open_store(HeroSettings(data_dir=tmp_path).effective_store_url)
    counter = Money.rounded(ask().amount * Decimal("0.9"), "USD")
    steps = [
        move("counter", "ten percent lower is fair", price_hour=str(counter.amount)),
        move("accept", "they took our counter"),
    ]
    market = Market(steps, offtaker=Negotiator.LLM, floor_cu="0.015", store=store)
    market.settle()
    store.close()
    (award,) = market.of(NegotiationAwarded)
    args = ["negotiations", "show", award.negotiation_id, "--data-dir", str(tmp_path)]
    shown = CliRunner().invoke(hero_app, args)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    (countered,) = [line for line in lines if "CounterOffered" in line]
    assert "llm: ten percent lower is fair" in countered
    assert f"{counter.amount} USD/h" in countered
    (accepted,) = [line for line in lines if "OfferAccepted" in line]
    assert "llm: they took our counter" in accepted
    (offered,) = [line for line in lines if "OfferMade" in line]
    assert "llm" not in offered  # the farmer's rules decided: no decision recorded
    as_json = CliRunner().invoke(hero_app, [*args, "--json"])
    moves = {e["type"]: e["payload"].get("decision") for e in json.loads(as_json.output)}
    assert moves["OfferAccepted"]["rationale"] == "they took our counter"
    missing = CliRunner().invoke(
        hero_app, ["negotiations", "show", "nope", "--data-dir", str(tmp_path)]
    )
    assert missing.exit_code != 0
    assert "no negotiation 'nope'" in missing.output


def test_a_counter_the_farmer_took_is_what_the_budget_is_checked_against():
    # The budget covers a month at the counter price, not at the ask.
    counter = Money.rounded(ask().amount * Decimal("0.9"), "USD")
    budget = (counter.amount * 720 + ask().amount * 720) / 2
    market = Market(
        [move("counter", "10% lower", price_hour=str(counter.amount)), move("accept", "taken")],
        offtaker=Negotiator.LLM,
        floor_cu="0.015",
        budget=str(budget),
    )
    market.settle()
    assert market.of(CounterAccepted)
    (accepted,) = market.of(OfferAccepted)
    assert note(accepted).strategy == Negotiator.LLM
    assert note(accepted).guardrails == []
    assert accepted.price_hour == counter
