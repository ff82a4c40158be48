"""The negotiation aggregate: RFQ -> offers -> awarded | failed | expired, given/when/then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from hero.domain import negotiation
from hero.domain.negotiation import NegotiationState, contract_id_for
from schemas import (
    CounterAccepted,
    CounterOffered,
    CounterRejected,
    DeclineRfq,
    Grid,
    Money,
    NegotiationAwarded,
    NegotiationExpired,
    NegotiationFailed,
    OfferAccepted,
    OfferApproved,
    OfferDeclined,
    OfferMade,
    OfferWithdrawn,
    Resources,
    RfqIssued,
    Sla,
)
from schemas.catalogue.common import DeclineReason
from tests.unit._gwt import given

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DEADLINE = NOW + timedelta(minutes=10)
OFFER_EXPIRES = NOW + timedelta(hours=1)
SHAPE = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def rfq(replicas: int = 1, invited: tuple[str, ...] = ()) -> RfqIssued:
    return RfqIssued(
        negotiation_id="neg_1",
        offtaker_id="off_1",
        workload_id="wl_1",
        resources=SHAPE,
        replicas=replicas,
        grids=[Grid.GRID3, Grid.GRID4],
        min_uptime_pct=Decimal("95"),
        max_price_cu_hour=usd("0.05"),
        term_hours=720,
        deadline=DEADLINE,
        invited_farms=list(invited),
    )


RFQ = rfq()


def offer(
    offer_id: str = "o1",
    farm_id: str = "farm_1",
    *,
    firm: bool = True,
    price: str = "0.02",
    expires_at: datetime = OFFER_EXPIRES,
    resources: Resources = SHAPE,
) -> OfferMade:
    return OfferMade(
        negotiation_id="neg_1",
        offer_id=offer_id,
        farm_id=farm_id,
        node_id=f"node_{offer_id}",
        hold_id=offer_id,
        grid=Grid.GRID3,
        region="europe",
        uptime_pct=Decimal("99"),
        resources=resources,
        price_hour=usd(price),
        term_hours=720,
        sla=Sla(uptime_pct=Decimal("99")),
        firm=firm,
        expires_at=expires_at,
    )


def accepted(offer_id: str = "o1", price: str = "0.02") -> OfferAccepted:
    return OfferAccepted(
        negotiation_id="neg_1",
        offer_id=offer_id,
        farm_id="farm_1",
        contract_id=contract_id_for("neg_1", offer_id),
        price_hour=usd(price),
    )


def withdrawn(offer_id: str = "o1", reason: str = "x") -> OfferWithdrawn:
    return OfferWithdrawn(
        negotiation_id="neg_1", offer_id=offer_id, farm_id="farm_1", reason=reason
    )


def countered(offer_id: str = "o1", price: str = "0.015") -> CounterOffered:
    return CounterOffered(
        negotiation_id="neg_1", offer_id=offer_id, farm_id="farm_1", price_hour=usd(price)
    )


def counter_accepted(offer_id: str = "o1", price: str = "0.015") -> CounterAccepted:
    return CounterAccepted(
        negotiation_id="neg_1", offer_id=offer_id, farm_id="farm_1", price_hour=usd(price)
    )


def counter_rejected(offer_id: str = "o1") -> CounterRejected:
    return CounterRejected(
        negotiation_id="neg_1",
        offer_id=offer_id,
        farm_id="farm_1",
        reasons=[DeclineReason.BELOW_FLOOR],
    )


def failed(released: list[str]) -> NegotiationFailed:
    return NegotiationFailed(
        negotiation_id="neg_1",
        offtaker_id="off_1",
        reason="no acceptable offer",
        released_offers=released,
    )


def decline_command(*reasons: DeclineReason, detail: str = "") -> DeclineRfq:
    return DeclineRfq(
        command_id="cmd_decline",
        negotiation_id="neg_1",
        farm_id="farm_2",
        node_id="node_9",
        reasons=list(reasons),
        detail=detail,
    )


# --- issue ----------------------------------------------------------------------------------


def test_issuing_an_rfq_opens_the_negotiation():
    outcome = given(negotiation.fold).when(lambda s: s.issue(RFQ)).then(RFQ)
    assert outcome.state.status == "open"
    assert outcome.state.rfq == RFQ


def test_issuing_the_same_negotiation_twice_is_refused():
    given(negotiation.fold, RFQ).when(lambda s: s.issue(RFQ)).rejected("duplicate_negotiation")


@pytest.mark.parametrize(
    "decide",
    [
        lambda s: s.make_offer(offer(), NOW),
        lambda s: s.decline(decline_command(DeclineReason.BELOW_FLOOR)),
        lambda s: s.accept("o1", NOW),
        lambda s: s.close("failed", ""),
    ],
    ids=["make_offer", "decline", "accept", "close"],
)
def test_acting_on_a_negotiation_never_issued_is_refused_as_unknown(decide):
    given(negotiation.fold).when(decide).rejected("unknown_negotiation")


# --- offers ---------------------------------------------------------------------------------


def test_an_offer_in_time_for_the_asked_shape_is_recorded_as_open():
    outcome = given(negotiation.fold, RFQ).when(lambda s: s.make_offer(offer(), NOW)).then(offer())
    state = outcome.state.offers["o1"]
    assert (state.status, state.firm, state.counter, state.contract_id) == (
        "open",
        True,
        None,
        None,
    )
    assert state.price_hour == usd("0.02")
    assert state.live(NOW)
    assert not state.live(OFFER_EXPIRES)


def test_the_same_offer_id_twice_is_refused_as_duplicate_offer():
    given(negotiation.fold, RFQ, offer()).when(
        lambda s: s.make_offer(offer(farm_id="farm_2"), NOW)
    ).rejected("duplicate_offer")


def test_a_farm_not_invited_cannot_offer():
    invited = rfq(invited=("farm_2", "farm_3"))
    given(negotiation.fold, invited).when(lambda s: s.make_offer(offer(), NOW)).rejected(
        "not_invited"
    )
    given(negotiation.fold, invited).when(
        lambda s: s.make_offer(offer(farm_id="farm_3"), NOW)
    ).then(offer(farm_id="farm_3"))


def test_an_rfq_without_invitations_is_open_to_every_farm():
    given(negotiation.fold, RFQ).when(lambda s: s.make_offer(offer(farm_id="farm_z"), NOW)).then(
        offer(farm_id="farm_z")
    )


@pytest.mark.parametrize("now", [DEADLINE, DEADLINE + timedelta(seconds=1)])
def test_an_offer_at_or_after_the_deadline_is_too_late(now):
    given(negotiation.fold, RFQ).when(lambda s: s.make_offer(offer(), now)).rejected("too_late")


def test_an_offer_just_before_the_deadline_is_in_time():
    just_before = DEADLINE - timedelta(microseconds=1)
    given(negotiation.fold, RFQ).when(lambda s: s.make_offer(offer(), just_before)).then(offer())


@pytest.mark.parametrize(
    "resources",
    [SHAPE.times(2), Resources.from_gb(cru=2, mru_gb=4), SHAPE + Resources(ipv4=1)],
    ids=["two_replicas", "missing_ssd", "extra_ip"],
)
def test_an_offer_for_another_shape_is_a_resources_mismatch(resources):
    given(negotiation.fold, RFQ).when(
        lambda s: s.make_offer(offer(resources=resources), NOW)
    ).rejected("resources_mismatch")


def test_no_offer_once_the_negotiation_is_closed():
    given(negotiation.fold, RFQ, failed([])).when(lambda s: s.make_offer(offer(), NOW)).rejected(
        "negotiation_closed"
    )


# --- declines -------------------------------------------------------------------------------


def test_a_decline_is_recorded_with_its_reasons_by_farm():
    command = decline_command(
        DeclineReason.BELOW_FLOOR, DeclineReason.REGION_NOT_SERVED, detail="too cheap, too far"
    )
    outcome = given(negotiation.fold, RFQ).when(lambda s: s.decline(command))
    outcome.then(
        OfferDeclined(
            negotiation_id="neg_1",
            farm_id="farm_2",
            node_id="node_9",
            reasons=[DeclineReason.BELOW_FLOOR, DeclineReason.REGION_NOT_SERVED],
            detail="too cheap, too far",
        )
    )
    assert outcome.state.declines == {
        "farm_2": (DeclineReason.BELOW_FLOOR, DeclineReason.REGION_NOT_SERVED)
    }
    assert outcome.state.status == "open"


def test_a_decline_after_the_close_is_refused():
    given(negotiation.fold, RFQ, failed([])).when(
        lambda s: s.decline(decline_command(DeclineReason.INSUFFICIENT_CAPACITY))
    ).rejected("negotiation_closed")


# --- approve --------------------------------------------------------------------------------


def test_approving_an_offer_that_awaits_approval_makes_it_firm():
    outcome = given(negotiation.fold, RFQ, offer(firm=False)).when(lambda s: s.approve("o1", NOW))
    outcome.then(OfferApproved(negotiation_id="neg_1", offer_id="o1", farm_id="farm_1"))
    assert outcome.state.offers["o1"].firm is True


def test_approving_a_firm_offer_is_refused():
    given(negotiation.fold, RFQ, offer()).when(lambda s: s.approve("o1", NOW)).rejected(
        "already_firm"
    )


def test_approving_twice_is_refused_the_second_time():
    approved = OfferApproved(negotiation_id="neg_1", offer_id="o1", farm_id="farm_1")
    given(negotiation.fold, RFQ, offer(firm=False), approved).when(
        lambda s: s.approve("o1", NOW)
    ).rejected("already_firm")


def test_approving_an_expired_offer_is_refused():
    given(negotiation.fold, RFQ, offer(firm=False)).when(
        lambda s: s.approve("o1", OFFER_EXPIRES)
    ).rejected("offer_expired")


def test_approving_a_withdrawn_offer_is_refused():
    given(negotiation.fold, RFQ, offer(firm=False), withdrawn()).when(
        lambda s: s.approve("o1", NOW)
    ).rejected("offer_expired")


def test_approving_an_unknown_offer_is_refused():
    given(negotiation.fold, RFQ).when(lambda s: s.approve("o9", NOW)).rejected("unknown_offer")


# --- withdraw -------------------------------------------------------------------------------


def test_withdrawing_an_open_offer():
    outcome = given(negotiation.fold, RFQ, offer()).when(lambda s: s.withdraw("o1", "changed mind"))
    outcome.then(withdrawn(reason="changed mind"))
    assert outcome.state.offers["o1"].status == "withdrawn"
    assert not outcome.state.offers["o1"].live(NOW)


@pytest.mark.parametrize(
    "history",
    [
        [RFQ, offer(), withdrawn()],
        [RFQ, offer(), failed(["o1"])],
    ],
    ids=["withdrawn", "released"],
)
def test_withdrawing_an_offer_that_is_no_longer_open_writes_nothing(history):
    given(negotiation.fold, *history).when(lambda s: s.withdraw("o1", "x")).then_nothing()


def test_withdrawing_an_accepted_offer_changes_nothing():
    given(negotiation.fold, RFQ, offer(), accepted()).when(
        lambda s: s.withdraw("o1", "rejected by the farmer")
    ).then_nothing()


def test_voiding_an_accepted_offer_frees_the_acceptance():
    """The market voids an acceptance whose node refused the contract."""
    outcome = given(negotiation.fold, RFQ, offer(), accepted()).when(
        lambda s: s.void("o1", "hold_ended")
    )
    outcome.then(withdrawn(reason="hold_ended"))
    state = outcome.state
    assert state.offers["o1"].status == "withdrawn"
    assert state.accepted == []
    assert state.status == "open"


def test_a_voided_acceptance_frees_its_replica_for_another_offer():
    history = [RFQ, offer("o1"), offer("o2"), accepted("o1")]
    given(negotiation.fold, *history).when(lambda s: s.accept("o2", NOW)).rejected(
        "enough_accepted"
    )
    voided = [*history, withdrawn("o1", "node down")]
    given(negotiation.fold, *voided).when(lambda s: s.accept("o2", NOW)).then(accepted("o2"))
    given(negotiation.fold, *voided).when(lambda s: s.accept("o1", NOW)).rejected("offer_expired")


def test_the_contract_id_is_derived_from_the_negotiation_and_the_offer():
    assert contract_id_for("neg_1", "o1") == "ctr.neg_1.o1"
    assert contract_id_for("neg_1", "o1") != contract_id_for("neg_2", "o1")
    other = rfq().model_copy(update={"negotiation_id": "neg_2"})
    history = [other, offer().model_copy(update={"negotiation_id": "neg_2"})]
    (event,) = given(negotiation.fold, *history).when(lambda s: s.accept("o1", NOW)).events or []
    assert isinstance(event, OfferAccepted)
    assert event.contract_id == "ctr.neg_2.o1"


def test_withdrawing_an_unknown_offer_is_refused():
    given(negotiation.fold, RFQ).when(lambda s: s.withdraw("o9", "x")).rejected("unknown_offer")


# --- counter --------------------------------------------------------------------------------


def test_a_counter_below_the_ask_is_recorded():
    outcome = given(negotiation.fold, RFQ, offer()).when(
        lambda s: s.counter("o1", usd("0.015"), NOW)
    )
    outcome.then(countered())
    assert outcome.state.offers["o1"].counter == usd("0.015")
    assert outcome.state.offers["o1"].price_hour == usd("0.02")  # until the farmer accepts


@pytest.mark.parametrize("price", ["0.02", "0.0200000", "0.021"])
def test_a_counter_at_or_above_the_ask_is_refused(price):
    given(negotiation.fold, RFQ, offer()).when(lambda s: s.counter("o1", usd(price), NOW)).rejected(
        "not_below_ask"
    )


@pytest.mark.parametrize(
    "answer", [None, counter_accepted(), counter_rejected()], ids=["open", "accepted", "rejected"]
)
def test_an_offer_is_countered_once_only(answer):
    history = [RFQ, offer(), countered(), *([answer] if answer else [])]
    given(negotiation.fold, *history).when(lambda s: s.counter("o1", usd("0.01"), NOW)).rejected(
        "already_countered"
    )


def test_countering_an_expired_or_withdrawn_offer_is_refused():
    given(negotiation.fold, RFQ, offer()).when(
        lambda s: s.counter("o1", usd("0.01"), OFFER_EXPIRES)
    ).rejected("offer_expired")
    given(negotiation.fold, RFQ, offer(), withdrawn()).when(
        lambda s: s.counter("o1", usd("0.01"), NOW)
    ).rejected("offer_expired")


# --- answer counter -------------------------------------------------------------------------


def test_accepting_the_counter_makes_it_the_price():
    outcome = given(negotiation.fold, RFQ, offer(), countered()).when(
        lambda s: s.answer_counter("o1", True, [])
    )
    outcome.then(counter_accepted())
    assert outcome.state.offers["o1"].price_hour == usd("0.015")


def test_rejecting_the_counter_keeps_the_ask_and_defaults_to_below_floor():
    outcome = given(negotiation.fold, RFQ, offer(), countered()).when(
        lambda s: s.answer_counter("o1", False, [])
    )
    outcome.then(counter_rejected())
    assert outcome.state.offers["o1"].price_hour == usd("0.02")


def test_rejecting_the_counter_with_reasons_keeps_them():
    reasons = [DeclineReason.OFFTAKER_DENIED, DeclineReason.STANDING_TOO_LOW]
    given(negotiation.fold, RFQ, offer(), countered()).when(
        lambda s: s.answer_counter("o1", False, reasons)
    ).then(
        CounterRejected(negotiation_id="neg_1", offer_id="o1", farm_id="farm_1", reasons=reasons)
    )


@pytest.mark.parametrize(
    "history",
    [
        [RFQ, offer()],
        [RFQ, offer(), countered(), counter_accepted()],
        [RFQ, offer(), countered(), counter_rejected()],
    ],
    ids=["never_countered", "already_accepted", "already_rejected"],
)
def test_answering_without_an_open_counter_is_refused(history):
    given(negotiation.fold, *history).when(lambda s: s.answer_counter("o1", True, [])).rejected(
        "no_open_counter"
    )


# --- accept ---------------------------------------------------------------------------------


def test_accepting_a_firm_live_offer_at_its_ask():
    outcome = given(negotiation.fold, RFQ, offer()).when(lambda s: s.accept("o1", NOW))
    outcome.then(accepted())
    state = outcome.state
    assert state.offers["o1"].status == "accepted"
    assert state.offers["o1"].contract_id == "ctr.neg_1.o1"  # derived: unique market-wide
    assert [o.offer.offer_id for o in state.accepted] == ["o1"]
    assert state.status == "open"  # the award is a separate decision


def test_the_accepted_price_is_the_counter_when_the_farmer_accepted_it():
    history = [RFQ, offer(), countered(), counter_accepted()]
    given(negotiation.fold, *history).when(lambda s: s.accept("o1", NOW)).then(
        accepted(price="0.015")
    )


def test_the_accepted_price_is_the_ask_when_the_farmer_rejected_the_counter():
    history = [RFQ, offer(), countered(), counter_rejected()]
    given(negotiation.fold, *history).when(lambda s: s.accept("o1", NOW)).then(accepted())


def test_an_offer_with_an_unanswered_counter_cannot_be_accepted():
    given(negotiation.fold, RFQ, offer(), countered()).when(lambda s: s.accept("o1", NOW)).rejected(
        "counter_pending"
    )


def test_an_offer_awaiting_approval_cannot_be_accepted_until_approved():
    history = [RFQ, offer(firm=False)]
    given(negotiation.fold, *history).when(lambda s: s.accept("o1", NOW)).rejected(
        "awaiting_approval"
    )
    approved = OfferApproved(negotiation_id="neg_1", offer_id="o1", farm_id="farm_1")
    given(negotiation.fold, *history, approved).when(lambda s: s.accept("o1", NOW)).then(accepted())


@pytest.mark.parametrize(
    ("history", "now"),
    [
        ([RFQ, offer()], OFFER_EXPIRES),
        ([RFQ, offer()], OFFER_EXPIRES + timedelta(minutes=1)),
        ([RFQ, offer(), withdrawn()], NOW),
        ([RFQ, offer(), accepted()], NOW),
    ],
    ids=["expired_now", "expired_before", "withdrawn", "accepted_already"],
)
def test_an_offer_that_is_not_live_cannot_be_accepted(history, now):
    given(negotiation.fold, *history).when(lambda s: s.accept("o1", now)).rejected("offer_expired")


def test_no_more_offers_are_accepted_than_replicas_wanted():
    history = [rfq(replicas=2), offer("o1"), offer("o2"), offer("o3"), accepted("o1")]
    outcome = given(negotiation.fold, *history).when(lambda s: s.accept("o2", NOW))
    outcome.then(accepted("o2"))
    given(negotiation.fold, *history, *outcome.events).when(lambda s: s.accept("o3", NOW)).rejected(
        "enough_accepted"
    )


def test_accepting_an_unknown_offer_is_refused():
    given(negotiation.fold, RFQ).when(lambda s: s.accept("o9", NOW)).rejected("unknown_offer")


# --- close ----------------------------------------------------------------------------------


def test_an_award_names_the_contracts_and_releases_the_open_offers():
    history = [
        rfq(replicas=2),
        offer("o3"),
        offer("o1"),
        offer("o2"),
        offer("o4"),
        offer("o5"),
        accepted("o1"),
        withdrawn("o4"),
    ]
    outcome = given(negotiation.fold, *history).when(lambda s: s.close("awarded", ""))
    outcome.then(
        NegotiationAwarded(
            negotiation_id="neg_1",
            offtaker_id="off_1",
            contract_ids=["ctr.neg_1.o1"],
            released_offers=["o2", "o3", "o5"],
        )
    )
    state = outcome.state
    assert state.status == "awarded"
    assert {k: o.status for k, o in state.offers.items()} == {
        "o1": "accepted",
        "o2": "released",
        "o3": "released",
        "o4": "withdrawn",
        "o5": "released",
    }


def test_an_award_needs_an_accepted_offer():
    given(negotiation.fold, RFQ, offer()).when(lambda s: s.close("awarded", "")).rejected(
        "nothing_accepted"
    )


def test_a_failed_negotiation_releases_every_open_offer_with_a_default_reason():
    history = [RFQ, offer("o2"), offer("o1"), withdrawn("o2")]
    outcome = given(negotiation.fold, *history).when(lambda s: s.close("failed", ""))
    outcome.then(failed(["o1"]))
    assert outcome.state.status == "failed"


def test_a_failed_negotiation_keeps_the_reason_given():
    outcome = given(negotiation.fold, RFQ).when(lambda s: s.close("failed", "all too dear"))
    outcome.then(
        NegotiationFailed(
            negotiation_id="neg_1", offtaker_id="off_1", reason="all too dear", released_offers=[]
        )
    )


def test_an_expired_negotiation_releases_its_open_offers_even_the_expired_ones():
    history = [RFQ, offer("o1", expires_at=NOW + timedelta(seconds=1)), offer("o2")]
    outcome = given(negotiation.fold, *history).when(lambda s: s.close("expired", ""))
    outcome.then(
        NegotiationExpired(
            negotiation_id="neg_1", offtaker_id="off_1", released_offers=["o1", "o2"]
        )
    )
    assert outcome.state.status == "expired"


@pytest.mark.parametrize("outcome", ["awarded", "failed", "expired"])
def test_a_closed_negotiation_cannot_be_closed_again(outcome):
    history = [RFQ, offer(), accepted(), failed([])]
    given(negotiation.fold, *history).when(lambda s: s.close(outcome, "")).rejected(
        "negotiation_closed"
    )


@pytest.mark.parametrize(
    "decide",
    [
        lambda s: s.approve("o1", NOW),
        lambda s: s.counter("o1", usd("0.01"), NOW),
        lambda s: s.answer_counter("o1", True, []),
        lambda s: s.accept("o1", NOW),
    ],
    ids=["approve", "counter", "answer_counter", "accept"],
)
def test_after_the_close_the_terms_are_fixed(decide):
    history = [
        RFQ,
        offer(firm=False),
        countered(),
        NegotiationExpired(negotiation_id="neg_1", offtaker_id="off_1", released_offers=["o1"]),
    ]
    given(negotiation.fold, *history).when(decide).rejected("negotiation_closed")


def test_fold_of_nothing_is_a_new_negotiation():
    assert negotiation.fold([]) == NegotiationState()
    assert negotiation.fold([]).status == "new"
    assert negotiation.negotiation_stream("neg_1") == "nego-neg_1"


def test_events_for_unknown_offers_change_nothing():
    state = negotiation.fold([RFQ, offer()])
    assert negotiation.fold([withdrawn("o9"), accepted("o9")], state) == state
