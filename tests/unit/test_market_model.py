"""The market model (hero.model): one pure fold of the log into typed state."""

from __future__ import annotations

import ast
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from hero.domain.ledger import Leg, account_id, account_of_stream, account_stream
from hero.model import HANDLERS, IGNORED, HourUsage, MarketState, apply
from schemas import (
    REGISTRY,
    BalanceLow,
    CapacityHeld,
    ContractCancelled,
    ContractCreated,
    ContractResumed,
    ContractSuspended,
    CounterAccepted,
    CounterOffered,
    CounterRejected,
    DeclineReason,
    Event,
    FarmerPolicy,
    FarmerPolicySet,
    FarmRegistered,
    Grid,
    HoldExpired,
    HoldReleased,
    Money,
    NegotiationAwarded,
    NodeRegistered,
    NodeStatus,
    NodeStatusChanged,
    OfferAccepted,
    OfferDeclined,
    OfferMade,
    OfferWithdrawn,
    ReplicaMigrated,
    ReplicaPlaced,
    Resources,
    RfqIssued,
    SlaOutcomeRecorded,
    TransferKind,
    TransferPosted,
    UsageBilled,
    UsageRecorded,
)
from tests.unit._feed import Feed
from tests.unit._gwt import SHAPE, SLA, T0, usd
from tests.unit._ledger_book import LedgerBook

MODEL = Path(__file__).parents[2] / "hero" / "model"
# pydantic is what the schemas are made of (the domain uses it too); the snapshot codec needs it
# to give their models their JSON form (pydantic_core writes it). Nothing of I/O: no store,
# broker, cache or Ray.
ALLOWED = ("schemas", "hero.domain", "hero.model", "pydantic", "pydantic_core")
NODE_TOTAL = SHAPE.times(4)
H = timedelta(hours=1)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_the_model_imports_only_schemas_the_domain_and_the_standard_library():
    outside = {
        (path.name, name)
        for path in MODEL.glob("*.py")
        for name in _imports(path)
        if name.split(".")[0] not in sys.stdlib_module_names
        and not any(name == a or name.startswith(f"{a}.") for a in ALLOWED)
    }
    assert outside == set()
    assert len(list(MODEL.glob("*.py"))) >= 3  # the walk did see the package


def test_every_registered_event_is_applied_or_ignored_by_name():
    events = {e.model for e in REGISTRY.entries("event")}
    assert events, "no events registered"
    assert set(HANDLERS) | IGNORED == events
    assert not set(HANDLERS) & IGNORED


# -- helpers --------------------------------------------------------------------------------


class Log:
    def __init__(self) -> None:
        self.state, self.feed = MarketState(), Feed()

    def __call__(self, event: Event, stream: str = "s", at=T0) -> Log:
        apply(self.state, self.feed.wrap(event, stream, at), event)
        return self


def farm(farm_id: str = "f1", name: str = "f1") -> FarmRegistered:
    return FarmRegistered(farm_id=farm_id, name=name, grid=Grid.GRID3, country="BE", region="eu")


def node(node_id: str = "n1", farm_id: str = "f1", total: Resources = NODE_TOTAL):
    return NodeRegistered(
        node_id=node_id, farm_id=farm_id, grid=Grid.GRID3, country="BE", region="eu", total=total
    )


def held(hold_id: str, minutes: int = 10, node_id: str = "n1") -> CapacityHeld:
    return CapacityHeld(
        node_id=node_id,
        hold_id=hold_id,
        negotiation_id="ng1",
        resources=SHAPE,
        expires_at=T0 + timedelta(minutes=minutes),
    )


def contract(contract_id: str, hold_id: str, node_id: str = "n1") -> ContractCreated:
    return ContractCreated(
        contract_id=contract_id,
        negotiation_id="ng1",
        offer_id=f"of-{contract_id}",
        hold_id=hold_id,
        offtaker_id="acme",
        workload_id="web",
        farm_id="f1",
        node_id=node_id,
        grid=Grid.GRID3,
        resources=SHAPE,
        price_hour=usd("0.10"),
        term_hours=24,
        sla=SLA,
        starts_at=T0,
    )


# -- farms and nodes ------------------------------------------------------------------------


