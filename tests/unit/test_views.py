"""The market report folded from events: nodes, offers, approvals, contracts, declines."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest

from hero.domain.clock import ManualClock
from hero.domain.negotiation import contract_id_for
from hero.market.service import CommandRejected, MarketService
from hero.market.views import MarketReport, json_ready
from hero.store import MemoryEventStore
from schemas import (
    AcceptOffer,
    ApproveOffer,
    CancelContract,
    ChangeNodeStatus,
    CloseNegotiation,
    Command,
    DeclineReason,
    DeclineRfq,
    FarmerPolicy,
    Grid,
    IssueRfq,
    MakeOffer,
    Money,
    NodeStatus,
    PolicyMode,
    RegisterFarm,
    RegisterNode,
    RejectOffer,
    Resources,
    SetFarmerPolicy,
    Sla,
)

NODE = Resources.from_gb(cru=16, mru_gb=64, sru_gb=1000)
REPLICA = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)
SLA = Sla(uptime_pct=Decimal(99))
K1 = contract_id_for("n1", "o1")  # the id the market gives o1's contract


class Market:
    """The market service over a memory store, and the report folded from it."""

    def __init__(self) -> None:
        self.store = MemoryEventStore()
        self.clock = ManualClock()
        self.service = MarketService(self.store, self.clock)
        self.count = 0

    def send(self, command_type: type[Command], **fields: object) -> None:
        self.count += 1
        self.service.handle(command_type(command_id=f"c{self.count}", **fields))

    def report(self) -> MarketReport:
        report = MarketReport()
        for row in self.store.read_all(1, 10_000):
            envelope = row.envelope()
            report.apply(envelope, envelope.decode())
        return report

    def farm(self, farm_id: str, nodes: int = 1, mode: PolicyMode = PolicyMode.AUTO) -> None:
        where = {"grid": Grid.GRID4, "country": "BE", "region": "europe"}
        self.send(RegisterFarm, farm_id=farm_id, name=farm_id, **where)
        for index in range(1, nodes + 1):
            node_id = f"{farm_id}-n{index}"
            self.send(RegisterNode, node_id=node_id, farm_id=farm_id, total=NODE, **where)
        policy = FarmerPolicy(mode=mode, markup=Decimal("1.5"))
        self.send(SetFarmerPolicy, farm_id=farm_id, policy=policy)

    def rfq(self, nego: str, replicas: int = 1) -> None:
        self.send(
            IssueRfq,
            negotiation_id=nego,
            offtaker_id="acme",
            workload_id="web",
            resources=REPLICA,
            replicas=replicas,
            grids=[Grid.GRID4],
            max_price_cu_hour=Money.of("0.05", "USD"),
            term_hours=720,
            deadline=self.clock.now() + timedelta(seconds=30),
        )

    def offer(self, nego: str, offer_id: str, node: str, firm: bool = True) -> None:
        self.send(
            MakeOffer,
            negotiation_id=nego,
            offer_id=offer_id,
            farm_id=node.split("-n")[0],
            node_id=node,
            price_hour=Money.of("0.02", "USD"),
            term_hours=720,
            sla=SLA,
            firm=firm,
            expires_at=self.clock.now() + timedelta(seconds=60),
        )


@pytest.fixture
def market() -> Market:
    return Market()


def test_farms_and_nodes_start_free(market: Market) -> None:
    market.farm("f1", nodes=2, mode=PolicyMode.APPROVE)
    report = market.report()
    (farm,) = report.farms
    assert (farm.farm_id, farm.nodes, farm.mode, farm.region) == ("f1", 2, "approve", "europe")
    assert [n.node_id for n in report.nodes] == ["f1-n1", "f1-n2"]
    node = report.nodes[0]
    assert (node.status, node.free, node.held, node.committed) == (
        "up",
        NODE,
        Resources(),
        Resources(),
    )


def test_an_offer_holds_capacity_and_an_accept_commits_it(market: Market) -> None:
    market.farm("f1")
    market.rfq("n1")
    market.offer("n1", "o1", "f1-n1")
    held = market.report()
    assert held.node("f1-n1").held == REPLICA  # type: ignore[union-attr]
    assert held.node("f1-n1").free == NODE - REPLICA  # type: ignore[union-attr]
    assert held.negotiation("n1").offers == 1  # type: ignore[union-attr]

    market.send(AcceptOffer, negotiation_id="n1", offer_id="o1")
    report = market.report()
    node = report.node("f1-n1")
    assert node is not None
    assert (node.held, node.committed, node.contracts, node.holds) == (Resources(), REPLICA, 1, 0)
    (contract,) = report.contracts
    assert (contract.contract_id, contract.offtaker_id, contract.farm_id, contract.node_id) == (
        K1, "acme", "f1", "f1-n1",
    )  # fmt: skip
    assert (contract.workload_id, contract.price_hour, contract.term_hours) == (
        "web", Money.of("0.02", "USD"), 720,
    )  # fmt: skip
    nego = report.negotiation("n1")
    assert nego is not None
    assert (nego.status, nego.contracts, nego.closed) == ("awarded", (K1,), True)
    assert report.offer("o1").status == "accepted"  # type: ignore[union-attr]


def test_a_cancelled_contract_frees_its_capacity(market: Market) -> None:
    market.farm("f1")
    market.rfq("n1")
    market.offer("n1", "o1", "f1-n1")
    market.send(AcceptOffer, negotiation_id="n1", offer_id="o1")
    market.send(CancelContract, contract_id=K1, node_id="f1-n1", reason="test")
    report = market.report()
    assert report.contracts == []
    assert report.node("f1-n1").free == NODE  # type: ignore[union-attr]


def test_declines_carry_the_negotiations_offtaker_and_reasons(market: Market) -> None:
    market.farm("f1")
    market.rfq("n1")
    reasons = [DeclineReason.TERM_TOO_LONG, DeclineReason.BELOW_FLOOR]
    market.send(DeclineRfq, negotiation_id="n1", farm_id="f1", reasons=reasons, detail="no")
    (decline,) = market.report().declines
    assert (decline.offtaker_id, decline.workload_id, decline.farm_id) == ("acme", "web", "f1")
    assert decline.reasons == tuple(reasons)
    assert market.report().negotiation("n1").declines == 1  # type: ignore[union-attr]


def test_pending_approvals_until_approved_withdrawn_or_expired(market: Market) -> None:
    market.farm("f1", nodes=3, mode=PolicyMode.APPROVE)
    market.rfq("n1", replicas=3)
    for index in (1, 2, 3):
        market.offer("n1", f"o{index}", f"f1-n{index}", firm=False)
    now = market.clock.now()
    assert [o.offer_id for o in market.report().pending_approvals(now)] == ["o1", "o2", "o3"]

    market.send(ApproveOffer, negotiation_id="n1", offer_id="o1")
    market.send(RejectOffer, negotiation_id="n1", offer_id="o2", reason="busy")
    report = market.report()
    assert [o.offer_id for o in report.pending_approvals(now)] == ["o3"]
    assert report.offer("o1").approved  # type: ignore[union-attr]
    assert (report.offer("o2").status, report.offer("o2").reason) == ("withdrawn", "busy")  # type: ignore[union-attr]
    assert report.node("f1-n2").holds == 0  # type: ignore[union-attr]  # rejecting releases

    later = now + timedelta(seconds=61)
    assert report.pending_approvals(later) == []
    assert report.offer("o3").awaits_approval(now)  # type: ignore[union-attr]


def test_a_failed_negotiation_releases_its_offers(market: Market) -> None:
    market.farm("f1", nodes=2)
    market.rfq("n1", replicas=2)
    market.offer("n1", "o1", "f1-n1")
    market.offer("n1", "o2", "f1-n2", firm=False)
    market.send(CloseNegotiation, negotiation_id="n1", outcome="failed", reason="too dear")
    report = market.report()
    nego = report.negotiation("n1")
    assert nego is not None
    assert (nego.status, nego.reason, nego.offers) == ("failed", "too dear", 2)
    assert {o.status for o in report.offers} == {"released"}
    assert report.pending_approvals(market.clock.now()) == []
    assert all(n.free == NODE for n in report.nodes)


def test_node_status_and_repeated_events(market: Market) -> None:
    market.farm("f1")
    market.send(ChangeNodeStatus, node_id="f1-n1", status=NodeStatus.DOWN, reason="maintenance")
    report = MarketReport()
    rows = market.store.read_all(1, 100)
    for row in [*rows, *rows]:  # a repeat of what was applied changes nothing
        envelope = row.envelope()
        report.apply(envelope, envelope.decode())
    assert report.position == rows[-1].position
    assert report.farms[0].nodes == 1
    assert report.node("f1-n1").status == NodeStatus.DOWN  # type: ignore[union-attr]


def test_rows_are_json_ready(market: Market) -> None:
    market.farm("f1")
    market.rfq("n1")
    market.offer("n1", "o1", "f1-n1")
    market.send(AcceptOffer, negotiation_id="n1", offer_id="o1")
    report = market.report()
    data = json.loads(json.dumps(json_ready([*report.contracts, *report.nodes])))
    contract, node = data
    assert contract["price_hour"] == {"amount": "0.02", "currency": "USD"}
    assert contract["grid"] == "grid4"
    assert contract["sla"]["uptime_pct"] == "99"
    assert node["committed"]["cru"] == 2
    assert node["uptime_pct"] == "99"


def test_a_voided_acceptance_shows_the_offer_withdrawn_and_no_contract(market: Market) -> None:
    market.farm("f1")
    market.rfq("n1")
    market.offer("n1", "o1", "f1-n1")
    market.send(ChangeNodeStatus, node_id="f1-n1", status=NodeStatus.DOWN, reason="power")
    with pytest.raises(CommandRejected):
        market.send(AcceptOffer, negotiation_id="n1", offer_id="o1")
    report = market.report()
    assert report.contracts == []
    offer = report.offer("o1")
    assert offer is not None
    assert offer.status == "withdrawn"
    assert report.node("f1-n1").holds == 0  # type: ignore[union-attr]
    assert report.node("f1-n1").free == NODE  # type: ignore[union-attr]


def test_a_voided_acceptance_leaves_the_negotiation_without_a_contract(market: Market) -> None:
    market.farm("f1")
    market.rfq("n1")
    market.offer("n1", "o1", "f1-n1")
    market.send(ChangeNodeStatus, node_id="f1-n1", status=NodeStatus.DOWN, reason="power")
    with pytest.raises(CommandRejected):
        market.send(AcceptOffer, negotiation_id="n1", offer_id="o1")
    report = market.report()
    nego = report.negotiation("n1")
    assert nego is not None
    assert (nego.status, nego.contracts) == ("open", ())
    assert report.offer("o1").contract_id is None  # type: ignore[union-attr]
