"""A negotiation on the real stack with one model-driven offtaker and rule-driven farmers.

The market is the test's own (``_isolated``: its broker, store and relay) so the session's
agent hosts, which have no model, do not answer for this offtaker; its two agent hosts run on
the stack's Ray with ``HERO_LLM=scripted:<file>``: LangChain's fake chat model, scripted to
counter 10% below the ask, then accept. The farmers take the counter (it is above their floor)
and the contract is made at the counter price; the decision events carry the model's
rationale, its usage, and the hosts' stats count the calls.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agents.runtime.cluster import AgentCluster
from hero.domain.pricing import ask_price, floor_price
from hero.market.service import MarketService
from schemas import (
    ContractCreated,
    CounterAccepted,
    CounterOffered,
    FarmerPolicy,
    Grid,
    Mandate,
    Money,
    NegotiationAwarded,
    Negotiator,
    OfferAccepted,
    OfferMade,
    RegisterFarm,
    RegisterNode,
    Resources,
    SetFarmerPolicy,
    SetOfftakerMandate,
    WorkloadSpec,
    new_id,
)
from tests.integration._isolated import Journal, isolated_market, until

pytestmark = pytest.mark.integration

REPLICA = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)
POLICY = FarmerPolicy(
    price_cu_hour=Money.of("0.02", "USD"),
    floor_cu_hour=Money.of("0.015", "USD"),
)
COUNTER_WHY = "two farms bid; a 10% counter stays above their likely floor"
ACCEPT_WHY = "the farmer took our counter: within budget and the price limit"
BUDGET_S = 60.0


def _script(path: Path, counter: Money) -> Path:
    usage = {"input_tokens": 850, "output_tokens": 60}
    steps = [
        {
            "tool_calls": [
                {
                    "name": "Move",
                    "args": {
                        "action": "counter",
                        "price_hour": str(counter.amount),
                        "rationale": COUNTER_WHY,
                    },
                }
            ],
            "usage": usage,
        },
        {
            "tool_calls": [{"name": "Move", "args": {"action": "accept", "rationale": ACCEPT_WHY}}],
            "usage": usage,
        },
    ]
    path.write_text(json.dumps(steps))
    return path


def _farms(service: MarketService, tag: str) -> None:
    for i in (1, 2):
        farm, node = f"{tag}-farm-{i}", f"{tag}-node-{i}"
        place = {"grid": Grid.GRID4, "country": "BE", "region": f"{tag}-eu"}
        service.handle(RegisterFarm(command_id=f"{farm}.r", farm_id=farm, name=farm, **place))
        service.handle(
            RegisterNode(
                command_id=f"{node}.r",
                node_id=node,
                farm_id=farm,
                total=REPLICA.times(4),
                **place,
            )
        )
        service.handle(SetFarmerPolicy(command_id=f"{farm}.p", farm_id=farm, policy=POLICY))


async def test_a_model_driven_offtaker_negotiates_a_contract_with_rule_driven_farmers(
    stack: Any, broker_factory: Any, store_factory: Any, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BUDGET_S
    tag = new_id("t")[-10:]
    ask = ask_price(POLICY, REPLICA)
    counter = Money.rounded(ask.amount * Decimal("0.9"), "USD")
    assert floor_price(POLICY, REPLICA) <= counter < ask  # the farmers' rules take it
    script = _script(tmp_path / "model.json", counter)

    async with isolated_market(stack, broker_factory, store_factory) as market:
        service = MarketService(market.store)
        _farms(service, tag)
        journal = Journal(market.store)
        cluster = AgentCluster(
            market.settings(llm=f"scripted:{script}", llm_timeout_s=10.0),
            market.endpoints(),
            shards=2,
            name_prefix=f"test-llm-{tag}",
        )
        try:
            cluster.start()

            async def caught_up() -> bool:
                return (await cluster.stats_async()).caught_up

            await until(caught_up, "the hosts to catch up", deadline)
            mandate = Mandate(
                workloads=[
                    WorkloadSpec(
                        workload_id="web",
                        resources=REPLICA,
                        replicas=1,
                        regions=[f"{tag}-eu"],
                        grids=[Grid.GRID4],
                    )
                ],
                budget_month=Money.of("1000", "USD"),
                max_price_cu_hour=Money.of("0.05", "USD"),
                offer_window_s=Decimal(1),
                negotiator=Negotiator.LLM,
            )
            service.handle(
                SetOfftakerMandate(
                    command_id=f"{tag}.mandate", offtaker_id=f"{tag}-acme", mandate=mandate
                )
            )
            await until(
                lambda: journal.refresh() and journal.of(NegotiationAwarded), "an award", deadline
            )
            stats = await cluster.stats_async()
        finally:
            cluster.stop()

    # Rule-driven farmers: offers without a decision; their rules took the counter.
    offers = journal.of(OfferMade)
    assert len(offers) == 2
    assert all(o.decision is None and o.price_hour == ask for o in offers)
    (countered,) = journal.of(CounterOffered)
    (taken,) = journal.of(CounterAccepted)
    assert countered.price_hour == counter
    assert taken.offer_id == countered.offer_id
    assert taken.decision is None
    # The model-driven offtaker: both moves carry the model's rationale and usage.
    assert countered.decision is not None
    assert countered.decision.strategy == Negotiator.LLM
    assert countered.decision.rationale == COUNTER_WHY
    assert countered.decision.model == f"scripted:{script}"
    assert (countered.decision.tokens_in, countered.decision.tokens_out) == (850, 60)
    (accepted,) = journal.of(OfferAccepted)
    assert accepted.decision is not None
    assert accepted.decision.strategy == Negotiator.LLM
    assert accepted.decision.rationale == ACCEPT_WHY
    assert accepted.decision.fallback is None
    (contract,) = journal.of(ContractCreated)
    assert contract.price_hour == counter
    assert contract.offer_id == countered.offer_id
    assert stats.total("llm_calls") == 2
    assert stats.total("llm_answers") == 2
    assert stats.total("llm_tokens_in") == 1700
    print(
        f"LLM negotiation: ask {ask.amount}, counter {counter.amount} accepted, contract "
        f"{contract.contract_id}; model calls {stats.total('llm_calls')}, latency "
        f"{stats.total('llm_latency_ms_total')} ms in all"
    )