def test_a_farm_registered_again_keeps_its_policy_and_nodes_and_takes_its_new_name():
    policy = FarmerPolicy(price_cu_hour=usd("0.01"))
    log = Log()(farm())(node("n1"))(FarmerPolicySet(farm_id="f1", policy=policy))
    log(farm(name="renamed"))
    f1 = log.state.farms["f1"]
    assert (f1.name, f1.policy, f1.node_ids) == ("renamed", policy, ["n1"])


def test_nodes_registered_before_their_farm_are_its_nodes_once_it_comes():
    log = Log()(node("n3"))(node("n1"))(node("n2", farm_id="f2"))(node("n1"))
    assert log.state.early_nodes == {"f1": ["n3", "n1"], "f2": ["n2"]}
    log(farm())(node("n4"))
    assert log.state.farms["f1"].node_ids == ["n1", "n3", "n4"]
    assert log.state.early_nodes == {"f2": ["n2"]}
    log(farm("f2"))(farm())
    assert (log.state.farms["f2"].node_ids, log.state.early_nodes) == (["n2"], {})
    assert log.state.farms["f1"].node_ids == ["n1", "n3", "n4"]


def test_a_node_registered_again_keeps_its_holds_and_contracts_and_is_counted_once():
    log = Log()(farm())(node())(held("h1"))(held("h2"))(contract("c1", "h2"))
    log(node(total=NODE_TOTAL.times(2)))
    n1 = log.state.nodes["n1"]
    assert (set(n1.holds), set(n1.contracts), n1.total) == ({"h1"}, {"c1"}, NODE_TOTAL.times(2))
    assert log.state.farms["f1"].node_ids == ["n1"]
    assert n1.free(T0) == NODE_TOTAL.times(2) - SHAPE.times(2)


def test_a_contract_takes_its_hold_and_its_cancellation_frees_the_node():
    log = Log()(farm())(node())(held("h1"))
    assert log.state.nodes["n1"].free(T0) == NODE_TOTAL - SHAPE
    log(contract("c1", "h1"))
    n1 = log.state.nodes["n1"]
    assert (n1.holds, n1.committed, n1.free(T0)) == ({}, SHAPE, NODE_TOTAL - SHAPE)
    log(ContractCancelled(contract_id="c1", node_id="n1", reason="ended"))
    assert (n1.contracts, n1.free(T0)) == ({}, NODE_TOTAL)
    assert log.state.contracts["c1"].status == "cancelled"  # kept: it still names its owner
    assert log.state.live_contracts() == []


def test_an_expired_hold_counts_free_for_the_agents_but_held_until_released():
    log = Log()(farm())(node())(held("h1", minutes=5))
    n1 = log.state.nodes["n1"]
    assert n1.free(T0 + timedelta(minutes=5)) == NODE_TOTAL
    assert n1.held == SHAPE
    log(HoldExpired(node_id="n1", hold_id="h1"))
    assert n1.held == Resources.sum([])


def test_a_status_before_the_nodes_registration_is_kept_and_taken_by_the_node():
    log = Log()(NodeStatusChanged(node_id="n1", status=NodeStatus.DOWN))
    assert (log.state.node_status("n1"), log.state.node_status("n2")) == (
        NodeStatus.DOWN,
        NodeStatus.UP,
    )
    log(farm())(node())
    assert (log.state.nodes["n1"].status, log.state.early_status) == (NodeStatus.DOWN, {})


def test_the_first_cancellation_ends_a_contract_and_names_it_in_its_workload():
    log = Log()(farm())(node())(held("h1"))(contract("c1", "h1"))
    log(ContractCancelled(contract_id="c1", node_id="n1", reason="scaled down"), at=T0 + H)
    log(ContractCancelled(contract_id="c1", node_id="n1", reason="again"), at=T0 + 2 * H)
    c1 = log.state.contracts["c1"]
    assert (c1.status, c1.reason, c1.ended_at) == ("cancelled", "scaled down", T0 + H)
    assert list(log.state.workloads[("acme", "web")].contracts) == ["c1"]


