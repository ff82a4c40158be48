"""The agents' MarketView folds events from Kafka, where a farm's stream and its nodes' streams
are ordered independently: a policy or a node may arrive before the farm it belongs to."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest

from agents.market import MarketView
from agents.offtaker import OfftakerBrain
from agents.policy import OfferPlan, ask_price, evaluate
from agents.roster import market_roster
from schemas import (
    Event,
    FarmerPolicy,
    FarmerPolicySet,
    FarmRegistered,
    Grid,
    IssueRfq,
    Mandate,
    NodeRegistered,
    OfftakerMandateSet,
    PolicyMode,
    RfqIssued,
    WorkloadSpec,
)
from tests.unit._feed import Feed
from tests.unit._gwt import SHAPE, T0, usd

NODE_TOTAL = SHAPE.times(4)
CHEAP = FarmerPolicy(price_cu_hour=usd("0.01"))
DEAR = FarmerPolicy(price_cu_hour=usd("0.03"))
APPROVE = FarmerPolicy(mode=PolicyMode.APPROVE, price_cu_hour=usd("0.02"))


def farm(farm_id: str = "f1") -> FarmRegistered:
    return FarmRegistered(
        farm_id=farm_id, name=farm_id, grid=Grid.GRID3, country="BE", region="europe"
    )


def node(node_id: str, farm_id: str = "f1") -> NodeRegistered:
    return NodeRegistered(
        node_id=node_id,
        farm_id=farm_id,
        grid=Grid.GRID3,
        country="BE",
        region="europe",
        total=NODE_TOTAL,
        uptime_pct=Decimal("99.5"),
    )


def policy(p: FarmerPolicy, farm_id: str = "f1", node_id: str | None = None) -> FarmerPolicySet:
    return FarmerPolicySet(farm_id=farm_id, node_id=node_id, policy=p)


def stream_of(event: Event) -> str:
    if isinstance(event, NodeRegistered):
        return f"node-{event.node_id}"
    return f"farm-{event.farm_id}"  # type: ignore[attr-defined]


def view_of(*events: Event) -> MarketView:
    view, feed = MarketView(), Feed()
    for event in events:
        view.apply(feed.wrap(event, stream_of(event)), event)
    return view


def test_in_order_a_farm_has_its_nodes_and_policy():
    view = view_of(farm(), node("n1"), node("n2"), policy(CHEAP))
    f1 = view.farms["f1"]
    assert (f1.policy, f1.node_ids) == (CHEAP, ["n1", "n2"])
    assert [n.node_id for n in view.farm_nodes("f1")] == ["n1", "n2"]


def test_a_policy_seen_before_its_farm_is_kept_and_attached_when_the_farm_arrives():
    view = view_of(policy(CHEAP))
    assert "f1" not in view.farms  # no farm to show yet

    view = view_of(policy(CHEAP), farm())

    assert view.farms["f1"].policy == CHEAP


def test_a_node_seen_before_its_farm_is_attached_when_the_farm_arrives():
    view = view_of(node("n2"), node("n1"), farm(), node("n3"))
    assert view.farms["f1"].node_ids == ["n1", "n2", "n3"]
    assert [n.node_id for n in view.farm_nodes("f1")] == ["n1", "n2", "n3"]


def test_policies_and_nodes_before_the_farm_in_any_order():
    view = view_of(
        node("n1"),
        policy(CHEAP),
        policy(APPROVE, node_id="n2"),
        node("n2"),
        node("n9", farm_id="f9"),  # another farm's node stays out of f1
        farm(),
    )
    f1 = view.farms["f1"]
    assert f1.node_ids == ["n1", "n2"]
    assert (f1.policy_for("n1"), f1.policy_for("n2")) == (CHEAP, APPROVE)
    assert "f9" not in view.farms


def test_early_policies_apply_in_the_order_they_were_set():
    view = view_of(policy(DEAR), policy(CHEAP), farm())
    assert view.farms["f1"].policy == CHEAP


def test_a_policy_after_the_farm_replaces_an_early_one():
    view = view_of(policy(CHEAP), farm(), policy(DEAR))
    assert view.farms["f1"].policy == DEAR


def test_an_early_policy_waits_for_its_own_farm_only():
    view = view_of(policy(CHEAP, farm_id="f2"), farm("f1"))
    assert view.farms["f1"].policy is None
    view.apply(Feed().wrap(farm("f2"), "farm-f2"), farm("f2"))
    assert view.farms["f2"].policy == CHEAP


def test_the_farm_delivered_again_keeps_what_it_has():
    view = view_of(node("n1"), policy(CHEAP), farm())
    view.apply(Feed().wrap(farm(), "farm-f1"), farm())
    assert (view.farms["f1"].policy, view.farms["f1"].node_ids) == (CHEAP, ["n1"])


@pytest.mark.parametrize(
    "order",
    [
        ("farm", "node", "policy"),
        ("policy", "node", "farm"),
        ("node", "policy", "farm"),
        ("policy", "farm", "node"),
    ],
)
def test_agents_see_the_same_market_whatever_the_arrival_order(order):
    """The farmer offers and the offtaker invites the farm, however Kafka interleaved it."""
    parts = {"farm": farm(), "node": node("n1"), "policy": policy(CHEAP)}
    view = view_of(*(parts[p] for p in order))

    rfq = RfqIssued(
        negotiation_id="neg_1",
        offtaker_id="acme",
        workload_id="web",
        resources=SHAPE,
        replicas=1,
        grids=[Grid.GRID3],
        min_uptime_pct=Decimal("95"),
        max_price_cu_hour=usd("0.05"),
        term_hours=720,
        deadline=T0 + timedelta(minutes=1),
    )
    plan = evaluate(rfq, view.farms["f1"], view, T0)
    assert plan == [OfferPlan("n1", ask_price(CHEAP, SHAPE), firm=True)]

    offtaker = OfftakerBrain("acme")
    mandate = Mandate(
        workloads=[WorkloadSpec(workload_id="web", resources=SHAPE, replicas=1)],
        budget_month=usd("1000"),
        max_price_cu_hour=usd("0.05"),
    )
    event = OfftakerMandateSet(offtaker_id="acme", mandate=mandate)
    envelope = Feed().wrap(event, "offtaker-acme")
    view.apply(envelope, event)  # as a host does: the view first, then the brain it routes to
    offtaker.observe(envelope, event, view)
    (command,) = offtaker.decide(T0, view)
    assert isinstance(command, IssueRfq)
    assert command.invited_farms == ["f1"]


def test_the_market_view_imports_no_brain_the_roster_makes_them():
    # A fresh interpreter: this test session has imported the brains already.
    code = (
        "import sys, agents.market\n"
        "print(sorted(m for m in sys.modules if m.startswith('agents.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['agents.market']"
    event, feed = farm("f9"), Feed()
    brains = market_roster(feed.wrap(event, "farm-f9"), event)
    assert [b.agent_id for b in brains] == ["farmer:f9"]
