"""The golden history: a recorded log of full demo runs (tests/golden, regenerate with
``.venv/bin/python -m tests.golden.record``) replayed through the market model and through
every view of the market; each view's answers must agree with the model's.

A change to an event's meaning made in one place fails here until every view follows. The
views: the CLI's listings (MarketReport), the agents' view with their roster (AgentSet), the
read-model projections folded in memory (their pure part), the workloads view, and the
gateway's log tally (its metrics). The dashboard folds nothing (it is a page reading the
gateway's streams), so it has no answers of its own to compare.
"""

from __future__ import annotations

import gzip
from collections import Counter
from decimal import Decimal
from functools import cache
from pathlib import Path

import pytest

from agents.agentset import AgentSet
from agents.market import autoscaler_id, farmer_id, offtaker_id
from agents.roster import market_roster
from hero.domain.billing import bill_hour, bill_usd, hourly_usd, metered_usd
from hero.domain.ledger import RevenueSplit
from hero.gateway.metrics import LogTally
from hero.market.views import MarketReport
from hero.model import MarketState, apply_all
from hero.readmodels.projections import fold
from hero.readmodels.workloads import WorkloadsView
from hero.store import RecordedEvent
from schemas import REGISTRY, Envelope, Event, Money, Resources, UsageBilled

GOLDEN = Path(__file__).parents[1] / "golden" / "demo-history.jsonl.gz"

History = list[tuple[Envelope, Event]]


@cache
def _lines() -> tuple[str, ...]:
    with gzip.open(GOLDEN, "rt", encoding="utf-8") as source:
        return tuple(line for line in source.read().splitlines() if line)


@cache
def _history() -> tuple[tuple[Envelope, Event], ...]:
    items = []
    for line in _lines():
        envelope = Envelope.model_validate_json(line)
        event = envelope.decode()
        assert isinstance(event, Event), envelope.type
        items.append((envelope, event))
    return tuple(items)


@pytest.fixture(scope="module")
def history() -> History:
    return list(_history())


@pytest.fixture(scope="module")
def model(history: History) -> MarketState:
    return apply_all(history)


def test_the_golden_history_is_a_whole_market_of_a_few_thousand_events(history, model):
    types = Counter(type(event).__name__ for _, event in history)
    assert len(history) >= 2000
    assert [e.position for e, _ in history] == list(range(1, len(history) + 1))
    for needed in ("ContractCreated", "ContractCancelled", "NodeStatusChanged", "ScaleDecided",
                   "ReplicaMigrated", "SlaOutcomeRecorded", "UsageBilled", "TransferPosted",
                   "OfferApproved", "OfferDeclined", "HoldReleased"):  # fmt: skip
        assert types[needed] > 0, needed
    assert model.position == len(history)
    assert model.waiting_legs == {}
    assert model.unsound_transfers == {}


def _free(total: Resources, held: Resources, committed: Resources) -> Resources:
    return total.minus_floored(held + committed)


def test_the_clis_listings_agree_with_the_model(history, model):
    report = MarketReport().apply_all(history)
    assert {f.farm_id: (f.mode, f.nodes) for f in report.farms} == {
        f.farm_id: (f.policy.mode if f.policy else None, len(f.node_ids))
        for f in model.farms.values()
    }
    listed = {n.node_id: (n.status, n.held, n.committed, n.free, n.contracts) for n in report.nodes}
    assert listed == {
        n.node_id: (n.status, n.held, n.committed, _free(n.total, n.held, n.committed),
                    len(n.contracts))
        for n in model.nodes.values()
    }  # fmt: skip
    assert [c.contract_id for c in report.contracts] == [
        c.contract_id for c in model.contracts.values() if c.status != "cancelled"
    ]
    assert {n.negotiation_id: (n.status, n.offers, n.declines, n.contracts)
            for n in report.negotiations} == {
        n.negotiation_id: (n.status, len(n.offers), n.declines, tuple(n.contracts))
        for n in model.negotiations.values()
    }  # fmt: skip
    assert {o.offer_id: (o.status, o.approved, o.contract_id) for o in report.offers} == {
        o.offer_id: (o.status, o.approved, o.contract_id) for o in model.offers.values()
    }
    assert len(report.declines) == len(model.declines) > 0


def test_the_agents_view_and_roster_agree_with_the_model(history, model):
    agents = AgentSet(roster=market_roster)
    routed: set[str] = set()
    for envelope, event in history:
        agents.apply(envelope, event)
        routed |= agents.market.route(envelope, event)
    state = agents.market.state
    assert {n: (x.holds.keys(), x.contracts.keys(), x.status) for n, x in state.nodes.items()} == {
        n: (x.holds.keys(), x.contracts.keys(), x.status) for n, x in model.nodes.items()
    }
    assert {c: x.status for c, x in state.contracts.items()} == {
        c: x.status for c, x in model.contracts.items()
    }
    assert {n: x.open for n, x in state.negotiations.items()} == {
        n: x.open for n, x in model.negotiations.items()
    }
    scaling = {o for o, m in model.mandates.items() if any(w.autoscale for w in m.workloads)}
    assert set(agents.brains) == (
        {farmer_id(f) for f in model.farms}
        | {offtaker_id(o) for o in model.mandates}
        | {autoscaler_id(o) for o in scaling}
    )
    # An offtaker's events go to its autoscaler too, which the roster makes only for mandates
    # that scale; every other agent an event was routed to was made by the roster.
    assert {a for a in routed if not a.startswith("autoscaler:")} <= set(agents.brains)
    priced = {f.farm_id for f in agents.market.farms_by_price(Resources(cru=1, mru=1))}
    assert priced == {
        f.farm_id for f in model.farms.values() if f.policy and f.policy.mode.value != "off"
    }