def test_a_contract_cancelled_before_its_creation_is_born_cancelled_and_holds_nothing():
    log = Log()(farm())(node())(held("h1"))
    log(ContractCancelled(contract_id="c1", node_id="n1", reason="ended"), at=T0 + H)
    log(contract("c1", "h1"))
    c1, n1 = log.state.contracts["c1"], log.state.nodes["n1"]
    assert (c1.status, c1.reason, c1.ended_at) == ("cancelled", "ended", T0 + H)
    assert (n1.contracts, n1.holds, log.state.early_cancellations) == ({}, {}, {})


# -- negotiations ---------------------------------------------------------------------------


def rfq() -> RfqIssued:
    return RfqIssued(
        negotiation_id="ng1",
        offtaker_id="acme",
        workload_id="web",
        resources=SHAPE,
        replicas=2,
        grids=[Grid.GRID3],
        min_uptime_pct=Decimal(95),
        max_price_cu_hour=usd("1"),
        term_hours=24,
        deadline=T0 + timedelta(minutes=1),
    )


def offer(offer_id: str) -> OfferMade:
    return OfferMade(
        negotiation_id="ng1",
        offer_id=offer_id,
        farm_id="f1",
        node_id="n1",
        hold_id=f"h-{offer_id}",
        grid=Grid.GRID3,
        region="eu",
        uptime_pct=Decimal(99),
        resources=SHAPE,
        price_hour=usd("0.1"),
        term_hours=24,
        sla=SLA,
        firm=True,
        expires_at=T0 + timedelta(minutes=1),
    )


def accepted(offer_id: str, contract_id: str) -> OfferAccepted:
    return OfferAccepted(
        negotiation_id="ng1",
        offer_id=offer_id,
        farm_id="f1",
        contract_id=contract_id,
        price_hour=usd("0.1"),
    )


def test_a_negotiation_follows_its_offers_to_its_award():
    log = Log()(rfq())(offer("o1"))(offer("o2"))(offer("o3"))
    log(accepted("o1", "c1"))(accepted("o2", "c2"))
    log(OfferWithdrawn(negotiation_id="ng1", offer_id="o2", farm_id="f1", reason="rejected"))
    log(NegotiationAwarded(negotiation_id="ng1", offtaker_id="acme", contract_ids=["c1"],
                           released_offers=["o1", "o3"]))  # fmt: skip
    nego, offers = log.state.negotiations["ng1"], log.state.offers
    assert (nego.status, nego.open, nego.contracts, nego.offers) == (
        "awarded",
        False,
        ["c1"],
        ["o1", "o2", "o3"],
    )
    assert [offers[o].status for o in ("o1", "o2", "o3")] == ["accepted", "withdrawn", "released"]
    assert nego.farms == {"f1"}


def test_a_negotiation_keeps_its_rfqs_terms_and_its_declines_in_order():
    log = Log()(rfq())
    for farm_id, detail in (("f2", "full"), ("f3", "too cheap")):
        log(OfferDeclined(negotiation_id="ng1", farm_id=farm_id, detail=detail,
                          reasons=[DeclineReason.BELOW_FLOOR]))  # fmt: skip
    nego = log.state.negotiations["ng1"]
    assert (nego.grids, nego.regions, nego.max_price_cu_hour) == ((Grid.GRID3,), (), usd("1"))
    assert [(d.farm_id, d.detail) for d in nego.declined] == [("f2", "full"), ("f3", "too cheap")]
    assert (nego.declines, nego.farms) == (2, {"f2", "f3"})


# -- money ----------------------------------------------------------------------------------

ACME, FARMER = account_id("offtaker", "acme"), account_id("farmer", "f1")


def transfer(amount: str = "5", transfer_id: str = "t1") -> TransferPosted:
    return TransferPosted(
        transfer_id=transfer_id,
        debit_account=ACME,
        credit_account=FARMER,
        amount=Money.of(amount, "TFT"),
        kind=TransferKind.BILL,
        reference="bill1",
    )


def test_a_transfer_moves_money_once_both_legs_are_recorded():
    log = Log()(transfer(), account_stream(ACME))
    assert log.state.accounts == {}
    assert set(log.state.waiting_legs) == {"t1"}
    log(transfer(), account_stream(FARMER))
    balances = {a: x.balance for a, x in log.state.accounts.items()}
    assert balances == {ACME: Decimal(-5), FARMER: Decimal(5)}
    assert log.state.waiting_legs == {}


