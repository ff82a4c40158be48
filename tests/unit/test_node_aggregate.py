"""The node capacity aggregate: given its events, when asked to decide, then events or a refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from hero.domain import node
from hero.domain.node import MAX_OUTAGES, Hold, NodeState
from hero.domain.sla import sla_outcome
from schemas import (
    CapacityHeld,
    ContractCancelled,
    ContractCreated,
    Grid,
    HoldExpired,
    HoldReleased,
    Money,
    NodeRegistered,
    NodeStatusChanged,
    Resources,
    Sla,
    SlaOutcomeRecorded,
)
from schemas.catalogue.common import NodeStatus
from tests.unit._gwt import given

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)

TOTAL = Resources.from_gb(cru=8, mru_gb=16, sru_gb=200, hru_gb=1000, ipv4=1)
SMALL = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)  # a quarter of the cores and memory

REGISTERED = NodeRegistered(
    node_id="node_1",
    farm_id="farm_1",
    grid=Grid.GRID3,
    country="BE",
    region="europe",
    total=TOTAL,
    certified=True,
    uptime_pct=Decimal("99.5"),
)


def held(hold_id: str, resources: Resources = SMALL, expires_at: datetime = LATER) -> CapacityHeld:
    return CapacityHeld(
        node_id="node_1",
        hold_id=hold_id,
        negotiation_id=f"neg_{hold_id}",
        resources=resources,
        expires_at=expires_at,
    )


H = timedelta(hours=1)
UNPENALISED = Sla(uptime_pct=Decimal("99"))
#: 99% uptime, half the downtime's price refunded when missed
PENALISED = Sla(uptime_pct=Decimal("99"), penalty_pct=Decimal("50"))


def contract(
    contract_id: str,
    hold_id: str,
    resources: Resources = SMALL,
    sla: Sla = UNPENALISED,
    starts_at: datetime = NOW,
) -> ContractCreated:
    return ContractCreated(
        contract_id=contract_id,
        negotiation_id=f"neg_{hold_id}",
        offer_id=hold_id,
        hold_id=hold_id,
        offtaker_id="off_1",
        workload_id="wl_1",
        farm_id="farm_1",
        node_id="node_1",
        grid=Grid.GRID3,
        resources=resources,
        price_hour=Money.of("0.02", "USD"),
        term_hours=720,
        sla=sla,
        starts_at=starts_at,
    )


def status(
    new: NodeStatus, previous: NodeStatus, reason: str = "", at: datetime | None = None
) -> NodeStatusChanged:
    return NodeStatusChanged(
        node_id="node_1", status=new, previous=previous, reason=reason, changed_at=at
    )


def down(at: datetime) -> NodeStatusChanged:
    return status(NodeStatus.DOWN, NodeStatus.UP, "power", at)


def up(at: datetime) -> NodeStatusChanged:
    return status(NodeStatus.UP, NodeStatus.DOWN, "back", at)


def hold(hold_id: str, resources: Resources = SMALL, expires_at: datetime = LATER, now=NOW):
    return lambda s: s.hold(hold_id, f"neg_{hold_id}", resources, expires_at, now)


# --- register -------------------------------------------------------------------------------


def test_registering_a_new_node_records_it():
    outcome = given(node.fold).when(lambda s: s.register(REGISTERED)).then(REGISTERED)
    state = outcome.state
    assert state.registered
    assert (state.node_id, state.farm_id, state.region, state.country) == (
        "node_1",
        "farm_1",
        "europe",
        "BE",
    )
    assert state.certified is True
    assert state.uptime_pct == Decimal("99.5")
    assert state.total == TOTAL
    assert state.status is NodeStatus.UP
    assert state.free() == TOTAL


def test_registering_a_node_twice_is_refused_as_already_registered():
    given(node.fold, REGISTERED).when(lambda s: s.register(REGISTERED)).rejected(
        "already_registered"
    )


@pytest.mark.parametrize(
    "decide",
    [
        hold("h1"),
        lambda s: s.change_status(NodeStatus.DOWN, "power"),
        lambda s: s.commit(contract("ctr_1", "h1"), NOW),
    ],
    ids=["hold", "change_status", "commit"],
)
def test_deciding_on_an_unregistered_node_is_refused_as_unknown_node(decide):
    given(node.fold).when(decide).rejected("unknown_node")


def test_an_unregistered_node_has_nothing_to_expire_release_or_cancel():
    given(node.fold).when(lambda s: s.expire(LATER)).then_nothing()
    given(node.fold).when(lambda s: s.release("h1", "x")).then_nothing()
    given(node.fold).when(lambda s: s.cancel("ctr_1", "x")).then_nothing()


# --- hold -----------------------------------------------------------------------------------


def test_a_hold_that_fits_is_recorded_and_counts_as_held():
    outcome = given(node.fold, REGISTERED).when(hold("h1")).then(held("h1"))
    state = outcome.state
    assert state.holds == {"h1": Hold("h1", "neg_h1", SMALL, LATER)}
    assert state.held == SMALL
    assert state.free(NOW) == Resources.from_gb(cru=6, mru_gb=12, sru_gb=150, hru_gb=1000, ipv4=1)


def test_a_hold_of_exactly_the_whole_node_fits():
    given(node.fold, REGISTERED).when(hold("h1", TOTAL)).then(held("h1", TOTAL))


def test_holds_fill_the_node_and_the_next_one_is_refused_as_insufficient_capacity():
    four = [held(f"h{i}") for i in range(4)]  # 4 x 2 cores = the node's 8 cores
    given(node.fold, REGISTERED, *four).when(hold("h4")).rejected("insufficient_capacity")


@pytest.mark.parametrize(
    "part",
    [
        {"cru": 9},
        {"mru_gb": 17},
        {"sru_gb": 201},
        {"hru_gb": 1001},
        {"ipv4": 2},
    ],
    ids=lambda p: next(iter(p)),
)
def test_a_hold_larger_than_the_node_in_any_one_resource_is_insufficient_capacity(part):
    too_big = Resources.from_gb(**part)
    given(node.fold, REGISTERED).when(hold("h1", too_big)).rejected("insufficient_capacity")


def test_a_hold_one_byte_over_the_free_memory_is_refused():
    history = [REGISTERED, held("h1", Resources.from_gb(mru_gb=12))]
    over = Resources(mru=4 * 1024**3 + 1)
    given(node.fold, *history).when(hold("h2", over)).rejected("insufficient_capacity")
    exact = Resources(mru=4 * 1024**3)
    given(node.fold, *history).when(hold("h2", exact)).then(held("h2", exact))


def test_committed_capacity_counts_against_new_holds():
    history = [REGISTERED, held("h1", TOTAL), contract("ctr_1", "h1", TOTAL)]
    given(node.fold, *history).when(hold("h2", Resources(cru=1))).rejected("insufficient_capacity")


def test_a_live_hold_id_cannot_be_held_again():
    given(node.fold, REGISTERED, held("h1")).when(hold("h1")).rejected("duplicate_hold")


@pytest.mark.parametrize(
    "ending",
    [
        HoldReleased(node_id="node_1", hold_id="h1", reason="x"),
        HoldExpired(node_id="node_1", hold_id="h1"),
        contract("ctr_1", "h1"),
    ],
    ids=["released", "expired", "committed"],
)
def test_an_ended_hold_id_cannot_be_reused(ending):
    given(node.fold, REGISTERED, held("h1"), ending).when(hold("h1")).rejected("duplicate_hold")


@pytest.mark.parametrize("down", [NodeStatus.DOWN, NodeStatus.STANDBY])
def test_a_node_that_is_not_up_takes_no_hold(down):
    history = [REGISTERED, status(down, NodeStatus.UP)]
    given(node.fold, *history).when(hold("h1")).rejected("node_unavailable")


@pytest.mark.parametrize("expires_at", [NOW, NOW - timedelta(seconds=1)])
def test_a_hold_that_would_expire_before_it_starts_is_refused(expires_at):
    given(node.fold, REGISTERED).when(hold("h1", expires_at=expires_at)).rejected("expired")


def test_a_hold_past_its_deadline_frees_its_capacity_and_the_new_hold_expires_it_first():
    soon = NOW + timedelta(minutes=5)
    history = [REGISTERED, held("h1", TOTAL, expires_at=soon)]
    given(node.fold, *history).when(hold("h2", TOTAL)).rejected("insufficient_capacity")

    after = soon + timedelta(seconds=1)
    outcome = given(node.fold, *history).when(
        hold("h2", TOTAL, expires_at=after + timedelta(hours=1), now=after)
    )
    outcome.then(
        HoldExpired(node_id="node_1", hold_id="h1"),
        held("h2", TOTAL, expires_at=after + timedelta(hours=1)),
    )
    assert set(outcome.state.holds) == {"h2"}
    assert outcome.state.used == TOTAL


def test_a_hold_whose_deadline_is_exactly_now_counts_as_expired():
    history = [REGISTERED, held("h1", TOTAL, expires_at=NOW)]
    given(node.fold, *history).when(hold("h2", TOTAL)).then(
        HoldExpired(node_id="node_1", hold_id="h1"), held("h2", TOTAL)
    )


def test_a_new_hold_expires_every_overdue_hold_even_those_it_does_not_need():
    soon = NOW - timedelta(minutes=1)
    history = [REGISTERED, held("h2", expires_at=soon), held("h1", expires_at=soon), held("h3")]
    given(node.fold, *history).when(hold("h4")).then(
        HoldExpired(node_id="node_1", hold_id="h1"),
        HoldExpired(node_id="node_1", hold_id="h2"),
        held("h4"),
    )


def test_free_counts_overdue_holds_as_free_only_when_given_the_time():
    state = node.fold([REGISTERED, held("h1", TOTAL, expires_at=NOW)])
    assert state.free() == Resources()
    assert state.free(NOW) == TOTAL
    assert state.free(NOW - timedelta(seconds=1)) == Resources()


# --- expire ---------------------------------------------------------------------------------


def test_expire_ends_the_holds_past_their_deadline_in_hold_id_order():
    history = [
        REGISTERED,
        held("h_b", expires_at=NOW),
        held("h_a", expires_at=NOW - timedelta(minutes=1)),
        held("h_c", expires_at=LATER),
    ]
    outcome = given(node.fold, *history).when(lambda s: s.expire(NOW))
    outcome.then(
        HoldExpired(node_id="node_1", hold_id="h_a"),
        HoldExpired(node_id="node_1", hold_id="h_b"),
    )
    assert set(outcome.state.holds) == {"h_c"}


def test_expire_with_nothing_overdue_writes_nothing():
    given(node.fold, REGISTERED, held("h1")).when(lambda s: s.expire(NOW)).then_nothing()


def test_expire_leaves_contracts_alone():
    history = [REGISTERED, held("h1", expires_at=NOW + timedelta(minutes=1)), contract("c1", "h1")]
    outcome = given(node.fold, *history).when(lambda s: s.expire(LATER)).then_nothing()
    assert outcome.state.committed == SMALL


# --- status ---------------------------------------------------------------------------------


def test_a_node_going_down_releases_all_its_holds():
    history = [REGISTERED, held("h2"), held("h1"), held("h3", TOTAL - SMALL.times(2))]
    outcome = given(node.fold, *history).when(lambda s: s.change_status(NodeStatus.DOWN, "power"))
    outcome.then(
        status(NodeStatus.DOWN, NodeStatus.UP, "power"),
        HoldReleased(node_id="node_1", hold_id="h1", reason="node down"),
        HoldReleased(node_id="node_1", hold_id="h2", reason="node down"),
        HoldReleased(node_id="node_1", hold_id="h3", reason="node down"),
    )
    assert outcome.state.holds == {}
    assert outcome.state.status is NodeStatus.DOWN


def test_a_node_going_to_standby_releases_its_holds_but_keeps_its_contracts():
    history = [REGISTERED, held("h1"), contract("c1", "h1"), held("h2")]
    outcome = given(node.fold, *history).when(lambda s: s.change_status(NodeStatus.STANDBY, ""))
    outcome.then(
        status(NodeStatus.STANDBY, NodeStatus.UP),
        HoldReleased(node_id="node_1", hold_id="h2", reason="node standby"),
    )
    assert outcome.state.contracts == {"c1": SMALL}


def test_the_same_status_again_writes_nothing():
    given(node.fold, REGISTERED).when(lambda s: s.change_status(NodeStatus.UP, "")).then_nothing()


def test_a_node_coming_back_up_takes_holds_again():
    history = [REGISTERED, status(NodeStatus.DOWN, NodeStatus.UP)]
    outcome = given(node.fold, *history).when(lambda s: s.change_status(NodeStatus.UP, "back"))
    outcome.then(status(NodeStatus.UP, NodeStatus.DOWN, "back"))
    given(node.fold, *history, *outcome.events).when(hold("h1")).then(held("h1"))


def test_a_status_change_records_when_it_happened():
    given(node.fold, REGISTERED).when(
        lambda s: s.change_status(NodeStatus.DOWN, "power", NOW)
    ).then(down(NOW))


# --- outages --------------------------------------------------------------------------------

WITH_CONTRACT = [REGISTERED, held("h1"), contract("c1", "h1")]


def test_leaving_up_opens_an_outage_and_only_coming_back_up_closes_it():
    standby = status(NodeStatus.STANDBY, NodeStatus.DOWN, "", NOW + 2 * H)

    assert node.fold([*WITH_CONTRACT, down(NOW + H)]).outages == ((NOW + H, None),)
    assert node.fold([*WITH_CONTRACT, down(NOW + H), standby]).outages == ((NOW + H, None),)
    back = node.fold([*WITH_CONTRACT, down(NOW + H), standby, up(NOW + 3 * H)])
    assert back.outages == ((NOW + H, NOW + 3 * H),)
    again = node.fold([*WITH_CONTRACT, down(NOW + H), up(NOW + 3 * H), down(NOW + 5 * H)])
    assert again.outages == ((NOW + H, NOW + 3 * H), (NOW + 5 * H, None))


def test_status_changes_without_a_time_say_nothing_about_outages():
    untimed = [status(NodeStatus.DOWN, NodeStatus.UP), status(NodeStatus.UP, NodeStatus.DOWN)]
    assert node.fold([*WITH_CONTRACT, *untimed]).outages == ()
    # a return without a time leaves the outage open: when it ended is not known
    state = node.fold([*WITH_CONTRACT, down(NOW + H), untimed[1]])
    assert (state.status, state.outages) == (NodeStatus.UP, ((NOW + H, None),))


def test_outages_that_ended_before_every_live_contract_started_are_dropped():
    without_contracts = [REGISTERED, down(NOW - 3 * H), up(NOW - 2 * H), down(NOW - H)]
    # no contract a closed outage could count against; the open one counts once one starts
    assert node.fold(without_contracts).outages == ((NOW - H, None),)

    second = contract("c2", "h2", starts_at=NOW + 3 * H)
    history = [*WITH_CONTRACT, down(NOW + H), up(NOW + 2 * H), held("h2"), second]
    history += [down(NOW + 4 * H), up(NOW + 5 * H)]
    state = node.fold(history)
    assert state.outages == ((NOW + H, NOW + 2 * H), (NOW + 4 * H, NOW + 5 * H))

    c1_ends = ContractCancelled(contract_id="c1", node_id="node_1", reason="x")
    assert node.fold([c1_ends], state).outages == ((NOW + 4 * H, NOW + 5 * H),)
    c2_ends = ContractCancelled(contract_id="c2", node_id="node_1", reason="x")
    assert node.fold([c1_ends, c2_ends], state).outages == ()


def test_outages_are_capped_at_the_newest():
    flaps = []
    for i in range(MAX_OUTAGES + 5):
        flaps += [down(NOW + i * H), up(NOW + i * H + H / 2)]
    state = node.fold([*WITH_CONTRACT, *flaps])
    assert len(state.outages) == MAX_OUTAGES
    assert state.outages[0] == (NOW + 5 * H, NOW + 5 * H + H / 2)


# --- terms ----------------------------------------------------------------------------------


def test_a_live_contract_keeps_its_terms_until_it_is_cancelled():
    terms = contract("c1", "h1", sla=PENALISED)
    state = node.fold([REGISTERED, held("h1"), terms])
    assert state.terms == {"c1": terms}
    assert state.contracts == {"c1": SMALL}

    cancelled = ContractCancelled(contract_id="c1", node_id="node_1", reason="x")
    assert node.fold([cancelled], state).terms == {}


# --- release --------------------------------------------------------------------------------


def test_releasing_a_live_hold_frees_its_capacity():
    outcome = given(node.fold, REGISTERED, held("h1", TOTAL)).when(
        lambda s: s.release("h1", "offer rejected")
    )
    outcome.then(HoldReleased(node_id="node_1", hold_id="h1", reason="offer rejected"))
    assert outcome.state.free(NOW) == TOTAL


def test_releasing_twice_writes_nothing_the_second_time():
    released = HoldReleased(node_id="node_1", hold_id="h1", reason="x")
    given(node.fold, REGISTERED, held("h1"), released).when(
        lambda s: s.release("h1", "x")
    ).then_nothing()


@pytest.mark.parametrize(
    "history",
    [
        [REGISTERED],
        [REGISTERED, held("h1"), HoldExpired(node_id="node_1", hold_id="h1")],
        [REGISTERED, held("h1"), contract("c1", "h1")],
    ],
    ids=["unknown", "expired", "committed"],
)
def test_releasing_a_hold_that_is_not_live_writes_nothing(history):
    given(node.fold, *history).when(lambda s: s.release("h1", "x")).then_nothing()


# --- commit ---------------------------------------------------------------------------------


def test_committing_a_live_hold_turns_it_into_a_contract():
    outcome = given(node.fold, REGISTERED, held("h1")).when(
        lambda s: s.commit(contract("c1", "h1"), NOW)
    )
    outcome.then(contract("c1", "h1"))
    state = outcome.state
    assert state.holds == {}
    assert state.contracts == {"c1": SMALL}
    assert state.used == SMALL
    assert "h1" in state.ended_holds


@pytest.mark.parametrize(
    "history",
    [
        [REGISTERED],
        [REGISTERED, held("h1"), HoldReleased(node_id="node_1", hold_id="h1", reason="x")],
        [REGISTERED, held("h1"), HoldExpired(node_id="node_1", hold_id="h1")],
    ],
    ids=["never_held", "released", "expired_by_sweep"],
)
def test_committing_a_hold_that_ended_is_refused_as_hold_ended(history):
    given(node.fold, *history).when(lambda s: s.commit(contract("c1", "h1"), NOW)).rejected(
        "hold_ended"
    )


@pytest.mark.parametrize("now", [LATER, LATER + timedelta(seconds=1)])
def test_committing_a_hold_past_its_deadline_is_refused_as_hold_expired(now):
    given(node.fold, REGISTERED, held("h1")).when(
        lambda s: s.commit(contract("c1", "h1"), now)
    ).rejected("hold_expired")


def test_a_contract_must_take_exactly_what_was_held():
    bigger = Resources.from_gb(cru=4, mru_gb=4, sru_gb=50)
    given(node.fold, REGISTERED, held("h1")).when(
        lambda s: s.commit(contract("c1", "h1", bigger), NOW)
    ).rejected("resources_mismatch")


def test_a_contract_id_is_committed_once():
    history = [REGISTERED, held("h1"), contract("c1", "h1"), held("h2")]
    given(node.fold, *history).when(lambda s: s.commit(contract("c1", "h2"), NOW)).rejected(
        "duplicate_contract"
    )


def test_a_hold_left_on_a_node_that_is_down_is_not_committed():
    # a stream written before "down" released holds: the status rule still guards the commit
    history = [REGISTERED, held("h1"), status(NodeStatus.DOWN, NodeStatus.UP)]
    given(node.fold, *history).when(lambda s: s.commit(contract("c1", "h1"), NOW)).rejected(
        "node_unavailable"
    )


# --- cancel ---------------------------------------------------------------------------------


def test_cancelling_a_contract_frees_its_capacity_for_a_new_hold():
    history = [REGISTERED, held("h1", TOTAL), contract("c1", "h1", TOTAL)]
    outcome = given(node.fold, *history).when(lambda s: s.cancel("c1", "offtaker left"))
    outcome.then(ContractCancelled(contract_id="c1", node_id="node_1", reason="offtaker left"))
    assert outcome.state.committed == Resources()
    given(node.fold, *history, *outcome.events).when(hold("h2", TOTAL)).then(held("h2", TOTAL))


def test_cancelling_after_downtime_records_the_sla_outcome_with_the_cancellation():
    history = [
        REGISTERED,
        held("h1"),
        contract("c1", "h1", sla=PENALISED),
        down(NOW + 10 * H),
        up(NOW + 12 * H),
    ]
    outcome = given(node.fold, *history).when(lambda s: s.cancel("c1", "done", NOW + 100 * H))

    # 2 h down in 100 h: 98% < 99%; billed at genesis prices, 0.01125 USD/h (the negotiated
    # 0.02 is not what a Grid 3 contract pays): 0.01125 * 2 * 50% = 0.01125 USD
    outcome.then(
        ContractCancelled(contract_id="c1", node_id="node_1", reason="done"),
        SlaOutcomeRecorded(
            contract_id="c1",
            offtaker_id="off_1",
            farm_id="farm_1",
            node_id="node_1",
            sla=PENALISED,
            started_at=NOW,
            ended_at=NOW + 100 * H,
            period_hours=Decimal(100),
            hours_down=Decimal(2),
            uptime_pct=Decimal(98),
            met=False,
            penalty=Money.of("0.01125", "USD"),
        ),
    )
    assert outcome.state.terms == {}


def test_cancelling_on_a_node_still_down_counts_the_outage_until_now_at_the_price_given():
    terms = contract("c1", "h1", sla=PENALISED)
    history = [REGISTERED, held("h1"), terms, down(NOW + 90 * H)]

    outcome = given(node.fold, *history).when(
        lambda s: s.cancel("c1", "moved", NOW + 100 * H, lambda c: c.price_hour)
    )

    [_, recorded] = outcome.events or []
    expected = sla_outcome(terms, [(NOW + 90 * H, None)], NOW + 100 * H, terms.price_hour)
    assert recorded == expected
    assert isinstance(recorded, SlaOutcomeRecorded)
    assert (recorded.hours_down, recorded.penalty) == (Decimal(10), Money.of("0.1", "USD"))


def test_cancelling_without_downtime_or_without_a_time_records_no_outcome():
    cancelled = ContractCancelled(contract_id="c1", node_id="node_1", reason="done")
    history = [REGISTERED, held("h1"), contract("c1", "h1", sla=PENALISED)]
    given(node.fold, *history).when(lambda s: s.cancel("c1", "done", NOW + 5 * H)).then(cancelled)
    after_an_outage = [*history, down(NOW + H), up(NOW + 3 * H)]
    given(node.fold, *after_an_outage).when(lambda s: s.cancel("c1", "done")).then(cancelled)


def test_cancelling_an_unknown_or_cancelled_contract_writes_nothing():
    cancelled = ContractCancelled(contract_id="c1", node_id="node_1", reason="x")
    history = [REGISTERED, held("h1"), contract("c1", "h1"), cancelled]
    given(node.fold, *history).when(lambda s: s.cancel("c1", "again")).then_nothing()
    given(node.fold, REGISTERED).when(lambda s: s.cancel("c9", "x")).then_nothing()


# --- fold -----------------------------------------------------------------------------------


def test_fold_continues_from_a_given_state():
    first = node.fold([REGISTERED, held("h1")])
    assert node.fold([held("h2")], first).held == SMALL.times(2)
    assert node.fold([]) == NodeState()


def test_the_node_stream_name():
    assert node.node_stream("node_1") == "node-node_1"