def test_the_read_model_projections_agree_with_the_model(history, model):
    farms = fold("farms", history).docs
    assert {k: d["mode"] for k, d in farms.items()} == {
        f.farm_id: f.policy.mode.value if f.policy else None for f in model.farms.values()
    }
    nodes = fold("nodes", history).docs
    assert {k: (d["status"], Resources.model_validate(d["free"]), d["contract_ids"])
            for k, d in nodes.items()} == {
        n.node_id: (n.status.value, _free(n.total, n.held, n.committed), sorted(n.contracts))
        for n in model.nodes.values()
    }  # fmt: skip
    contracts = fold("contracts", history).docs
    statuses = {"live": "active", "suspended": "suspended", "cancelled": "cancelled"}
    assert {k: statuses[d["status"]] for k, d in contracts.items()} == {
        c.contract_id: c.status for c in model.contracts.values()
    }
    negotiations = fold("negotiations", history).docs
    assert {k: (d["status"], d["contract_ids"], len(d["declines"]),
                {o["offer_id"]: (o["status"], Money.model_validate(o["price_hour"]))
                 for o in d["offers"]})
            for k, d in negotiations.items()} == {
        n.negotiation_id: (n.status, n.contracts, n.declines,
                           {o: (model.offers[o].status, model.offers[o].price_hour)
                            for o in n.offers})
        for n in model.negotiations.values()
    }  # fmt: skip
    accounts = fold("accounts", history).docs
    assert {k: Decimal(d["balance"]) for k, d in accounts.items()} == {
        a: model.accounts[a].balance if a in model.accounts else Decimal(0) for a in accounts
    }
    assert set(model.accounts) <= set(accounts)
    workloads = fold("workloads", history).docs
    live: dict[str, list[str]] = {}
    for c in model.live_contracts():
        live.setdefault(f"{c.offtaker_id}/{c.workload_id}", []).append(c.contract_id)
    assert {k: d["live_contract_ids"] for k, d in workloads.items() if d["live"]} == {
        k: sorted(v) for k, v in live.items()
    }
    assert {
        k: d["last_desired"] for k, d in workloads.items() if d["last_desired"] is not None
    } == {f"{o}/{w}": n for (o, w), n in model.scale.items()}


def test_the_workloads_view_agrees_with_the_model(history, model):
    view = WorkloadsView()
    for envelope, event in history:
        view.apply(envelope, event)
    rows = {row.ref: sorted(r.contract_id for r in row.live) for row in view.workloads}
    live: dict[str, list[str]] = {}
    for c in model.live_contracts():
        live.setdefault(f"{c.offtaker_id}/{c.workload_id}", []).append(c.contract_id)
    assert {k: v for k, v in rows.items() if v} == {k: sorted(v) for k, v in live.items()}
    migrated = {(m.from_contract_id, m.to_contract_id) for row in view.workloads
                for m in row.migrations}  # fmt: skip
    assert len(migrated) == sum(1 for _, e in history if type(e).__name__ == "ReplicaMigrated")
    assert {r.replica_id for r in model.replicas.values()} >= {
        r.replica_id for row in view.workloads for r in row.live if r.placement is not None
    }


def test_the_gateways_log_tally_agrees_with_the_model(history, model):
    tally = LogTally()
    tally.apply(
        RecordedEvent(
            position=e.position,
            stream=e.stream,
            version=e.version,
            type=e.type,
            topic=REGISTRY.topic_for(e.type).value,
            envelope_json=e.model_dump_json(),
        )
        for e, _ in history
    )
    snapshot = tally.snapshot()
    statuses = Counter(n.status for n in model.negotiations.values())
    assert snapshot.negotiations == {s: statuses.get(s, 0) for s in snapshot.negotiations}
    assert snapshot.contracts_live == sum(c.status == "active" for c in model.contracts.values())
    assert snapshot.bills == sum(c.billed_hours for c in model.contracts.values()) > 0


def test_every_recorded_bill_is_what_the_models_billing_state_prices(history, model):
    """Billing reads the model (each contract's run, the first usage fact of each hour):
    priced from it, every bill of the recording comes out as it was billed, to the unit.

    A bill is priced for its own active seconds: the demo bills on a clock hours ahead of
    the market's, so a contract may end, on the market's clock, inside an hour billed
    before (and the recording predates counting a second begun as whole, 621d59f).
    """
    split = RevenueSplit()
    bills = [event for _, event in history if isinstance(event, UsageBilled)]
    assert bills
    for bill in bills:
        billed = model.billing[bill.contract_id]
        assert bill.hour in billed.billed or billed.seconds_in(bill.hour) > 0
        usage = model.usage.get(bill.contract_id)
        fact = usage.hours.get(bill.hour) if usage is not None else None
        assert (fact is not None) == (bill.basis == "metered"), bill.bill_id
        if fact is not None and fact.seconds:
            assert bill.seconds == fact.seconds, bill.bill_id
        if fact is None:
            usd_hour = hourly_usd(billed.contract)
            priced = bill_hour(usd_hour, bill.hour, bill.seconds, bill.rate, split)
        else:
            usd = metered_usd(billed.contract, fact)
            priced = bill_usd(usd, bill.hour, bill.seconds, bill.rate, split)
        assert (bill.usd, bill.amount, bill.farmer_share, bill.pool_share) == (
            priced.usd,
            priced.amount,
            priced.farmer_share,
            priced.pool_share,
        ), bill.bill_id