def test_legs_that_disagree_move_nothing_and_say_why():
    log = Log()(transfer("5"), account_stream(ACME))(transfer("6"), account_stream(FARMER))
    assert log.state.accounts == {}
    assert log.state.unsound_transfers == {"t1": "mismatched_legs"}


def test_an_accounts_book_keeps_its_waiting_legs_faults_and_last_transfers_newest_first():
    log = Log()(transfer(), account_stream(ACME))
    assert set(log.state.books) == {ACME, FARMER}  # both named accounts see the waiting leg
    assert [set(b.waiting) for b in log.state.books.values()] == [{"t1"}, {"t1"}]
    log(transfer(), account_stream(FARMER))
    acme = log.state.books[ACME]
    assert (acme.waiting, acme.faults) == ({}, {})
    line = acme.lines[0]
    assert (line.transfer_id, line.credit, line.amount, line.counterparty) == (
        "t1", False, Decimal(5), FARMER)  # fmt: skip
    log(transfer("5", "t2"), account_stream(ACME))(transfer("6", "t2"), account_stream(FARMER))
    assert log.state.books[FARMER].faults == {"t2": "mismatched_legs"}
    assert log.state.books[FARMER].waiting == {}
    for n in range(3, 30):
        tid = f"t{n}"
        log(transfer("1", tid), account_stream(ACME))(transfer("1", tid), account_stream(FARMER))
    lines = log.state.books[ACME].lines
    assert (len(lines), lines[0].transfer_id, lines[-1].transfer_id) == (20, "t29", "t10")


def test_a_leg_on_a_third_accounts_stream_is_filed_only_with_the_accounts_it_names():
    stranger = account_id("offtaker", "globex")
    log = Log()(transfer(), account_stream(stranger))
    assert set(log.state.books) == {ACME, FARMER}
    assert log.state.books[ACME].faults == {"t1": "invalid_leg"}


# -- properties -------------------------------------------------------------------------------

