"""Properties of the market under random interleavings of commands and time.

Whatever the order of RFQs, offers (random nodes and sizes), accepts, closes, nodes going down
and up, hold sweeps, repeated commands and clock moves:

- no node ever has more committed + held capacity than it has;
- no contract id is created twice, each is derived from its negotiation and offer, and every
  contract is an accepted offer of its negotiation (an acceptance its node refused is voided);
- every hold ends: once time passes every deadline, the holds are swept and the open
  negotiations closed, no node holds anything.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hypothesis import event, given, settings
from hypothesis import strategies as st

from hero.domain import node
from hero.domain.errors import Rejected
from hero.domain.negotiation import contract_id_for
from hero.market.service import CommandRejected
from schemas import (
    AcceptOffer,
    CapacityHeld,
    ChangeNodeStatus,
    CloseNegotiation,
    Command,
    ContractCreated,
    ExpireHolds,
    Grid,
    HoldExpired,
    HoldReleased,
    IssueRfq,
    MakeOffer,
    NodeRegistered,
    NodeStatus,
    OfferMade,
    RejectOffer,
    Resources,
    RfqIssued,
)
from tests.unit._gwt import SLA, T0, Market, usd

NODES = {
    "node_0": Resources.from_gb(cru=4, mru_gb=8, sru_gb=100),
    "node_1": Resources.from_gb(cru=8, mru_gb=16, sru_gb=200, hru_gb=1000, ipv4=1),
    "node_2": Resources.from_gb(cru=2, mru_gb=4, sru_gb=50),
}
NODE_IDS = sorted(NODES)
NEGOTIATIONS = [f"neg_{i}" for i in range(3)]
HORIZON = timedelta(days=1)  # beyond every deadline and expiry a test can set

sizes = st.builds(
    lambda cru, mru, sru, hru, ip: Resources.from_gb(
        cru=cru, mru_gb=mru, sru_gb=sru, hru_gb=hru, ipv4=ip
    ),
    st.integers(0, 3),
    st.integers(0, 6),
    st.sampled_from([0, 25, 50]),
    st.sampled_from([0, 0, 0, 500]),
    st.sampled_from([0, 0, 0, 0, 1]),
)
nego_index = st.integers(0, len(NEGOTIATIONS) - 1)
node_index = st.integers(0, len(NODE_IDS) - 1)
pick = st.integers(0, 50)  # one of what exists so far (issued negotiations, offers made)
minutes = st.integers(1, 60)

issue = st.tuples(st.just("issue"), nego_index, st.integers(1, 3), sizes, minutes)
operations = st.one_of(
    st.tuples(st.just("offer"), pick, node_index, minutes),
    st.tuples(st.just("offer"), pick, node_index, minutes),
    st.tuples(st.just("accept"), pick),
    st.tuples(st.just("accept"), pick),
    st.tuples(st.just("reject"), pick),
    st.tuples(st.just("close"), pick, st.sampled_from(["awarded", "failed", "expired"])),
    st.tuples(st.just("status"), node_index, st.sampled_from([NodeStatus.UP, NodeStatus.DOWN])),
    st.tuples(st.just("expire"), node_index),
    st.tuples(st.just("advance"), st.integers(1, 40)),
    st.tuples(st.just("repeat"), st.integers(0, 10_000)),
    issue,
)


@dataclass
class Run:
    """The market under test, what was sent, and the invariants checked as events arrive."""

    market: Market = field(default_factory=Market)
    sent: list[Command] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    offers: list[tuple[str, str]] = field(default_factory=list)
    folded: dict[str, tuple[int, node.NodeState]] = field(default_factory=dict)
    contract_ids: set[str] = field(default_factory=set)
    read_up_to: int = 0
    step: int = 0

    def __post_init__(self) -> None:
        self.market.farm("farm_1")
        for node_id, total in NODES.items():
            self.market.node(node_id, total)

    def send(self, command: Command) -> None:
        self.sent.append(command)
        with contextlib.suppress(CommandRejected):  # a refusal writes nothing
            self.market.handle(command)

    def play(self, op: tuple) -> None:
        self.step += 1
        kind, *args = op
        m, tag = self.market, f"s{self.step}"
        match kind:
            case "issue":
                nego_i, replicas, resources, deadline = args
                command = rfq_command(m, NEGOTIATIONS[nego_i], tag, replicas, resources, deadline)
                self.send(command)
            case "offer":
                which, node_i, expires = args
                nego_id = self._nego(which)
                self.send(offer_command(m, nego_id, f"o{self.step}", NODE_IDS[node_i], expires))
            case "accept" if self.offers:
                nego_id, offer_id = self.offers[args[0] % len(self.offers)]
                self.send(accept_command(nego_id, offer_id, tag))
            case "reject" if self.offers:
                nego_id, offer_id = self.offers[args[0] % len(self.offers)]
                self.send(RejectOffer(command_id=tag, negotiation_id=nego_id, offer_id=offer_id))
            case "close":
                which, outcome = args
                self.send(
                    CloseNegotiation(
                        command_id=tag, negotiation_id=self._nego(which), outcome=outcome
                    )
                )
            case "status":
                node_i, status = args
                self.send(ChangeNodeStatus(command_id=tag, node_id=NODE_IDS[node_i], status=status))
            case "expire":
                self.send(ExpireHolds(command_id=tag, node_id=NODE_IDS[args[0]]))
            case "advance":
                m.clock.advance(timedelta(minutes=args[0]))
            case "repeat":
                if self.sent:
                    self.send(self.sent[args[0] % len(self.sent)])
        self.check()

    def _nego(self, which: int) -> str:
        """One of the negotiations issued so far (any of the pool before the first)."""
        known = self.issued or NEGOTIATIONS
        return known[which % len(known)]

    # -- invariants ------------------------------------------------------------------------

    def check(self) -> None:
        store = self.market.store
        for row in store.read_all(self.read_up_to + 1, 10_000):
            self.read_up_to = row.position
            message = row.envelope().decode()
            if isinstance(message, RfqIssued):
                self.issued.append(message.negotiation_id)
            if isinstance(message, OfferMade):
                self.offers.append((message.negotiation_id, message.offer_id))
            if isinstance(message, ContractCreated):
                assert message.contract_id not in self.contract_ids, (
                    f"contract {message.contract_id} created twice"
                )
                assert message.contract_id == contract_id_for(
                    message.negotiation_id, message.offer_id
                )
                self.contract_ids.add(message.contract_id)
        for node_id in NODE_IDS:
            state = self.folded_node(node_id)
            used = state.committed + state.held
            assert used.fits_in(state.total), f"{node_id}: {used} used of {state.total}"
            live = [h.resources for h in state.holds.values() if h.expires_at > self.now]
            live_used = state.committed + sum(live, Resources())
            assert live_used.fits_in(state.total)

    @property
    def now(self) -> datetime:
        return self.market.clock.now()

    def folded_node(self, node_id: str) -> node.NodeState:
        """The node folded from its stream, reading only what was appended since last time."""
        version, state = self.folded.get(node_id, (0, node.NodeState()))
        rows = self.market.store.read_stream(node.node_stream(node_id), version + 1)
        if rows:
            state = node.fold([row.envelope().decode() for row in rows], state)
            version = rows[-1].version
            self.folded[node_id] = (version, state)
        return state

    def finish(self) -> None:
        """Let every deadline pass, sweep every node and close every open negotiation."""
        self.market.clock.advance(HORIZON)
        for node_id in NODE_IDS:
            self.send(ExpireHolds(command_id=f"final-expire-{node_id}", node_id=node_id))
        for nego_id in NEGOTIATIONS:
            state = self.market.negotiation_state(nego_id)
            if state.status == "open":
                self.send(
                    CloseNegotiation(
                        command_id=f"final-close-{nego_id}",
                        negotiation_id=nego_id,
                        # one with an accepted offer can only be awarded
                        outcome="awarded" if state.accepted else "expired",
                    )
                )
        self.check()


def rfq_command(
    m: Market, nego_id: str, tag: str, replicas: int, resources: Resources, deadline: int
) -> IssueRfq:
    return IssueRfq(
        command_id=tag,
        negotiation_id=nego_id,
        offtaker_id="off_1",
        workload_id=f"wl-{nego_id}",
        resources=resources,
        replicas=replicas,
        grids=[Grid.GRID3],
        max_price_cu_hour=usd("0.05"),
        term_hours=24,
        deadline=m.clock.now() + timedelta(minutes=deadline),
    )


def offer_command(m: Market, nego_id: str, offer_id: str, node_id: str, expires: int) -> MakeOffer:
    return MakeOffer(
        command_id=f"make-{offer_id}",
        negotiation_id=nego_id,
        offer_id=offer_id,
        farm_id="farm_1",
        node_id=node_id,
        price_hour=usd("0.02"),
        term_hours=24,
        sla=SLA,
        expires_at=m.clock.now() + timedelta(minutes=expires),
    )


def accept_command(nego_id: str, offer_id: str, tag: str) -> AcceptOffer:
    return AcceptOffer(command_id=tag, negotiation_id=nego_id, offer_id=offer_id)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(issue, min_size=1, max_size=2), st.lists(operations, min_size=10, max_size=50))
def test_capacity_is_never_overcommitted_and_every_hold_ends(first, ops):
    run = Run()
    for op in [*first, *ops]:
        run.play(op)
    run.finish()

    for node_id in NODE_IDS:
        fresh = run.market.node_state(node_id)  # folded from scratch, not incrementally
        assert fresh == run.folded_node(node_id)
        assert fresh.holds == {}, f"{node_id} still holds {sorted(fresh.holds)}"
        assert fresh.committed.fits_in(fresh.total)
    accepted: set[str] = set()
    for nego_id in NEGOTIATIONS:
        state = run.market.negotiation_state(nego_id)
        assert state.status != "open"
        assert len(state.accepted) <= (state.rfq.replicas if state.rfq else 0)
        accepted |= {o.contract_id for o in state.accepted if o.contract_id}
    assert run.contract_ids == accepted, "every contract is an accepted offer, and back"
    created = run.market.contract_ids()
    assert len(created) == len(set(created))
    seen = Counter(type(e).__name__ for e in run.market.all_events())
    for kind in ("ContractCreated", "OfferDeclined", "HoldExpired", "HoldReleased", "OfferMade"):
        event(f"{kind}: {'some' if seen[kind] else 'none'}")


# --- the node aggregate alone ----------------------------------------------------------------

NODE_TOTAL = Resources.from_gb(cru=4, mru_gb=8, sru_gb=100, ipv4=1)
HOLD_IDS = [f"h{i}" for i in range(6)]
hold_index = st.integers(0, len(HOLD_IDS) - 1)

node_decisions = st.one_of(
    st.tuples(st.just("hold"), hold_index, sizes, minutes),
    st.tuples(st.just("hold"), hold_index, sizes, minutes),
    st.tuples(st.just("commit"), hold_index),
    st.tuples(st.just("release"), hold_index),
    st.tuples(st.just("cancel"), hold_index),
    st.tuples(st.just("expire")),
    st.tuples(st.just("status"), st.sampled_from(list(NodeStatus))),
    st.tuples(st.just("advance"), st.integers(1, 40)),
)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(node_decisions, min_size=5, max_size=60))
def test_the_node_aggregate_alone_never_overcommits_and_ends_each_hold_once(decisions):
    registered = NodeRegistered(
        node_id="n", farm_id="f", grid=Grid.GRID3, country="BE", region="eu", total=NODE_TOTAL
    )
    history: list = [registered]
    state = node.fold(history)
    now = T0
    for kind, *args in decisions:
        hold_id = HOLD_IDS[args[0]] if kind in ("hold", "commit", "release", "cancel") else ""
        try:
            match kind:
                case "hold":
                    _, resources, expires = args
                    new = state.hold(
                        hold_id, "neg", resources, now + timedelta(minutes=expires), now
                    )
                case "commit":
                    held = state.holds.get(hold_id)
                    resources = held.resources if held else Resources(cru=1)
                    new = state.commit(_contract(hold_id, resources, now), now)
                case "release":
                    new = state.release(hold_id, "x")
                case "cancel":
                    new = state.cancel(f"c-{hold_id}", "x")
                case "expire":
                    new = state.expire(now)
                case "status":
                    new = state.change_status(args[0], "x")
                case _:
                    now += timedelta(minutes=args[0])
                    new = []
        except Rejected:
            continue
        history += new
        state = node.fold(new, state)
        assert (state.committed + state.held).fits_in(state.total)
        assert not set(state.holds) & state.ended_holds

    held_ids = [e.hold_id for e in history if isinstance(e, CapacityHeld)]
    assert len(held_ids) == len(set(held_ids)), "a hold id is held once"
    endings = Counter(
        e.hold_id for e in history if isinstance(e, HoldReleased | HoldExpired | ContractCreated)
    )
    assert all(count == 1 for count in endings.values()), "a hold ends once"
    assert state == node.fold(history)
    final = state.expire(now + HORIZON)
    assert node.fold(final, state).holds == {}, "every hold ends"


def _contract(hold_id: str, resources: Resources, now: datetime) -> ContractCreated:
    return ContractCreated(
        contract_id=f"c-{hold_id}",
        negotiation_id="neg",
        offer_id=hold_id,
        hold_id=hold_id,
        offtaker_id="off",
        workload_id="wl",
        farm_id="f",
        node_id="n",
        grid=Grid.GRID3,
        resources=resources,
        price_hour=usd("0.01"),
        term_hours=24,
        sla=SLA,
        starts_at=now,
    )
