"""The read-model projections, folded in memory from a real market's log and compared with the
pure views that already read the same log (MarketReport, WorkloadsView, the ledger).

:func:`market_log` makes the log: two farms, three nodes, one offtaker whose agents negotiate
two workloads through the market service, then a cancellation, a node going down, an
autoscaler decision (and the negotiation it causes), money moving through the ledger, and the
contract facts billing would record. The integration tests fold the same log into Valkey.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from agents.local import LocalMarket
from hero.domain.clock import ManualClock
from hero.domain.ledger import AccountKind, Transfer, account_id
from hero.market.views import MarketReport, json_ready
from hero.payments.ledger import LedgerService, read_ledger
from hero.readmodels.projections import (
    LAST_TRANSFERS,
    PROJECTIONS,
    Doc,
    Folded,
    UnknownProjection,
    decode_doc,
    encode_doc,
    fold,
    projection,
    selected,
)
from hero.readmodels.workloads import read_workloads
from hero.store import ANY_VERSION, EventStore, MemoryEventStore, NewEvent, recorded_after
from schemas import (
    CancelContract,
    ChangeNodeStatus,
    ContractCancelled,
    ContractCreated,
    ContractResumed,
    ContractSuspended,
    Envelope,
    Event,
    FarmerPolicy,
    Grid,
    Mandate,
    Money,
    NodeStatus,
    OfftakerMandateSet,
    RecordScaleDecision,
    RegisterFarm,
    RegisterNode,
    ReplicaPlaced,
    ScaleDecided,
    ScalingPolicy,
    SetFarmerPolicy,
    SetOfftakerMandate,
    Sla,
    SlaOutcomeRecorded,
    TransferKind,
    WorkloadSpec,
)
from tests.unit._feed import Feed
from tests.unit._gwt import SHAPE, T0, usd

CPU = ScalingPolicy(metric="cpu", target=Decimal("0.5"), min_replicas=1, max_replicas=6)


def _mandate() -> Mandate:
    return Mandate(
        workloads=[
            WorkloadSpec(workload_id="web", resources=SHAPE, replicas=2),
            WorkloadSpec(workload_id="api", resources=SHAPE, replicas=1, autoscale=CPU),
        ],
        budget_month=usd("1000"),
        max_price_cu_hour=usd("0.05"),
        term_hours=720,
        offer_window_s=Decimal(2),
    )


def _run(market: LocalMarket, clock: ManualClock, seconds: float) -> None:
    end = clock.now() + timedelta(seconds=seconds)
    while True:
        market.run_until_quiet()
        if clock.now() >= end:
            return
        clock.advance(timedelta(seconds=0.25))


def _append(store: EventStore, clock: ManualClock, stream: str, event: Event) -> None:
    new = NewEvent.of(event, actor="test", occurred_at=clock.now())
    store.append(stream, ANY_VERSION, [new], f"cmd-{new.id}")


def market_log(store: EventStore, clock: ManualClock) -> None:
    """Fill ``store`` with a market's life (see the module's doc)."""
    market = LocalMarket(store, clock)
    handle = market.service.handle
    for farm, grid, country in (("f1", Grid.GRID3, "BE"), ("f2", Grid.GRID4, "NL")):
        handle(
            RegisterFarm(
                command_id=f"farm-{farm}",
                farm_id=farm,
                name=farm,
                grid=grid,
                country=country,
                region="europe",
            )
        )
    nodes = (("n1", "f1", Grid.GRID3), ("n2", "f1", Grid.GRID3), ("n3", "f2", Grid.GRID4))
    for node, farm, grid in nodes:
        handle(
            RegisterNode(
                command_id=f"node-{node}",
                node_id=node,
                farm_id=farm,
                total=SHAPE.times(4),
                grid=grid,
                country="BE",
                region="europe",
            )
        )
    policies = (
        ("f1", None, FarmerPolicy(price_cu_hour=usd("0.01"))),
        ("f1", "n2", FarmerPolicy(price_cu_hour=usd("0.02"))),
        ("f2", None, FarmerPolicy(price_cu_hour=usd("0.01"), max_term_hours=24)),  # declines
    )
    for farm, node, policy in policies:
        handle(
            SetFarmerPolicy(
                command_id=f"policy-{farm}-{node}", farm_id=farm, node_id=node, policy=policy
            )
        )
    handle(SetOfftakerMandate(command_id="mandate", offtaker_id="acme", mandate=_mandate()))
    _run(market, clock, 6)

    contracts = [
        e for e in _events(store) if isinstance(e, ContractCreated) and e.workload_id == "web"
    ]
    first = contracts[0]
    handle(
        CancelContract(
            command_id="cancel-1",
            contract_id=first.contract_id,
            node_id=first.node_id,
            reason="offtaker_request",
        )
    )
    handle(ChangeNodeStatus(command_id="n3-down", node_id="n3", status=NodeStatus.DOWN))
    decision = ScaleDecided(
        offtaker_id="acme",
        workload_id="api",
        current_replicas=1,
        desired_replicas=2,
        metric="cpu",
        value=Decimal("0.9"),
        target=Decimal("0.5"),
        reason="cpu above target",
        ratio=Decimal("1.8"),
        recommended_replicas=2,
        decided_at=clock.now(),
        reporting=1,
    )
    handle(RecordScaleDecision(command_id="scale-1", decision=decision))
    _run(market, clock, 6)

    ledger = LedgerService(store, clock)
    world = account_id(AccountKind.WORLD, "outside", "TFT")
    offtaker = account_id(AccountKind.OFFTAKER, "acme", "TFT")
    farmer = account_id(AccountKind.FARMER, "f1", "TFT")
    ledger.post([_transfer("pay-1", world, offtaker, "1000.5", TransferKind.PAYMENT)], "pay-1")
    for i in range(LAST_TRANSFERS + 3):  # more than an account document lists
        ledger.post([_transfer(f"bill-{i}", offtaker, farmer, "1.25", TransferKind.BILL)], f"b{i}")

    kept = contracts[1]
    _append(store, clock, f"node-{kept.node_id}", _suspended(kept, clock))
    _append(store, clock, f"node-{kept.node_id}", ContractResumed(**_ids(kept)))
    _append(store, clock, f"node-{first.node_id}", _outcome(first, clock))
    _append(store, clock, f"node-{first.node_id}", ContractSuspended(**_ids(first), **_hour(clock)))


def _transfer(tid: str, debit: str, credit: str, amount: str, kind: TransferKind) -> Transfer:
    return Transfer(tid, debit, credit, Money.of(amount, "TFT"), kind, tid)


def _ids(contract: ContractCreated) -> dict[str, str]:
    return {
        "contract_id": contract.contract_id,
        "offtaker_id": contract.offtaker_id,
        "node_id": contract.node_id,
    }


def _hour(clock: ManualClock) -> dict[str, object]:
    return {"unpaid_hour": clock.now(), "grace_ends_at": clock.now() + timedelta(hours=1)}


def _suspended(contract: ContractCreated, clock: ManualClock) -> ContractSuspended:
    return ContractSuspended(**_ids(contract), **_hour(clock))  # type: ignore[arg-type]


def _outcome(contract: ContractCreated, clock: ManualClock) -> SlaOutcomeRecorded:
    return SlaOutcomeRecorded(
        **_ids(contract),
        farm_id=contract.farm_id,
        sla=contract.sla,
        started_at=contract.starts_at,
        ended_at=clock.now(),
        period_hours=Decimal("0.5"),
        hours_down=Decimal(0),
        uptime_pct=Decimal(100),
        met=True,
        penalty=Money.zero("TFT"),
    )


def _events(store: EventStore) -> list[Event]:
    return [e for _, e in _items(store)]


def _items(store: EventStore) -> list[tuple[Envelope, Event]]:
    items = []
    for row in recorded_after(store):
        envelope = row.envelope()
        event = envelope.decode()
        assert isinstance(event, Event)
        items.append((envelope, event))
    return items


@pytest.fixture(scope="module")
def log() -> tuple[MemoryEventStore, list[tuple[Envelope, Event]]]:
    clock = ManualClock(T0)
    store = MemoryEventStore(clock)
    market_log(store, clock)
    return store, _items(store)


@pytest.fixture(scope="module")
def report(log: tuple[MemoryEventStore, list[tuple[Envelope, Event]]]) -> MarketReport:
    return MarketReport().apply_all(log[1])


def _docs(log: tuple[MemoryEventStore, list[tuple[Envelope, Event]]], name: str) -> dict[str, Doc]:
    return fold(name, log[1]).docs


# -- the log is what the scenario says ------------------------------------------------------------


def test_the_log_holds_a_whole_market(log: tuple[MemoryEventStore, list[tuple[Envelope, Event]]]):
    types = {envelope.type for envelope, _ in log[1]}
    assert {
        "OfferDeclined",
        "OfferAccepted",
        "NegotiationAwarded",
        "ContractCancelled",
        "ReplicaPlaced",
        "ScaleDecided",
        "TransferPosted",
        "SlaOutcomeRecorded",
        "ContractResumed",
    } <= types
    # web: 2, one cancelled and replaced by the offtaker; api: 1, then 1 more when scaled up
    assert sum(isinstance(e, ContractCreated) for _, e in log[1]) == 5


# -- compared with the pure views -----------------------------------------------------------------


def test_nodes_equal_the_market_reports(log, report: MarketReport):
    docs = _docs(log, "nodes")
    assert sorted(docs) == [row.node_id for row in report.nodes]
    for row in report.nodes:
        doc, expected = docs[row.node_id], json_ready(row)
        for name in ("farm_id", "grid", "region", "status", "total", "held", "committed", "free"):
            assert doc[name] == expected[name], (row.node_id, name)
        assert (doc["hold_count"], len(doc["contract_ids"])) == (row.holds, row.contracts)
    assert docs["n3"]["status"] == "down"
    assert docs["n1"]["id"] == "n1"


def test_live_contracts_equal_the_market_reports_and_ended_ones_say_why(log, report):
    docs = _docs(log, "contracts")
    live = {c: d for c, d in docs.items() if d["status"] != "cancelled"}
    assert sorted(live) == sorted(row.contract_id for row in report.contracts)
    for row in report.contracts:
        expected, doc = json_ready(row), live[row.contract_id]
        starts_at = expected.pop("starts_at")
        assert {k: doc[k] for k in expected} == expected
        assert datetime.fromisoformat(doc["starts_at"]) == datetime.fromisoformat(starts_at)
        assert doc["status"] == "live"
        assert doc["placement"]["replica_id"]
        assert doc["placement"]["scores"]
    (ended,) = [d for d in docs.values() if d["status"] == "cancelled"]
    assert ended["reason"] == "offtaker_request"
    assert ended["sla_outcome"]["met"] is True
    assert ended["sla_outcome"]["promised_pct"] == "99"
    assert ended["suspension"] is not None  # a suspension after the end does not revive it
    assert ended["offtaker_id"] == "acme"
    assert ended["farm_id"] == "f1"
    resumed = [d for d in live.values() if d["suspension"] is None]
    assert len(resumed) == len(live)


def test_negotiations_equal_the_market_reports(log, report):
    docs = _docs(log, "negotiations")
    assert sorted(docs) == sorted(row.negotiation_id for row in report.negotiations)
    for row in report.negotiations:
        doc = docs[row.negotiation_id]
        assert (doc["status"], doc["reason"], doc["offtaker_id"]) == (
            row.status,
            row.reason,
            row.offtaker_id,
        )
        assert (len(doc["offers"]), len(doc["declines"])) == (row.offers, row.declines)
        assert doc["contract_ids"] == list(row.contracts)
        for offer in doc["offers"]:
            expected = report.offer(offer["offer_id"])
            assert expected is not None
            assert (offer["status"], offer["firm"], offer["farm_id"]) == (
                expected.status,
                expected.firm,
                expected.farm_id,
            )
    declined = [d for doc in docs.values() for d in doc["declines"]]
    assert declined
    assert all(d["farm_id"] == "f2" and d["reasons"] for d in declined)
    for doc in docs.values():  # every farm that offered or declined may see it
        farms = {o["farm_id"] for o in doc["offers"]} | {d["farm_id"] for d in doc["declines"]}
        assert farms <= set(doc["farm_ids"])


def test_farms_equal_the_market_reports_with_their_policies(log, report):
    docs = _docs(log, "farms")
    for row in report.farms:
        doc = docs[row.farm_id]
        assert (doc["name"], doc["grid"], doc["mode"]) == (row.name, row.grid.value, row.mode)
    assert docs["f1"]["policy"]["price_cu_hour"] == {"amount": "0.01", "currency": "USD"}
    assert list(docs["f1"]["node_policies"]) == ["n2"]
    assert docs["f2"]["policy"]["max_term_hours"] == 24


def test_account_balances_equal_the_ledgers_exactly(log):
    ledger = read_ledger(log[0])
    docs = _docs(log, "accounts")
    assert sorted(docs) == sorted(ledger.accounts)
    for account, state in ledger.accounts.items():
        assert docs[account]["balance"] == str(state.balance.amount)
        assert docs[account]["transfers"] == state.transfers
    acme = docs["offtaker.acme.TFT"]
    assert acme["balance"] == "971.75"
    assert (acme["kind"], acme["owner"], acme["currency"]) == ("offtaker", "acme", "TFT")
    assert acme["offtaker_id"] == "acme"
    assert acme["farm_id"] is None
    assert len(acme["last_transfers"]) == LAST_TRANSFERS
    newest = acme["last_transfers"][0]
    assert newest["transfer_id"] == f"bill-{LAST_TRANSFERS + 2}"
    assert (newest["direction"], newest["counterparty"]) == ("debit", "farmer.f1.TFT")
    assert docs["farmer.f1.TFT"]["farm_id"] == "f1"


def test_workloads_equal_the_workloads_view(log):
    store, _ = log
    view = read_workloads(store)
    docs = _docs(log, "workloads")
    assert sorted(docs) == sorted(row.ref for row in view.workloads)
    for row in view.workloads:
        doc = docs[row.ref]
        assert doc["target"] == row.target
        assert doc["grids"] == {grid.value: n for grid, n in row.grids.items()}
        assert doc["live_contract_ids"] == sorted(r.contract_id for r in row.live)
        assert doc["spec"] == json_ready(row.spec)
        assert doc["decisions_total"] == row.decisions_total
    api = docs["acme/api"]
    assert api["autoscale"]["metric"] == "cpu"
    assert (api["target"], api["live_replicas"]) == (2, 2)
    assert api["last_decision"]["reason"] == "cpu above target"
    assert docs["acme/web"]["live_replicas"] == 2  # the cancelled one was replaced


# -- folding rules --------------------------------------------------------------------------------


def test_a_repeated_or_replayed_event_changes_nothing(log):
    for name in PROJECTIONS:
        once = fold(name, log[1])
        twice = fold(name, [*log[1], *log[1]])
        interleaved = fold(name, [item for item in log[1] for _ in range(2)])
        assert encode_doc(once.docs) == encode_doc(twice.docs) == encode_doc(interleaved.docs)
        assert once.position == twice.position == log[1][-1][0].position


def test_a_fold_stopped_part_way_and_resumed_ends_the_same(log):
    middle = log[1][len(log[1]) // 2][0].position
    for name in PROJECTIONS:
        resumed = fold(name, log[1], upto=middle)
        for envelope, event in log[1]:
            resumed.apply(envelope, event)
        assert resumed.docs == fold(name, log[1]).docs


def test_documents_are_json_ready_and_name_their_owners(log):
    owners = {
        "farms": {"farm_id"},
        "nodes": {"farm_id"},
        "contracts": {"farm_id", "offtaker_id"},
        "negotiations": {"offtaker_id", "farm_ids"},
        "accounts": {"farm_id", "offtaker_id"},
        "workloads": {"offtaker_id"},
    }
    for name in PROJECTIONS:
        for key, doc in _docs(log, name).items():
            assert decode_doc(encode_doc(doc)) == doc
            assert doc["id"] == key
            assert doc["last_position"] >= 1
            assert owners[name] <= set(doc)


# -- by hand: orders the market does not produce --------------------------------------------------

F = Feed()


def _contract(cid: str = "c1", grid: Grid = Grid.GRID3) -> ContractCreated:
    return ContractCreated(
        contract_id=cid,
        negotiation_id="ng",
        offer_id=f"o-{cid}",
        hold_id=f"h-{cid}",
        offtaker_id="acme",
        workload_id="web",
        farm_id="f1",
        node_id="n1",
        grid=grid,
        resources=SHAPE,
        price_hour=usd("0.10"),
        term_hours=720,
        sla=Sla(uptime_pct=Decimal(99)),
        starts_at=T0,
    )


def _fed(*events: tuple[Event, str]) -> list[tuple[Envelope, Event]]:
    feed = Feed()
    return [(feed.wrap(event, stream, T0), event) for event, stream in events]


def test_a_placement_folded_before_its_contract_is_kept():
    placed = ReplicaPlaced(
        offtaker_id="acme",
        workload_id="web",
        replica_id="r1",
        contract_id="c1",
        farm_id="f1",
        node_id="n1",
        grid=Grid.GRID3,
        scores={"price": Decimal("0.4")},
        total=Decimal("0.4"),
    )
    early = fold("contracts", _fed((placed, "x-1"))).docs["c1"]
    assert (early["status"], early["offtaker_id"], early["price_hour"]) == (None, "acme", None)
    doc = fold("contracts", _fed((placed, "x-1"), (_contract(), "node-n1"))).docs["c1"]
    assert doc["status"] == "live"
    assert doc["placement"] == {
        "replica_id": "r1",
        "scores": {"price": "0.4"},
        "total": "0.4",
        "price_cu_hour": None,
    }
    assert doc["price_hour"] == {"amount": "0.10", "currency": "USD"}


def test_a_cancellation_names_no_workload_but_reaches_it_through_its_contract():
    cancelled = ContractCancelled(contract_id="c1", node_id="n1", reason="down")
    items = _fed(
        (_contract("c1"), "node-n1"), (_contract("c2", Grid.GRID4), "node-n1"), (cancelled, "n")
    )
    folded = fold("workloads", items)
    doc = folded.docs["acme/web"]
    assert (doc["grids"], doc["live_contract_ids"], doc["spec"]) == ({"grid4": 1}, ["c2"], None)
    assert doc["target"] is None
    assert "contract:c1" not in folded.links
    assert folded.links["contract:c2"] == ("acme/web",)


def test_a_contract_cancelled_before_its_creation_shows_the_first_cancellation_and_is_not_live():
    first = ContractCancelled(contract_id="c1", node_id="n1", reason="down")
    again = ContractCancelled(contract_id="c1", node_id="n1", reason="again")
    items = _fed((first, "node-n1"), (again, "node-n1"), (_contract("c1"), "contract-c1"))
    contract = fold("contracts", items).docs["c1"]
    assert (contract["status"], contract["reason"], contract["offtaker_id"]) == (
        "cancelled", "down", "acme")  # fmt: skip
    workload = fold("workloads", items).docs["acme/web"]
    assert (workload["live_replicas"], workload["live_contract_ids"]) == (0, [])


def test_a_new_mandate_drops_the_spec_of_a_workload_it_no_longer_lists():
    first = OfftakerMandateSet(offtaker_id="acme", mandate=_mandate())
    only_web = _mandate().model_copy(update={"workloads": _mandate().workloads[:1]})
    second = OfftakerMandateSet(offtaker_id="acme", mandate=only_web)
    docs = fold("workloads", _fed((first, "offtaker-acme"), (second, "offtaker-acme"))).docs
    assert docs["acme/api"]["spec"] is None
    assert docs["acme/api"]["autoscale"] is None
    assert docs["acme/web"]["target"] == 2


def test_a_node_never_registered_gets_no_document():
    assert fold("nodes", _fed((_contract(), "node-n1"))).docs == {}


def test_unknown_projections_name_the_known_ones():
    with pytest.raises(UnknownProjection, match="known: accounts, contracts, farms"):
        projection("nope")
    assert [p.name for p in selected(None)] == list(PROJECTIONS)
    assert selected("nodes") == [PROJECTIONS["nodes"]]
    assert isinstance(Folded(PROJECTIONS["farms"]).docs, dict)
