"""MarketService over an event store: commands in, events on node and negotiation streams out."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from hero.domain import node as nodes
from hero.domain.clock import ManualClock
from hero.domain.errors import Rejected
from hero.domain.pricing import MANUAL
from hero.market.service import CommandRejected, MarketService, scaling_stream
from hero.store import MemoryEventStore, SqliteEventStore
from schemas import (
    AcceptOffer,
    AnswerCounter,
    ApproveOffer,
    CancelContract,
    ChangeNodeStatus,
    CloseNegotiation,
    ContractCancelled,
    ContractCreated,
    CounterOffer,
    ExpireHolds,
    FarmerPolicy,
    Grid,
    HoldReleased,
    MakeOffer,
    Mandate,
    Money,
    NegotiationAwarded,
    NegotiationFailed,
    NodeStatus,
    NodeStatusChanged,
    OfferAccepted,
    OfferDeclined,
    OfferWithdrawn,
    ReceiveFiatPayment,
    RecordScaleDecision,
    RegisterFarm,
    RejectOffer,
    ReplicaMigrated,
    ReplicaPlaced,
    Resources,
    ScaleDecided,
    ScalingPolicy,
    SetFarmerPolicy,
    SetOfftakerMandate,
    Sla,
    SlaOutcomeRecorded,
    WorkloadSpec,
)
from schemas.catalogue.common import DeclineReason
from tests.unit._gwt import SHAPE, T0, Market, ctr, usd

BIG = SHAPE.times(4)


@pytest.fixture
def market() -> Market:
    m = Market()
    m.farm("farm_1")
    m.node("node_1")
    m.node("node_2")
    m.node("node_big", BIG)
    return m


def of_type(events, cls):
    return [e for e in events if isinstance(e, cls)]


# --- the happy path ----------------------------------------------------------------------


def test_a_full_negotiation_ends_in_a_contract_on_the_node_and_an_award(market):
    market.rfq("neg_1")

    offered = market.make_offer("neg_1", "o1", "node_1", price="0.02")
    assert [type(e).__name__ for e in offered.events] == ["CapacityHeld", "OfferMade"]
    assert market.node_state("node_1").holds.keys() == {"o1"}

    result = market.accept("neg_1", "o1")

    # The negotiation records the acceptance (it counts replicas), then the node commits, and
    # records in the same append why the replica went there.
    assert [type(e).__name__ for e in result.events] == [
        "OfferAccepted",
        "ContractCreated",
        "ReplicaPlaced",
        "NegotiationAwarded",
    ]
    assert market.node_types("node_1") == [
        "NodeRegistered",
        "CapacityHeld",
        "ContractCreated",
        "ReplicaPlaced",
    ]
    assert market.negotiation_types("neg_1") == [
        "RfqIssued",
        "OfferMade",
        "OfferAccepted",
        "NegotiationAwarded",
    ]
    contract = market.events("node-node_1")[-2]
    assert isinstance(contract, ContractCreated)
    assert contract.contract_id == "ctr.neg_1.o1"  # derived from negotiation and offer
    assert (contract.offer_id, contract.hold_id) == ("o1", "o1")
    assert (contract.negotiation_id, contract.workload_id, contract.offtaker_id) == (
        "neg_1",
        "wl-neg_1",
        "off_1",
    )
    assert (contract.farm_id, contract.node_id, contract.resources) == ("farm_1", "node_1", SHAPE)
    assert contract.price_hour == usd("0.02")
    assert contract.starts_at == market.clock.now()
    award = market.events("nego-neg_1")[-1]
    assert isinstance(award, NegotiationAwarded)
    assert (award.contract_ids, award.released_offers) == (["ctr.neg_1.o1"], [])
    state = market.node_state("node_1")
    assert (state.holds, state.contracts) == ({}, {"ctr.neg_1.o1": SHAPE})
    assert market.negotiation_state("neg_1").status == "awarded"


def test_the_award_waits_for_every_replica_and_then_releases_the_other_offers(market):
    market.rfq("neg_1", replicas=2)
    market.make_offer("neg_1", "o1", "node_1")
    market.make_offer("neg_1", "o2", "node_2")
    market.make_offer("neg_1", "o3", "node_big")

    first = market.accept("neg_1", "o1")
    assert not of_type(first.events, NegotiationAwarded)
    assert market.negotiation_state("neg_1").status == "open"

    second = market.accept("neg_1", "o2")

    (award,) = of_type(second.events, NegotiationAwarded)
    assert award.contract_ids == [ctr("neg_1", "o1"), ctr("neg_1", "o2")]
    assert award.released_offers == ["o3"]
    assert market.node_types("node_big")[-1] == "HoldReleased"
    assert market.node_state("node_big").holds == {}
    assert market.node_state("node_big").free(market.clock.now()) == BIG


def test_a_contract_is_priced_at_the_counter_the_farmer_accepted(market):
    market.rfq("neg_1")
    market.make_offer("neg_1", "o1", "node_1", price="0.02")
    market.handle(
        CounterOffer(
            command_id="counter", negotiation_id="neg_1", offer_id="o1", price_hour=usd("0.015")
        )
    )
    with pytest.raises(CommandRejected) as pending:
        market.accept("neg_1", "o1", command_id="too-soon")
    assert pending.value.reason == "counter_pending"

    market.handle(
        AnswerCounter(command_id="answer", negotiation_id="neg_1", offer_id="o1", accept=True)
    )
    result = market.accept("neg_1", "o1")

    (contract,) = of_type(result.events, ContractCreated)
    (accepted,) = of_type(result.events, OfferAccepted)
    assert contract.price_hour == accepted.price_hour == usd("0.015")


# --- declines ----------------------------------------------------------------------------


def test_an_offer_on_a_full_node_becomes_a_decline_for_insufficient_capacity(market):
    market.rfq("neg_a")
    market.rfq("neg_b")
    market.make_offer("neg_a", "oa", "node_1")

    result = market.make_offer("neg_b", "ob", "node_1")

    (decline,) = result.events
    assert isinstance(decline, OfferDeclined)
    assert decline.reasons == [DeclineReason.INSUFFICIENT_CAPACITY]
    assert (decline.farm_id, decline.node_id) == ("farm_1", "node_1")
    assert market.node_state("node_1").holds.keys() == {"oa"}
    state = market.negotiation_state("neg_b")
    assert state.offers == {}
    assert state.declines == {"farm_1": (DeclineReason.INSUFFICIENT_CAPACITY,)}


def test_an_offer_on_a_node_that_is_down_becomes_a_decline_for_node_unavailable(market):
    market.rfq("neg_1")
    market.handle(ChangeNodeStatus(command_id="down", node_id="node_1", status=NodeStatus.DOWN))

    (decline,) = market.make_offer("neg_1", "o1", "node_1").events

    assert isinstance(decline, OfferDeclined)
    assert decline.reasons == [DeclineReason.NODE_UNAVAILABLE]
    assert market.node_types("node_1") == ["NodeRegistered", "NodeStatusChanged"]


# --- repeating a command -------------------------------------------------------------------


def _repeat_and_check_nothing_written(market: Market, again) -> None:
    before = market.store.current_position()
    result = again()
    assert result.duplicate is True
    assert result.events == []
    assert market.store.current_position() == before


def test_repeating_a_make_offer_writes_nothing_more(market):
    market.rfq("neg_1")
    market.make_offer("neg_1", "o1", "node_1")
    _repeat_and_check_nothing_written(market, lambda: market.make_offer("neg_1", "o1", "node_1"))
    assert market.negotiation_types("neg_1").count("OfferMade") == 1
    assert market.node_types("node_1").count("CapacityHeld") == 1


def test_repeating_a_declined_make_offer_writes_nothing_more(market):
    market.rfq("neg_a")
    market.rfq("neg_b")
    market.make_offer("neg_a", "oa", "node_1")
    market.make_offer("neg_b", "ob", "node_1")
    _repeat_and_check_nothing_written(market, lambda: market.make_offer("neg_b", "ob", "node_1"))
    assert market.negotiation_types("neg_b").count("OfferDeclined") == 1


@pytest.mark.parametrize("command", ["farm", "node", "rfq", "reject", "close", "status"])
def test_repeating_a_command_writes_nothing_more(market, command):
    market.rfq("neg_1")
    market.make_offer("neg_1", "o1", "node_1")
    repeat = {
        "farm": lambda: market.farm("farm_1"),
        "node": lambda: market.node("node_1"),
        "rfq": lambda: market.rfq("neg_1"),
        "reject": lambda: market.handle(
            RejectOffer(command_id="reject", negotiation_id="neg_1", offer_id="o1")
        ),
        "close": lambda: market.close("neg_1"),
        "status": lambda: market.handle(
            ChangeNodeStatus(command_id="down", node_id="node_1", status=NodeStatus.DOWN)
        ),
    }[command]
    repeat()
    _repeat_and_check_nothing_written(market, repeat)


def test_repeating_an_accept_offer_is_answered_as_a_duplicate(market):
    market.rfq("neg_1")
    market.make_offer("neg_1", "o1", "node_1")
    market.accept("neg_1", "o1")  # awarded: the negotiation is closed now
    _repeat_and_check_nothing_written(market, lambda: market.accept("neg_1", "o1"))
    assert market.contract_ids() == [ctr("neg_1", "o1")]


def test_repeating_an_accept_offer_after_the_offer_expired_is_still_a_duplicate(market):
    market.rfq("neg_1", replicas=2)  # stays open after one accept
    market.make_offer("neg_1", "o1", "node_1", expires=timedelta(minutes=5))
    market.accept("neg_1", "o1")
    market.clock.advance(timedelta(minutes=10))
    _repeat_and_check_nothing_written(market, lambda: market.accept("neg_1", "o1"))


def test_repeating_a_refused_accept_offer_is_refused_again(market):
    """Only a command that wrote something is a duplicate; a refusal wrote nothing."""
    market.rfq("neg_1")
    market.make_offer("neg_1", "o1", "node_1", firm=False)
    for _ in range(2):
        with pytest.raises(CommandRejected) as refused:
            market.accept("neg_1", "o1")
        assert refused.value.reason == "awaiting_approval"


def test_repeating_a_make_offer_after_the_negotiation_closed_is_a_duplicate(market):
    market.rfq("neg_1")
    market.make_offer("neg_1", "o1", "node_1")
    market.close("neg_1", "failed")
    _repeat_and_check_nothing_written(market, lambda: market.make_offer("neg_1", "o1", "node_1"))


def test_repeating_a_declined_make_offer_after_capacity_freed_holds_nothing(market):
    market.rfq("neg_a")
    market.rfq("neg_b")
    market.make_offer("neg_a", "oa", "node_1")
    market.make_offer("neg_b", "ob", "node_1")  # declined: node_1 is full
    market.handle(RejectOffer(command_id="reject-oa", negotiation_id="neg_a", offer_id="oa"))

    # The same command, delivered again, once node_1 has room.
    _repeat_and_check_nothing_written(market, lambda: market.make_offer("neg_b", "ob", "node_1"))

    assert market.node_state("node_1").holds == {}  # otherwise a hold no offer backs
    assert market.negotiation_state("neg_b").offers == {}


class _CrashingStore(MemoryEventStore):
    """Fails the next append to ``stream`` once, as if the process died before writing it."""

    stream: str | None = None

    def append(self, stream, expected_version, events, command_id):
        if stream == self.stream:
            self.stream = None
            raise RuntimeError("crash")
        return super().append(stream, expected_version, events, command_id)


def test_a_make_offer_repeated_after_a_crash_between_hold_and_offer_finishes_once():
    store = _CrashingStore()
    market = Market(store)
    market.farm()
    market.node("node_1")
    market.rfq("neg_1")
    store.stream = "nego-neg_1"  # the hold is written, the offer is not
    with pytest.raises(RuntimeError):
        market.make_offer("neg_1", "o1", "node_1")
    assert market.node_types("node_1")[-1] == "CapacityHeld"

    again = market.make_offer("neg_1", "o1", "node_1")

    assert [type(e).__name__ for e in again.events] == ["OfferMade"]
    assert market.node_types("node_1").count("CapacityHeld") == 1
    assert market.negotiation_state("neg_1").offers.keys() == {"o1"}


# --- expiry and ended holds ------------------------------------------------------------------


def test_accepting_after_the_hold_expired_is_refused_and_makes_no_contract(market):
    market.rfq("neg_1")
    market.make_offer("neg_1", "o1", "node_1", expires=timedelta(minutes=30))
    market.clock.advance(timedelta(minutes=31))
    before = market.store.current_position()

    with pytest.raises(CommandRejected) as refused:
        market.accept("neg_1", "o1")

    assert refused.value.reason == "offer_expired"
    assert market.contract_ids() == []
    assert market.store.current_position() == before
    assert not market.negotiation_state("neg_1").offers["o1"].live(market.clock.now())
    swept = market.handle(ExpireHolds(command_id="sweep", node_id="node_1"))
    assert [type(e).__name__ for e in swept.events] == ["HoldExpired"]
    assert market.node_state("node_1").holds == {}


def test_accepting_when_the_node_dropped_the_hold_withdraws_the_offer(market):
    market.rfq("neg_1")
    market.make_offer("neg_1", "o1", "node_1")
    market.handle(ChangeNodeStatus(command_id="down", node_id="node_1", status=NodeStatus.DOWN))
    market.handle(ChangeNodeStatus(command_id="up", node_id="node_1", status=NodeStatus.UP))

    with pytest.raises(CommandRejected) as refused:
        market.accept("neg_1", "o1")

    assert refused.value.reason == "hold_ended"
    assert market.contract_ids() == []
    assert market.negotiation_types("neg_1")[-1] == "OfferWithdrawn"
    assert market.negotiation_state("neg_1").offers["o1"].status == "withdrawn"


def test_expire_holds_frees_the_node_for_a_new_offer(market):
    market.rfq("neg_a")
    market.make_offer("neg_a", "oa", "node_1", expires=timedelta(minutes=5))
    market.clock.advance(timedelta(minutes=5))

    swept = market.handle(ExpireHolds(command_id="sweep-1", node_id="node_1"))

    assert [(type(e).__name__, e.hold_id) for e in swept.events] == [("HoldExpired", "oa")]
    market.rfq("neg_b")
    assert [type(e).__name__ for e in market.make_offer("neg_b", "ob", "node_1").events] == [
        "CapacityHeld",
        "OfferMade",
    ]


def test_a_new_offer_expires_the_overdue_hold_it_replaces(market):
    market.rfq("neg_a")
    market.make_offer("neg_a", "oa", "node_1", expires=timedelta(minutes=5))
    market.clock.advance(timedelta(minutes=6))
    market.rfq("neg_b")

    result = market.make_offer("neg_b", "ob", "node_1")

    assert [type(e).__name__ for e in result.events] == ["HoldExpired", "CapacityHeld", "OfferMade"]


# --- close, reject, approve ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "last"), [("failed", "NegotiationFailed"), ("expired", "NegotiationExpired")]
)
def test_closing_a_negotiation_releases_the_holds_of_its_open_offers(market, outcome, last):
    market.rfq("neg_1", replicas=2)
    market.make_offer("neg_1", "o1", "node_1")
    market.make_offer("neg_1", "o2", "node_2")
    market.make_offer("neg_1", "o3", "node_big")
    market.handle(RejectOffer(command_id="reject-o3", negotiation_id="neg_1", offer_id="o3"))

    result = market.close("neg_1", outcome)

    (closed,) = result.events
    assert type(closed).__name__ == last
    assert closed.released_offers == ["o1", "o2"]
    for node_id, hold_id in [("node_1", "o1"), ("node_2", "o2")]:
        released = market.events(nodes.node_stream(node_id))[-1]
        assert isinstance(released, HoldReleased)
        assert released.hold_id == hold_id
        assert market.node_state(node_id).holds == {}
    assert market.node_types("node_big").count("HoldReleased") == 1  # by the reject only


def test_a_failed_close_keeps_its_reason(market):
    market.rfq("neg_1")
    result = market.handle(
        CloseNegotiation(
            command_id="close", negotiation_id="neg_1", outcome="failed", reason="too dear"
        )
    )
    (failed,) = result.events
    assert isinstance(failed, NegotiationFailed)
    assert failed.reason == "too dear"


def test_closing_as_awarded_without_an_accepted_offer_is_refused(market):
    market.rfq("neg_1")
    market.make_offer("neg_1", "o1", "node_1")
    with pytest.raises(CommandRejected) as refused:
        market.close("neg_1", "awarded")
    assert refused.value.reason == "nothing_accepted"
    assert market.node_state("node_1").holds.keys() == {"o1"}


@pytest.mark.parametrize("outcome", ["failed", "expired"])
def test_a_negotiation_with_an_accepted_offer_cannot_close_but_as_awarded(market, outcome):
    """A restarted offtaker may decide a close before it sees an acceptance its predecessor
    sent: a failure would hide the contract from it, and it would ask for the replica again
    (test_host_crash saw an offtaker with 3 and another with 4 contracts of 2)."""
    market.rfq("neg_1", replicas=2)  # stays open after one accept
    market.make_offer("neg_1", "o1", "node_1")
    market.accept("neg_1", "o1")
    before = market.store.current_position()

    with pytest.raises(CommandRejected) as refused:
        market.close("neg_1", outcome)

    assert refused.value.reason == "offers_accepted"
    assert market.store.current_position() == before
    (awarded,) = market.close("neg_1", "awarded").events
    assert isinstance(awarded, NegotiationAwarded)
    assert awarded.contract_ids == [ctr("neg_1", "o1")]


def test_rejecting_an_offer_withdraws_it_and_releases_its_hold(market):
    market.rfq("neg_1")
    market.make_offer("neg_1", "o1", "node_1")

    result = market.handle(
        RejectOffer(command_id="reject", negotiation_id="neg_1", offer_id="o1", reason="no")
    )

    (withdrawn,) = result.events
    assert isinstance(withdrawn, OfferWithdrawn)
    assert withdrawn.reason == "no"
    released = market.events("node-node_1")[-1]
    assert isinstance(released, HoldReleased)
    assert (released.hold_id, released.reason) == ("o1", "no")
    assert market.node_state("node_1").free(market.clock.now()) == SHAPE


def test_an_offer_awaiting_approval_is_accepted_only_after_the_farmer_approves(market):
    market.rfq("neg_1")
    market.make_offer("neg_1", "o1", "node_1", firm=False)
    before = market.store.current_position()

    with pytest.raises(CommandRejected) as refused:
        market.accept("neg_1", "o1", command_id="accept-early")
    assert refused.value.reason == "awaiting_approval"
    assert market.store.current_position() == before
    assert market.contract_ids() == []

    approved = market.handle(
        ApproveOffer(command_id="approve", negotiation_id="neg_1", offer_id="o1")
    )
    assert [type(e).__name__ for e in approved.events] == ["OfferApproved"]

    result = market.accept("neg_1", "o1")
    assert [type(e).__name__ for e in result.events][:2] == ["OfferAccepted", "ContractCreated"]
    assert market.contract_ids() == [ctr("neg_1", "o1")]


# --- refusals that give the hold back ------------------------------------------------------


def test_an_offer_after_the_deadline_is_refused_and_its_hold_given_back(market):
    market.rfq("neg_1", deadline=timedelta(minutes=10))
    market.clock.advance(timedelta(minutes=10))

    with pytest.raises(CommandRejected) as refused:
        market.make_offer("neg_1", "o1", "node_1")

    assert refused.value.reason == "too_late"
    assert market.node_types("node_1") == ["NodeRegistered", "CapacityHeld", "HoldReleased"]
    assert market.node_state("node_1").holds == {}
    assert market.negotiation_state("neg_1").offers == {}


def test_an_offer_from_a_farm_not_invited_is_refused_and_its_hold_given_back(market):
    market.farm("farm_2")
    market.node("node_f2", farm_id="farm_2")
    market.rfq("neg_1", invited=("farm_1",))

    with pytest.raises(CommandRejected) as refused:
        market.make_offer("neg_1", "o1", "node_f2", farm_id="farm_2")

    assert refused.value.reason == "not_invited"
    assert market.node_state("node_f2").holds == {}


def test_an_offer_on_another_farms_node_is_refused_before_holding(market):
    market.farm("farm_2")
    market.rfq("neg_1")
    before = market.store.current_position()
    with pytest.raises(CommandRejected) as refused:
        market.make_offer("neg_1", "o1", "node_1", farm_id="farm_2")
    assert refused.value.reason == "not_your_node"
    assert market.store.current_position() == before


def test_an_offer_that_would_expire_at_once_is_refused(market):
    market.rfq("neg_1")
    with pytest.raises(CommandRejected) as refused:
        market.make_offer("neg_1", "o1", "node_1", expires=timedelta(0))
    assert refused.value.reason == "expired"
    assert market.node_state("node_1").holds == {}


def test_an_offer_id_reused_under_another_command_is_a_duplicate_hold(market):
    market.rfq("neg_1")
    market.make_offer("neg_1", "o1", "node_big")
    with pytest.raises(CommandRejected) as refused:
        market.make_offer("neg_1", "o1", "node_big", command_id="another-attempt")
    assert refused.value.reason == "duplicate_hold"


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda m: m.make_offer("neg_x", "o1", "node_1"), "unknown_negotiation"),
        (lambda m: m.node("node_9", farm_id="farm_9"), "unknown_farm"),
        (lambda m: m.handle(_register_farm("farm_1", "farm-again")), "already_registered"),
        (
            lambda m: m.handle(
                SetFarmerPolicy(
                    command_id="p",
                    farm_id="farm_9",
                    policy=FarmerPolicy(price_cu_hour=usd("0.05")),
                )
            ),
            "unknown_farm",
        ),
        (
            lambda m: m.handle(
                ReceiveFiatPayment(
                    command_id="pay",
                    provider="stripe",
                    provider_event_id="evt_1",
                    offtaker_id="off_1",
                    amount=Money.of("10", "USD"),
                )
            ),
            "unsupported",
        ),
    ],
    ids=["unknown_negotiation", "unknown_farm", "farm_twice", "policy_unknown_farm", "payment"],
)
def test_commands_the_market_refuses(market, build, reason):
    before = market.store.current_position()
    with pytest.raises(CommandRejected) as refused:
        build(market)
    assert refused.value.reason == reason
    assert market.store.current_position() == before


def _register_farm(farm_id: str, command_id: str) -> RegisterFarm:
    return RegisterFarm(
        command_id=command_id,
        farm_id=farm_id,
        name="again",
        grid=Grid.GRID3,
        country="BE",
        region="europe",
    )


# --- contracts ------------------------------------------------------------------------------


def test_cancelling_a_contract_frees_the_node_for_a_new_one(market):
    market.rfq("neg_a")
    market.make_offer("neg_a", "oa", "node_1")
    market.accept("neg_a", "oa")
    market.rfq("neg_b")
    assert isinstance(market.make_offer("neg_b", "ob", "node_1").events[0], OfferDeclined)

    cancelled = market.handle(
        CancelContract(
            command_id="cancel", contract_id=ctr("neg_a", "oa"), node_id="node_1", reason="done"
        )
    )

    assert [type(e).__name__ for e in cancelled.events] == ["ContractCancelled"]
    assert market.node_state("node_1").committed == Resources()
    market.rfq("neg_c")
    assert [type(e).__name__ for e in market.make_offer("neg_c", "oc", "node_1").events] == [
        "CapacityHeld",
        "OfferMade",
    ]


def test_an_accept_the_node_refuses_voids_the_acceptance_and_gives_the_hold_back(
    market, monkeypatch
):
    """Whatever the node's reason, the acceptance is voided and the offer's hold released."""
    market.rfq("neg_1")
    market.make_offer("neg_1", "o1", "node_big")

    def refuse(self, contract, now):
        raise Rejected("node_says_no", "the node refuses this contract")

    monkeypatch.setattr(nodes.NodeState, "commit", refuse)
    with pytest.raises(CommandRejected) as refused:
        market.accept("neg_1", "o1")

    assert refused.value.reason == "node_says_no"
    assert market.negotiation_types("neg_1")[-2:] == ["OfferAccepted", "OfferWithdrawn"]
    withdrawn = market.events("nego-neg_1")[-1]
    assert isinstance(withdrawn, OfferWithdrawn)
    assert "refuses" in withdrawn.reason
    assert market.negotiation_state("neg_1").offers["o1"].status == "withdrawn"
    assert market.node_types("node_big") == ["NodeRegistered", "CapacityHeld", "HoldReleased"]
    assert market.node_state("node_big").holds == {}  # a withdrawn offer holds nothing
    assert market.contract_ids() == []


def test_an_accept_after_the_node_went_down_is_voided_and_frees_the_replica(market):
    market.rfq("neg_1", replicas=1)
    market.make_offer("neg_1", "o1", "node_1")
    market.make_offer("neg_1", "o2", "node_2")
    market.handle(ChangeNodeStatus(command_id="down", node_id="node_1", status=NodeStatus.DOWN))

    with pytest.raises(CommandRejected) as refused:
        market.accept("neg_1", "o1")

    assert refused.value.reason == "hold_ended"
    assert market.negotiation_types("neg_1") == [
        "RfqIssued",
        "OfferMade",
        "OfferMade",
        "OfferAccepted",
        "OfferWithdrawn",
    ]
    assert market.node_types("node_1") == [
        "NodeRegistered",
        "CapacityHeld",
        "NodeStatusChanged",
        "HoldReleased",
    ]
    assert "ContractCreated" not in market.node_types("node_1")
    state = market.negotiation_state("neg_1")
    assert (state.status, state.accepted) == ("open", [])
    assert market.node_state("node_1").holds == {}

    # The voided acceptance gave its replica back: the other offer takes it.
    result = market.accept("neg_1", "o2")

    assert [type(e).__name__ for e in result.events] == [
        "OfferAccepted",
        "ContractCreated",
        "ReplicaPlaced",
        "NegotiationAwarded",
    ]
    (award,) = of_type(result.events, NegotiationAwarded)
    assert award.contract_ids == [ctr("neg_1", "o2")]
    assert market.contract_ids() == [ctr("neg_1", "o2")]
    assert market.negotiation_state("neg_1").offers["o1"].status == "withdrawn"


def test_a_voided_accept_repeated_is_a_duplicate_and_voids_nothing_more(market):
    market.rfq("neg_1")
    market.make_offer("neg_1", "o1", "node_1")
    market.handle(ChangeNodeStatus(command_id="down", node_id="node_1", status=NodeStatus.DOWN))
    with pytest.raises(CommandRejected):
        market.accept("neg_1", "o1")

    _repeat_and_check_nothing_written(market, lambda: market.accept("neg_1", "o1"))

    with pytest.raises(CommandRejected) as again:
        market.accept("neg_1", "o1", command_id="another-try")
    assert again.value.reason == "offer_expired"  # withdrawn: it cannot be accepted again


def test_contract_ids_are_derived_and_unique_across_the_market(market):
    market.rfq("neg_a")
    market.rfq("neg_b")
    market.make_offer("neg_a", "o1", "node_1")
    market.make_offer("neg_b", "o1", "node_2")  # offer ids are unique per negotiation only

    market.accept("neg_a", "o1")
    market.accept("neg_b", "o1")

    assert market.contract_ids() == ["ctr.neg_a.o1", "ctr.neg_b.o1"]
    assert market.node_state("node_1").contracts.keys() == {"ctr.neg_a.o1"}
    assert market.node_state("node_2").contracts.keys() == {"ctr.neg_b.o1"}
    accepted = [e for e in market.all_events() if isinstance(e, OfferAccepted)]
    assert [e.contract_id for e in accepted] == market.contract_ids()


def test_an_accept_offer_cannot_name_its_contract():
    with pytest.raises(ValidationError):
        AcceptOffer(command_id="a", negotiation_id="neg_a", offer_id="o1", contract_id="ctr_1")
    assert "contract_id" not in AcceptOffer.model_fields


# --- concurrency ---------------------------------------------------------------------------


class _InterleavingStore(MemoryEventStore):
    """Runs ``action`` once, just before the first append to ``stream``: a deterministic race."""

    stream: str | None = None
    action = None

    def append(self, stream, expected_version, events, command_id):
        if stream == self.stream and self.action is not None:
            action, self.action = self.action, None
            action()
        return super().append(stream, expected_version, events, command_id)


def test_two_accepts_racing_for_the_last_replica_leave_no_orphan_contract():
    store = _InterleavingStore()
    market = Market(store)
    market.farm()
    market.node("node_1")
    market.node("node_2")
    market.rfq("neg_1", replicas=1)
    market.make_offer("neg_1", "o1", "node_1")
    market.make_offer("neg_1", "o2", "node_2")
    # o2's accept has decided on the negotiation; just before it records the acceptance,
    # o1's accept runs from start to finish and awards the negotiation.
    store.stream = "nego-neg_1"
    store.action = lambda: market.accept("neg_1", "o1")

    with pytest.raises(CommandRejected) as refused:
        market.accept("neg_1", "o2")

    assert refused.value.reason == "negotiation_closed"  # decided again on fresh state
    accepted = {o.contract_id for o in market.negotiation_state("neg_1").accepted}
    assert accepted == {ctr("neg_1", "o1")}
    assert set(market.contract_ids()) == accepted
    assert market.node_state("node_2").committed == Resources()
    assert "ContractCreated" not in market.node_types("node_2")  # the node was never asked
    assert market.node_state("node_2").holds == {}  # released by the award


def test_concurrent_offers_on_one_node_never_overcommit_it(tmp_path):
    store = SqliteEventStore(tmp_path / "events.db")
    try:
        market = Market(store)
        market.farm()
        capacity = 5
        market.node("node_1", SHAPE.times(capacity))
        contenders = 16
        for i in range(contenders):
            market.rfq(f"neg_{i}")
        service = MarketService(store, market.clock)  # one fresh service, shared by every thread
        market.service = service
        barrier = threading.Barrier(contenders)
        results: dict[int, object] = {}

        def offer(i: int) -> None:
            barrier.wait()
            try:
                results[i] = market.make_offer(f"neg_{i}", f"o{i}", "node_1")
            except Exception as error:  # surfaced by the assertion below
                results[i] = error

        threads = [threading.Thread(target=offer, args=(i,)) for i in range(contenders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert all(not t.is_alive() for t in threads)
        errors = [r for r in results.values() if isinstance(r, Exception)]
        assert errors == []
        kinds = sorted(type(r.events[-1]).__name__ for r in results.values())
        assert kinds.count("OfferMade") == capacity
        assert kinds.count("OfferDeclined") == contenders - capacity
        for result in results.values():
            last = result.events[-1]
            if isinstance(last, OfferDeclined):
                assert last.reasons == [DeclineReason.INSUFFICIENT_CAPACITY]

        state = market.node_state("node_1")
        assert (state.committed + state.held).fits_in(state.total)
        assert len(state.holds) == capacity
        made = [i for i in range(contenders) if "OfferMade" in market.negotiation_types(f"neg_{i}")]
        assert sorted(f"o{i}" for i in made) == sorted(state.holds)
    finally:
        store.close()


def test_concurrent_accepts_on_one_node_commit_each_hold_once(tmp_path):
    store = SqliteEventStore(tmp_path / "events.db")
    try:
        market = Market(store)
        market.farm()
        count = 6
        market.node("node_1", SHAPE.times(count))
        for i in range(count):
            market.rfq(f"neg_{i}")
            market.make_offer(f"neg_{i}", f"o{i}", "node_1")
        barrier = threading.Barrier(count)
        errors: list[BaseException] = []

        def accept(i: int) -> None:
            barrier.wait()
            try:
                market.accept(f"neg_{i}", f"o{i}")
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=accept, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert errors == []
        state = market.node_state("node_1")
        assert state.holds == {}
        assert sorted(state.contracts) == sorted(ctr(f"neg_{i}", f"o{i}") for i in range(count))
        assert state.committed == state.total
        assert all(market.negotiation_state(f"neg_{i}").status == "awarded" for i in range(count))
    finally:
        store.close()


# --- open bugs ------------------------------------------------------------------------------


def test_an_accept_offer_repeated_after_a_crash_before_the_contract_finishes_it():
    store = _CrashingStore()
    market = Market(store)
    market.farm()
    market.node("node_1")
    market.rfq("neg_1")
    market.make_offer("neg_1", "o1", "node_1")
    store.stream = "node-node_1"  # OfferAccepted is written, ContractCreated is not
    with pytest.raises(RuntimeError):
        market.accept("neg_1", "o1")
    assert market.negotiation_types("neg_1")[-1] == "OfferAccepted"

    market.accept("neg_1", "o1")  # the same command, delivered again

    assert market.contract_ids() == [ctr("neg_1", "o1")]
    assert market.negotiation_state("neg_1").status == "awarded"


def test_an_award_names_only_contracts_that_exist():
    store = _InterleavingStore()
    market = Market(store)
    market.farm()
    market.node("node_1")
    market.node("node_2")
    market.rfq("neg_1", replicas=2)
    market.make_offer("neg_1", "o1", "node_1")
    market.make_offer("neg_1", "o2", "node_2")

    def meanwhile() -> None:  # o1 is accepted and about to commit on node_1
        market.handle(ChangeNodeStatus(command_id="down", node_id="node_1", status=NodeStatus.DOWN))
        market.accept("neg_1", "o2")

    store.stream = "node-node_1"
    store.action = meanwhile
    with pytest.raises(CommandRejected):
        market.accept("neg_1", "o1")

    created = set(market.contract_ids())
    assert created == {ctr("neg_1", "o2")}
    awards = [e for e in market.events("nego-neg_1") if isinstance(e, NegotiationAwarded)]
    assert all(set(a.contract_ids) <= created for a in awards), awards


@pytest.mark.parametrize("replicas", [1, 2], ids=["awarded", "still_open"])
def test_rejecting_an_accepted_offer_changes_nothing(market, replicas):
    market.rfq("neg_1", replicas=replicas)
    market.make_offer("neg_1", "o1", "node_1")
    market.accept("neg_1", "o1")
    before = market.store.current_position()

    with contextlib.suppress(CommandRejected):  # refusing it is as good as ignoring it
        market.handle(RejectOffer(command_id="reject", negotiation_id="neg_1", offer_id="o1"))

    assert market.store.current_position() == before
    state = market.negotiation_state("neg_1")
    assert [o.contract_id for o in state.accepted] == [ctr("neg_1", "o1")]
    assert market.node_state("node_1").contracts.keys() == {ctr("neg_1", "o1")}


# --- SLA outcomes, placements and scale decisions, on the SQLite store ------------------------

H = timedelta(hours=1)
#: 99% uptime; half the price of each hour down is refunded when it is missed
PENALISED = Sla(uptime_pct=Decimal(99), penalty_pct=Decimal(50))


@pytest.fixture
def on_sqlite(tmp_path) -> Iterator[Market]:
    clock = ManualClock(T0)
    store = SqliteEventStore(tmp_path / "events.db", clock)
    m = Market(store, clock)
    m.farm("farm_1")
    m.node("node_1")
    m.node("node_2")
    yield m
    store.close()


def contract_on(
    market: Market, negotiation_id: str, offer_id: str, node_id: str, **accept: object
) -> str:
    """A contract with the PENALISED SLA, negotiated at 0.02 USD/h; its id."""
    market.rfq(negotiation_id)
    market.handle(
        MakeOffer(
            command_id=f"offer-{offer_id}",
            negotiation_id=negotiation_id,
            offer_id=offer_id,
            farm_id="farm_1",
            node_id=node_id,
            price_hour=usd("0.02"),
            term_hours=720,
            sla=PENALISED,
            expires_at=market.clock.now() + timedelta(minutes=30),
        )
    )
    market.handle(
        AcceptOffer(
            command_id=f"accept-{offer_id}",
            negotiation_id=negotiation_id,
            offer_id=offer_id,
            **accept,
        )
    )
    return ctr(negotiation_id, offer_id)


def set_status(market: Market, node_id: str, status: NodeStatus) -> None:
    command_id = f"{node_id}-{status.value}-{market.clock.now():%H%M}"
    market.handle(ChangeNodeStatus(command_id=command_id, node_id=node_id, status=status))


def cancel(market: Market, contract_id: str, node_id: str = "node_1"):
    return market.handle(
        CancelContract(
            command_id=f"cancel-{contract_id}", contract_id=contract_id, node_id=node_id, reason="x"
        )
    )


def test_a_status_change_records_the_time_it_was_made(on_sqlite):
    on_sqlite.clock.advance(timedelta(minutes=7))

    [changed] = on_sqlite.handle(
        ChangeNodeStatus(command_id="down", node_id="node_1", status=NodeStatus.DOWN)
    ).events

    assert isinstance(changed, NodeStatusChanged)
    assert changed.changed_at == T0 + timedelta(minutes=7)
    assert on_sqlite.events("node-node_1")[-1] == changed


def test_cancelling_after_the_node_was_down_records_the_sla_outcome_in_the_same_append(on_sqlite):
    contract_id = contract_on(on_sqlite, "neg_1", "o1", "node_1")
    on_sqlite.clock.advance(10 * H)
    set_status(on_sqlite, "node_1", NodeStatus.DOWN)
    on_sqlite.clock.advance(H)

    result = cancel(on_sqlite, contract_id)  # still down: the outage runs until now

    cancelled, outcome = result.events
    assert isinstance(cancelled, ContractCancelled)
    assert isinstance(outcome, SlaOutcomeRecorded)
    # 1 h down in 11 h: 90.9090909% < 99%. A Grid 3 contract is billed at genesis prices,
    # 0.01125 USD/h (not the 0.02 negotiated): 0.01125 * 1 * 50% = 0.005625 USD
    assert (outcome.started_at, outcome.ended_at) == (T0, T0 + 11 * H)
    assert (outcome.period_hours, outcome.hours_down) == (Decimal(11), Decimal(1))
    assert outcome.uptime_pct == Decimal("90.9090909")
    assert outcome.met is False
    assert outcome.penalty == usd("0.005625")
    rows = on_sqlite.store.read_stream("node-node_1")[-2:]
    assert [r.type for r in rows] == ["ContractCancelled", "SlaOutcomeRecorded"]
    assert {r.envelope().causation_id for r in rows} == {f"cancel-{contract_id}"}
    assert rows[1].position == rows[0].position + 1
    _repeat_and_check_nothing_written(on_sqlite, lambda: cancel(on_sqlite, contract_id))


def test_cancelling_after_the_node_came_back_counts_only_the_outage(on_sqlite):
    contract_id = contract_on(on_sqlite, "neg_1", "o1", "node_1")
    on_sqlite.clock.advance(100 * H)
    set_status(on_sqlite, "node_1", NodeStatus.DOWN)
    on_sqlite.clock.advance(H)
    set_status(on_sqlite, "node_1", NodeStatus.UP)
    on_sqlite.clock.advance(99 * H)

    [_, outcome] = cancel(on_sqlite, contract_id).events

    # 1 h in 200 h: 99.5%, the SLA is met and nothing is owed
    assert isinstance(outcome, SlaOutcomeRecorded)
    assert (outcome.hours_down, outcome.uptime_pct, outcome.met) == (
        Decimal(1),
        Decimal("99.5"),
        True,
    )
    assert outcome.penalty == usd("0")


def test_the_penalty_is_priced_at_the_services_pricing_policy(on_sqlite):
    on_sqlite.service = MarketService(on_sqlite.store, on_sqlite.clock, pricing=MANUAL)
    contract_id = contract_on(on_sqlite, "neg_1", "o1", "node_1")
    on_sqlite.clock.advance(10 * H)
    set_status(on_sqlite, "node_1", NodeStatus.DOWN)
    on_sqlite.clock.advance(H)

    [_, outcome] = cancel(on_sqlite, contract_id).events

    # manual prices: CU 1 x 0.03056 + SU 0.25 x 0.01944 = 0.03542 USD/h; half of 1 h of it
    assert isinstance(outcome, SlaOutcomeRecorded)
    assert outcome.penalty == usd("0.01771")


def test_an_accept_records_where_the_replica_went_and_its_scores(on_sqlite):
    scores = {"cost": Decimal("0.3"), "uptime": Decimal("0.199")}

    contract_id = contract_on(on_sqlite, "neg_1", "o1", "node_1", scores=scores)

    assert on_sqlite.node_types("node_1")[-2:] == ["ContractCreated", "ReplicaPlaced"]
    placed = on_sqlite.events("node-node_1")[-1]
    assert placed == ReplicaPlaced(
        offtaker_id="off_1",
        workload_id="wl-neg_1",
        replica_id=contract_id,
        contract_id=contract_id,
        farm_id="farm_1",
        node_id="node_1",
        grid=Grid.GRID3,
        # billed 0.01125 USD/h; SU 0.25 x 0.005 priced out, over 1 CU
        price_cu_hour=usd("0.01"),
        scores=scores,
        total=Decimal("0.499"),
    )
    repeat = AcceptOffer(
        command_id="accept-o1", negotiation_id="neg_1", offer_id="o1", scores=scores
    )
    _repeat_and_check_nothing_written(on_sqlite, lambda: on_sqlite.handle(repeat))


def test_an_accept_without_scores_records_a_placement_without_a_total(on_sqlite):
    contract_on(on_sqlite, "neg_1", "o1", "node_1")

    placed = on_sqlite.events("node-node_1")[-1]

    assert isinstance(placed, ReplicaPlaced)
    assert (placed.scores, placed.total) == ({}, None)


def test_an_accept_that_replaces_a_contract_records_the_move_and_the_old_one_ends(on_sqlite):
    old = contract_on(on_sqlite, "neg_1", "o1", "node_1")
    on_sqlite.clock.advance(5 * H)
    set_status(on_sqlite, "node_1", NodeStatus.DOWN)
    on_sqlite.clock.advance(timedelta(minutes=6))

    new = contract_on(
        on_sqlite, "neg_2", "o2", "node_2", replaces_contract_id=old, replaces_node_id="node_1"
    )

    assert on_sqlite.node_types("node_2")[-3:] == [
        "ContractCreated",
        "ReplicaPlaced",
        "ReplicaMigrated",
    ]
    moved = on_sqlite.events("node-node_2")[-1]
    assert moved == ReplicaMigrated(
        offtaker_id="off_1",
        workload_id="wl-neg_2",
        replica_id=old,
        from_node_id="node_1",
        to_node_id="node_2",
        from_contract_id=old,
        to_contract_id=new,
        reason="node_down",
    )
    [_, outcome] = cancel(on_sqlite, old).events
    assert isinstance(outcome, SlaOutcomeRecorded)
    assert outcome.hours_down == Decimal("0.1")  # the 6 minutes the move took


# -- scale decisions -----------------------------------------------------------------------

CPU = ScalingPolicy(metric="cpu", target=Decimal("0.5"), min_replicas=1, max_replicas=4)


def set_mandate(market: Market, web_autoscale: ScalingPolicy | None = CPU, n: int = 1) -> None:
    mandate = Mandate(
        workloads=[
            WorkloadSpec(workload_id="web", resources=SHAPE, replicas=2, autoscale=web_autoscale),
            WorkloadSpec(workload_id="batch", resources=SHAPE, replicas=1),
        ],
        budget_month=usd("100"),
        max_price_cu_hour=usd("0.05"),
    )
    market.handle(
        SetOfftakerMandate(command_id=f"mandate-{n}", offtaker_id="off_1", mandate=mandate)
    )


def decision(
    desired: int, at: datetime = T0, workload_id: str = "web", offtaker_id: str = "off_1"
) -> ScaleDecided:
    return ScaleDecided(
        offtaker_id=offtaker_id,
        workload_id=workload_id,
        current_replicas=2,
        desired_replicas=desired,
        metric="cpu",
        value=Decimal("0.9"),
        target=Decimal("0.5"),
        reason="scale_up",
        decided_at=at,
    )


def record(market: Market, decided: ScaleDecided, command_id: str = "decide"):
    return market.handle(RecordScaleDecision(command_id=command_id, decision=decided))


def test_a_scale_decision_within_the_mandate_is_recorded_on_the_workloads_stream(on_sqlite):
    set_mandate(on_sqlite)

    result = record(on_sqlite, decision(4))

    assert result.events == [decision(4)]
    assert scaling_stream("off_1", "web") == "scaling-off_1-web"
    assert on_sqlite.events("scaling-off_1-web") == [decision(4)]
    _repeat_and_check_nothing_written(on_sqlite, lambda: record(on_sqlite, decision(4)))


def test_a_decision_as_new_as_the_last_is_recorded_an_older_one_is_stale(on_sqlite):
    set_mandate(on_sqlite)
    record(on_sqlite, decision(3, T0 + H), "first")

    assert record(on_sqlite, decision(4, T0 + H), "same-time").events == [decision(4, T0 + H)]
    before = on_sqlite.store.current_position()
    with pytest.raises(CommandRejected) as refused:
        record(on_sqlite, decision(2, T0 + H - timedelta(seconds=1)), "older")
    assert refused.value.reason == "stale_decision"
    assert on_sqlite.store.current_position() == before


@pytest.mark.parametrize(
    ("decided", "reason"),
    [
        (decision(2, offtaker_id="nobody"), "unknown_offtaker"),
        (decision(2, workload_id="api"), "unknown_workload"),
        (decision(2, workload_id="batch"), "not_autoscaled"),
        (decision(5), "out_of_bounds"),
        (decision(0), "out_of_bounds"),
    ],
    ids=["unknown_offtaker", "unknown_workload", "not_autoscaled", "above_max", "below_min"],
)
def test_a_scale_decision_the_mandate_does_not_allow_is_refused_and_writes_nothing(
    on_sqlite, decided, reason
):
    set_mandate(on_sqlite)
    before = on_sqlite.store.current_position()

    with pytest.raises(CommandRejected) as refused:
        record(on_sqlite, decided)

    assert refused.value.reason == reason
    assert on_sqlite.store.current_position() == before
    assert (
        on_sqlite.store.stream_version(scaling_stream(decided.offtaker_id, decided.workload_id))
        == 0
    )


def test_a_scale_decision_follows_the_last_mandate_set(on_sqlite):
    set_mandate(on_sqlite)
    record(on_sqlite, decision(3), "while-autoscaled")
    set_mandate(on_sqlite, web_autoscale=None, n=2)

    with pytest.raises(CommandRejected) as refused:
        record(on_sqlite, decision(3, T0 + H), "after")

    assert refused.value.reason == "not_autoscaled"