_steps = st.lists(
    st.tuples(st.sampled_from(["hold", "release", "expire", "contract", "cancel"]),
              st.integers(0, 5)),
    max_size=40,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(_steps)
def test_free_capacity_is_the_total_less_live_holds_and_contracts_after_any_history(steps):
    log = Log()(farm())(node(total=SHAPE.times(3)))
    n1 = log.state.nodes["n1"]
    for kind, i in steps:
        n1.free(T0)  # read between steps: the cache must follow every change
        match kind:
            case "hold":
                log(held(f"h{i}", minutes=i))  # minutes=0: expired at once
            case "release":
                log(HoldReleased(node_id="n1", hold_id=f"h{i}", reason="test"))
            case "expire":
                log(HoldExpired(node_id="n1", hold_id=f"h{i}"))
            case "contract":
                log(contract(f"c{i}", f"h{i}"))
            case "cancel":
                log(ContractCancelled(contract_id=f"c{i}", node_id="n1", reason="test"))
    live_holds = [r for r, t in n1.holds.values() if t > T0]
    used = Resources.sum([*live_holds, *n1.contracts.values()])
    assert n1.free(T0) == n1.total.minus_floored(used)
    assert set(n1.contracts) == {c.contract_id for c in log.state.live_contracts()}


# -- contracts' life, counters, replicas, usage -----------------------------------------------


def test_a_suspended_contract_stays_live_until_cancelled_and_a_cancelled_one_stays_cancelled():
    log = Log()(farm())(node())(held("h1"))(contract("c1", "h1"))
    grace = T0 + timedelta(hours=2)
    suspend = ContractSuspended(contract_id="c1", offtaker_id="acme", node_id="n1",
                                unpaid_hour=T0, grace_ends_at=grace)  # fmt: skip
    resume = ContractResumed(contract_id="c1", offtaker_id="acme", node_id="n1")
    c1 = log(suspend).state.contracts["c1"]
    assert (c1.status, c1.grace_ends_at, c1.live) == ("suspended", grace, True)
    assert (log(resume).state.contracts["c1"].status, c1.grace_ends_at) == ("active", None)
    log(ContractCancelled(contract_id="c1", node_id="n1", reason="ended"))(resume)(suspend)
    assert c1.status == "cancelled"


def test_a_suspension_notice_is_kept_past_the_end_and_facts_before_the_contract_are_kept():
    grace = T0 + timedelta(hours=2)
    suspend = ContractSuspended(contract_id="c1", offtaker_id="acme", node_id="n1",
                                unpaid_hour=T0, grace_ends_at=grace)  # fmt: skip
    log = Log()(ReplicaPlaced(offtaker_id="acme", workload_id="web", replica_id="r1",
                              contract_id="c1", farm_id="f1", node_id="n1",
                              grid=Grid.GRID3))  # fmt: skip
    log(SlaOutcomeRecorded(contract_id="c1", offtaker_id="acme", farm_id="f1", node_id="n1",
                           sla=SLA, started_at=T0, ended_at=T0 + H, period_hours=Decimal(1),
                           hours_down=Decimal(0), uptime_pct=Decimal(100), met=True,
                           penalty=usd("0")))  # fmt: skip
    placed, outcome = log.state.placements["c1"], log.state.sla_outcomes["c1"]
    assert (placed.offtaker_id, placed.farm_id, placed.node_id, placed.grid) == (
        "acme", "f1", "n1", Grid.GRID3)  # fmt: skip
    assert (outcome.node_id, outcome.started_at, outcome.ended_at) == ("n1", T0, T0 + H)
    log(farm())(node())(held("h1"))(contract("c1", "h1"))
    log(ContractCancelled(contract_id="c1", node_id="n1", reason="ended"))(suspend)
    assert log.state.contracts["c1"].status == "cancelled"
    assert log.state.suspensions["c1"].unpaid_hour == T0  # the notice stays past the end
    log(ContractResumed(contract_id="c1", offtaker_id="acme", node_id="n1"))
    assert log.state.suspensions == {}


def test_a_counter_is_kept_on_its_offer_with_its_answer():
    log = Log()(rfq())(offer("o1"))
    log(CounterOffered(negotiation_id="ng1", offer_id="o1", farm_id="f1", price_hour=usd("0.08")))
    assert (log.state.offers["o1"].counter, log.state.offers["o1"].counter_accepted) == (
        usd("0.08"),
        None,
    )
    log(CounterRejected(negotiation_id="ng1", offer_id="o1", farm_id="f1",
                        reasons=[DeclineReason.BELOW_FLOOR]))  # fmt: skip
    assert log.state.offers["o1"].counter_accepted is False


def test_a_migrated_replica_names_its_new_contract_and_node():
    log = Log()(farm())(node("n1"))(node("n2"))(held("h1"))(contract("c1", "h1"))
    log(ReplicaPlaced(offtaker_id="acme", workload_id="web", replica_id="r1", contract_id="c1",
                      farm_id="f1", node_id="n1", grid=Grid.GRID3))  # fmt: skip
    log(held("h2", node_id="n2"))(contract("c2", "h2", node_id="n2"))
    log(ReplicaMigrated(offtaker_id="acme", workload_id="web", replica_id="r1",
                        from_node_id="n1", to_node_id="n2", from_contract_id="c1",
                        to_contract_id="c2", reason="node down"))  # fmt: skip
    r1 = log.state.replicas["r1"]
    assert (r1.contract_id, r1.node_id, r1.farm_id) == ("c2", "n2", "f1")


def test_usage_keeps_one_fact_per_hour_and_bills_add_up_per_contract():
    log = Log()(farm())(node())(held("h1"))(contract("c1", "h1"))
    for cu in ("1", "2"):  # the same hour twice: the first fact stands (billing prices it)
        log(UsageRecorded(contract_id="c1", hour=T0, cu_hours=Decimal(cu), su_hours=Decimal(0),
                          nu_gb=Decimal(0)))  # fmt: skip
    assert log.state.usage["c1"].cu_hours == Decimal(1)
    for hour in range(2):
        log(UsageBilled(bill_id=f"b{hour}", contract_id="c1", offtaker_id="acme", farm_id="f1",
                        grid=Grid.GRID3, hour=T0 + timedelta(hours=hour), seconds=3600,
                        usd=usd("0.1"), rate=Decimal(10), amount=Money.of("1", "TFT"),
                        farmer_share=Money.of("0.6", "TFT"), pool_share=Money.of("0.2", "TFT"),
                        threefold_share=Money.of("0.2", "TFT")))  # fmt: skip
    c1 = log.state.contracts["c1"]
    assert (c1.billed, c1.billed_hours) == (Money.of("2", "TFT"), 2)


def test_an_offer_accepted_after_a_counter_shows_the_price_it_was_accepted_at():
    log = Log()(rfq())(offer("o1"))
    log(CounterOffered(negotiation_id="ng1", offer_id="o1", farm_id="f1", price_hour=usd("0.08")))
    log(CounterAccepted(negotiation_id="ng1", offer_id="o1", farm_id="f1", price_hour=usd("0.08")))
    log(accepted("o1", "c1").model_copy(update={"price_hour": usd("0.08")}))
    o1 = log.state.offers["o1"]
    assert (o1.status, o1.price_hour, o1.counter_accepted) == ("accepted", usd("0.08"), True)


def test_a_third_leg_moves_nothing_and_is_filed_as_the_ledgers_book_files_it():
    legs = [(transfer(), account_stream(a)) for a in (ACME, FARMER, ACME)]
    log = Log()
    book = LedgerBook()
    for event, stream in legs:
        log(event, stream)
        book.add(Leg(account_of_stream(stream), event))
    balances = {a: x.balance for a, x in log.state.accounts.items()}
    assert balances == {a: s.balance.amount for a, s in book.ledger.accounts.items()}
    assert balances == {ACME: Decimal(-5), FARMER: Decimal(5)}
    assert log.state.waiting_legs == {}  # not a first leg waiting for its pair
    assert log.state.unsound_transfers == {t: p.value for t, p in book.problems.items()}
    assert log.state.unsound_transfers == {"t1": "third_leg"}
    assert log.state.unsound_reasons == book.unbalanced == {"t1": f"a third leg, on {ACME}"}
    assert log.state.books[ACME].faults == {"t1": "third_leg"}


# -- what billing reads -------------------------------------------------------------------------

H = timedelta(hours=1)


def test_billing_reads_each_contracts_run_and_the_usage_fact_of_each_hour_first_recorded():
    suspended = ContractSuspended(
        contract_id="c1", offtaker_id="acme", node_id="n1", unpaid_hour=T0, grace_ends_at=T0 + 9 * H
    )
    resumed = ContractResumed(contract_id="c1", offtaker_id="acme", node_id="n1")
    cancelled = ContractCancelled(contract_id="c1", node_id="n1", reason="offtaker_request")
    log = Log()(contract("c1", "h1"))(suspended, at=T0 + 2 * H)(resumed, at=T0 + 5 * H)
    log(cancelled, at=T0 + 6 * H + H / 2)
    billed = log.state.billing["c1"]
    assert billed.intervals == [(T0, T0 + 2 * H), (T0 + 5 * H, T0 + 6 * H + H / 2)]
    assert (billed.cancelled, billed.closed, billed.suspended_at) == (True, False, None)
    assert billed.seconds_in(T0 + 6 * H) == 1800
    first = UsageRecorded(contract_id="c1", hour=T0, cu_hours=1, su_hours=0, nu_gb=0, seconds=60)
    again = first.model_copy(update={"cu_hours": Decimal(2), "seconds": 120})
    log(first)(again)
    assert log.state.usage["c1"].hours == {T0: HourUsage(Decimal(1), Decimal(0), Decimal(0), 60)}


def test_billing_reads_the_refunds_posted_and_the_low_balance_warnings_still_standing():
    low = BalanceLow(
        account_id=ACME,
        offtaker_id="acme",
        balance=Money.of("1", "TFT"),
        hourly_cost=Money.of("1", "TFT"),
        hours_left=Decimal(1),
    )
    log = Log()(low, account_stream(ACME))
    assert log.state.low_balance == {ACME}
    refund = TransferPosted(
        transfer_id="sla-c1-farmer",
        debit_account=FARMER,
        credit_account=ACME,
        amount=Money.of("1", "TFT"),
        kind=TransferKind.SLA_PENALTY,
        reference="c1",
    )
    log(refund, account_stream(FARMER))
    assert (log.state.sla_paid, log.state.low_balance) == ({"c1"}, set())
