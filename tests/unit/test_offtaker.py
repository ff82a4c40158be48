"""The offtaker agent over time.

After a negotiation for a workload fails or expires, the offtaker waits 1 s, 2 s, 4 s ... at
most 16 s (from the failure's recorded time) before its next RFQ for it; an award resets it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from agents.local import LocalMarket
from agents.market import MarketView
from agents.offtaker import (
    FAILURE_BACKOFF_MAX,
    HOPELESS_BACKOFF_MAX,
    OfftakerBrain,
    failure_backoff,
)
from hero.domain.clock import ManualClock
from hero.store import MemoryEventStore
from schemas import (
    ChangeNodeStatus,
    Command,
    ContractCancelled,
    ContractCreated,
    Event,
    FarmerPolicy,
    FarmerPolicySet,
    FarmRegistered,
    Grid,
    IssueRfq,
    Mandate,
    NegotiationAwarded,
    NegotiationExpired,
    NegotiationFailed,
    NodeRegistered,
    NodeStatus,
    OfferMade,
    OfftakerMandateSet,
    RegisterFarm,
    RegisterNode,
    RfqIssued,
    SetFarmerPolicy,
    SetOfftakerMandate,
    WorkloadSpec,
)
from tests.unit._feed import Feed
from tests.unit._gwt import SHAPE, SLA, T0, usd

SECOND = timedelta(seconds=1)
FARM = {"grid": Grid.GRID3, "country": "BE", "region": "europe"}
#: Prices the farm's node below the offtaker's maximum, but serves terms of a day at most:
#: the offtaker invites the farm, and the farmer declines every 720-hour RFQ.
DAY_TERMS_ONLY = FarmerPolicy(price_cu_hour=usd("0.01"), max_term_hours=24)


def mandate(*workloads: str) -> Mandate:
    return Mandate(
        workloads=[WorkloadSpec(workload_id=w, resources=SHAPE, replicas=1) for w in workloads],
        budget_month=usd("1000"),
        max_price_cu_hour=usd("0.05"),
        term_hours=720,
        offer_window_s=Decimal(2),
    )


# --- the brain alone, fed by hand ------------------------------------------------------------


class Offtaker:
    """An OfftakerBrain over a view with one farm that has room; events delivered by hand."""

    def __init__(self, *workloads: str) -> None:
        self.view = MarketView()
        self.feed = Feed()
        self.brain = OfftakerBrain("acme")
        self.deliver(FarmRegistered(farm_id="f1", name="f1", **FARM), "farm-f1")
        self.deliver(FarmerPolicySet(farm_id="f1", policy=DAY_TERMS_ONLY), "farm-f1")
        node = NodeRegistered(node_id="n1", farm_id="f1", total=SHAPE.times(8), **FARM)
        self.deliver(node, "node-n1")
        self.deliver(
            OfftakerMandateSet(offtaker_id="acme", mandate=mandate(*workloads or ("web",))),
            "offtaker-acme",
        )

    def deliver(self, event: Event, stream: str, at: datetime = T0) -> None:
        envelope = self.feed.wrap(event, stream, at)
        self.view.apply(envelope, event)
        self.brain.observe(envelope, event, self.view)

    def rfqs(self, now: datetime) -> list[IssueRfq]:
        """Decide at ``now``; the RFQs it sends are recorded (delivered back) at ``now``."""
        commands: list[Command] = self.brain.decide(now, self.view)
        rfqs = [c for c in commands if isinstance(c, IssueRfq)]
        for rfq in rfqs:
            issued = RfqIssued(**rfq.model_dump(exclude={"command_id"}))
            self.deliver(issued, f"nego-{rfq.negotiation_id}", now)
        return rfqs

    def fail(self, rfq: IssueRfq, at: datetime, kind: str = "failed") -> None:
        nego, stream = rfq.negotiation_id, f"nego-{rfq.negotiation_id}"
        if kind == "failed":
            self.deliver(
                NegotiationFailed(negotiation_id=nego, offtaker_id="acme", reason="x"), stream, at
            )
        elif kind == "expired":
            self.deliver(NegotiationExpired(negotiation_id=nego, offtaker_id="acme"), stream, at)
        else:
            award = NegotiationAwarded(
                negotiation_id=nego, offtaker_id="acme", contract_ids=[f"ctr.{nego}.o1"]
            )
            self.deliver(award, stream, at)
            if kind == "awarded, then ended":  # the replica is wanted again
                self.created(rfq, "o1", at)
                self.ended(f"ctr.{nego}.o1", at)

    def created(self, rfq: IssueRfq, offer_id: str, at: datetime = T0) -> None:
        nego = rfq.negotiation_id
        contract = ContractCreated(
            contract_id=f"ctr.{nego}.{offer_id}",
            negotiation_id=nego,
            offer_id=offer_id,
            hold_id=offer_id,
            offtaker_id="acme",
            workload_id=rfq.workload_id,
            farm_id="f1",
            node_id="n1",
            grid=Grid.GRID3,
            resources=SHAPE,
            price_hour=usd("0.01"),
            term_hours=720,
            sla=SLA,
            starts_at=at,
        )
        self.deliver(contract, "node-n1", at)

    def ended(self, contract_id: str, at: datetime = T0) -> None:
        cancelled = ContractCancelled(contract_id=contract_id, node_id="n1", reason="ended")
        self.deliver(cancelled, "node-n1", at)

    def waits_until(self, failed_at: datetime, delay: timedelta) -> IssueRfq:
        """Nothing before ``failed_at + delay``, an RFQ then."""
        assert self.brain.next_wakeup() == failed_at + delay
        assert self.rfqs(failed_at + delay - timedelta(milliseconds=1)) == []
        (rfq,) = self.rfqs(failed_at + delay)
        return rfq


def test_the_first_rfq_is_not_delayed():
    (rfq,) = Offtaker().rfqs(T0)
    assert (rfq.negotiation_id, rfq.invited_farms) == ("acme.web.1", ["f1"])


def test_each_failure_doubles_the_wait_up_to_a_minute():
    offtaker = Offtaker()
    (rfq,) = offtaker.rfqs(T0)
    at = T0
    waits = []
    for _ in range(9):
        at += SECOND / 2  # the failure is recorded a little after the RFQ
        offtaker.fail(rfq, at)
        delay = offtaker.brain.next_wakeup() - at  # type: ignore[operator]
        rfq = offtaker.waits_until(at, delay)
        waits.append(delay.total_seconds())
        at += delay
    assert waits == [1, 2, 4, 8, 16, 16, 16, 16, 16]
    assert timedelta(seconds=16) == FAILURE_BACKOFF_MAX
    assert rfq.negotiation_id == "acme.web.10"


def test_an_expired_negotiation_backs_off_like_a_failed_one():
    offtaker = Offtaker()
    (rfq,) = offtaker.rfqs(T0)
    offtaker.fail(rfq, T0, "expired")
    rfq = offtaker.waits_until(T0, SECOND)
    offtaker.fail(rfq, T0 + SECOND, "expired")
    offtaker.waits_until(T0 + SECOND, 2 * SECOND)


def test_the_wait_counts_from_the_failures_recorded_time_not_from_when_it_is_seen():
    offtaker = Offtaker()
    (rfq,) = offtaker.rfqs(T0)
    offtaker.fail(rfq, T0)
    # A host catching up late (or replaying the log) decides long after the failure.
    (again,) = offtaker.rfqs(T0 + 10 * SECOND)
    assert again.negotiation_id == "acme.web.2"


def test_an_award_resets_the_backoff():
    offtaker = Offtaker()
    (rfq,) = offtaker.rfqs(T0)
    offtaker.fail(rfq, T0)
    rfq = offtaker.waits_until(T0, SECOND)
    offtaker.fail(rfq, T0 + SECOND)
    rfq = offtaker.waits_until(T0 + SECOND, 2 * SECOND)  # two failures: 2 s

    offtaker.fail(rfq, T0 + 3 * SECOND, "awarded, then ended")
    # The awarded contract ended, so the replica is wanted again: asked again at once.
    (rfq,) = offtaker.rfqs(T0 + 3 * SECOND)
    offtaker.fail(rfq, T0 + 4 * SECOND)

    offtaker.waits_until(T0 + 4 * SECOND, SECOND)  # 1 s again, not 4 s


def test_the_backoff_is_per_workload():
    offtaker = Offtaker("api", "web")
    rfqs = {r.workload_id: r for r in offtaker.rfqs(T0)}
    assert sorted(rfqs) == ["api", "web"]
    offtaker.fail(rfqs["web"], T0)
    offtaker.fail(rfqs["api"], T0, "awarded, then ended")

    (again,) = offtaker.rfqs(T0)  # api asks again at once, web waits
    assert again.workload_id == "api"
    (web,) = offtaker.rfqs(T0 + SECOND)
    assert web.workload_id == "web"


def test_an_award_seen_before_its_contracts_asks_for_nothing_more():
    """Kafka may deliver a negotiation's award before the node's ContractCreated (another
    partition; a restarted host reads a backlog of each): the contracts the award names are
    replicas already, and no second RFQ doubles them (test_host_crash saw 4 and 3 of 2)."""
    offtaker = Offtaker()
    (rfq,) = offtaker.rfqs(T0)
    offtaker.fail(rfq, T0 + SECOND, "awarded")  # names ctr.<nego>.o1; not created yet here

    assert offtaker.rfqs(T0 + SECOND) == []
    assert offtaker.rfqs(T0 + 10 * SECOND) == []  # not once the in-flight mark expires either
    offtaker.created(rfq, "o1", T0 + 11 * SECOND)
    assert offtaker.rfqs(T0 + 20 * SECOND) == []
    offtaker.ended(f"ctr.{rfq.negotiation_id}.o1", T0 + 21 * SECOND)
    (again,) = offtaker.rfqs(T0 + 21 * SECOND)  # the contract ended: the replica is wanted
    assert again.replicas == 1


def test_an_accept_not_yet_seen_keeps_the_negotiation_open():
    """Deciding again before its accept's OfferAccepted arrives (a loaded market answers
    slowly), the offtaker waits for it rather than closing the negotiation as failed."""
    offtaker = Offtaker()
    (rfq,) = offtaker.rfqs(T0)
    offer = OfferMade(
        negotiation_id=rfq.negotiation_id,
        offer_id="o1",
        farm_id="f1",
        node_id="n1",
        hold_id="o1",
        grid=Grid.GRID3,
        region="europe",
        uptime_pct=Decimal("99.9"),
        resources=SHAPE,
        price_hour=usd("0.001"),
        term_hours=720,
        sla=SLA,
        firm=True,
        expires_at=T0 + timedelta(minutes=5),
    )
    offtaker.deliver(offer, f"nego-{rfq.negotiation_id}")
    after_deadline = rfq.deadline + SECOND

    sent = offtaker.brain.decide(after_deadline, offtaker.view)
    assert [type(c).__name__ for c in sent] == ["AcceptOffer"]
    assert offtaker.brain.decide(after_deadline + SECOND, offtaker.view) == []


def test_an_elapsed_backoff_is_no_longer_a_wakeup():
    offtaker = Offtaker()
    (rfq,) = offtaker.rfqs(T0)
    offtaker.fail(rfq, T0)
    (retry,) = offtaker.rfqs(T0 + SECOND)
    assert offtaker.brain.next_wakeup() == retry.deadline  # the open RFQ's deadline


# --- the whole loop: LocalMarket over a memory store and a manual clock ---------------------


class Loop:
    def __init__(self, policy: FarmerPolicy = DAY_TERMS_ONLY, nodes: int = 1) -> None:
        self.clock = ManualClock(T0)
        self.store = MemoryEventStore(self.clock)
        self.local = LocalMarket(self.store, self.clock)
        handle = self.local.service.handle
        handle(RegisterFarm(command_id="farm", farm_id="f1", name="f1", **FARM))
        for i in range(1, nodes + 1):
            handle(
                RegisterNode(
                    command_id=f"node-{i}",
                    node_id=f"n{i}",
                    farm_id="f1",
                    total=SHAPE.times(8),
                    **FARM,
                )
            )
        handle(SetFarmerPolicy(command_id="policy", farm_id="f1", policy=policy))
        handle(SetOfftakerMandate(command_id="mandate", offtaker_id="acme", mandate=mandate("web")))

    def run_until(self, end: datetime, tick: timedelta = SECOND / 4) -> None:
        while True:
            self.local.run_until_quiet()
            if self.clock.now() >= end:
                return
            self.clock.advance(tick)

    def types(self) -> list[str]:
        return [r.type for r in self.store.read_all(1, self.store.current_position() + 1)]

    def recorded(self, kind: str) -> list[float]:
        """Seconds after T0 at which events of ``kind`` were recorded."""
        rows = self.store.read_all(1, self.store.current_position() + 1)
        return [(r.envelope().recorded_at - T0).total_seconds() for r in rows if r.type == kind]


def test_a_mandate_every_farm_declines_is_asked_again_after_1_s_then_2_s_more():
    loop = Loop()

    loop.run_until(T0 + 2.75 * SECOND)
    assert loop.recorded("RfqIssued") == [0, 1]  # not again before 1 + 2 s
    assert loop.recorded("OfferDeclined") == [0, 1]
    assert loop.recorded("NegotiationFailed") == [0, 1]

    loop.run_until(T0 + 3 * SECOND)
    assert loop.recorded("RfqIssued") == [0, 1, 3]
    assert loop.local.rejected == []


def test_the_waits_double_up_to_16_s_in_the_whole_loop():
    loop = Loop()
    loop.run_until(T0 + 80 * SECOND, tick=SECOND / 2)
    assert loop.recorded("RfqIssued") == [0, 1, 3, 7, 15, 31, 47, 63, 79]
    assert loop.recorded("NegotiationFailed") == loop.recorded("RfqIssued")
    assert loop.local.rejected == []


# --- an acceptance the market voided ----------------------------------------------------------


def test_a_voided_acceptance_does_not_count_and_the_replica_is_found_elsewhere():
    loop = Loop(FarmerPolicy(price_cu_hour=usd("0.01")), nodes=2)
    while "OfferMade" not in loop.types():  # the farmer offers on n1
        loop.local.step()
    # n1 goes down before the offtaker accepts: the market voids that acceptance.
    loop.local.service.handle(
        ChangeNodeStatus(command_id="down", node_id="n1", status=NodeStatus.DOWN)
    )

    loop.run_until(T0 + 20 * SECOND)

    reasons = [reason for _, _, reason in loop.local.rejected]
    assert reasons == ["hold_ended"]  # the voided accept, and nothing after
    created = [e for e in _events(loop) if isinstance(e, ContractCreated)]
    assert [(c.node_id, c.workload_id) for c in created] == [("n2", "web")]


def _events(loop: Loop) -> list[Event]:
    rows = loop.store.read_all(1, loop.store.current_position() + 1)
    return [r.envelope().decode() for r in rows]


def test_an_accept_cut_short_by_a_crash_is_finished_after_a_restart():
    """The host died after the negotiation recorded OfferAccepted but before the node's
    ContractCreated: the restarted offtaker repeats the accept, then the award names only a
    contract that exists."""
    from hero.domain import negotiation as nego
    from hero.store import NewEvent

    clock = ManualClock(T0)
    store = MemoryEventStore(clock)
    market = LocalMarket(store, clock)
    policy = FarmerPolicy(price_cu_hour=usd("0.01"))
    market.service.handle(RegisterFarm(command_id="f", farm_id="f1", name="f1", **FARM))
    market.service.handle(
        RegisterNode(command_id="n", node_id="n1", farm_id="f1", total=SHAPE.times(4), **FARM)
    )
    market.service.handle(SetFarmerPolicy(command_id="p", farm_id="f1", policy=policy))
    market.service.handle(
        SetOfftakerMandate(command_id="m", offtaker_id="o1", mandate=mandate("web"))
    )
    while not any(r.type == "OfferMade" for r in store.read_all(1, 1000)):
        assert market.step() or market.catch_up(), "the offer never came"
    rows = store.read_all(1, 1000)
    offer = next(r.envelope().decode() for r in rows if r.type == "OfferMade")
    stream = nego.negotiation_stream(offer.negotiation_id)
    state = nego.fold([r.envelope().decode() for r in store.read_stream(stream)])
    accepted = state.accept(offer.offer_id, clock.now())  # the first half of the accept
    store.append(
        stream,
        store.stream_version(stream),
        [NewEvent.of(e, actor="offtaker:o1", occurred_at=clock.now()) for e in accepted],
        f"offtaker:o1:{offer.negotiation_id}:accept:{offer.offer_id}",
    )

    restarted = LocalMarket(store, clock)  # a new host: state rebuilt from the log
    restarted.run_until_quiet()
    events = [r.envelope().decode() for r in store.read_all(1, 1000)]
    contracts = [e.contract_id for e in events if isinstance(e, ContractCreated)]
    awards = [e for e in events if isinstance(e, NegotiationAwarded)]
    assert contracts == [nego.contract_id_for(offer.negotiation_id, offer.offer_id)]
    assert [a.contract_ids for a in awards] == [contracts]


# --- mandates nothing satisfies ---------------------------------------------------------------


def test_the_backoff_grows_past_16_s_once_the_market_has_failed_twenty_times_in_a_row():
    waits = [failure_backoff(n).total_seconds() for n in range(1, 30)]
    assert waits[:20] == [1, 2, 4, 8] + [16] * 16
    assert waits[20:] == [32, 64, 128, 256, 512, 900, 900, 900, 900]
    assert failure_backoff(10_000) == HOPELESS_BACKOFF_MAX


def test_a_mandate_no_farm_serves_costs_a_few_rfqs_an_hour_not_hundreds():
    """Two such mandates wrote about 200 events a minute, for ever."""
    loop = Loop()
    loop.run_until(T0 + timedelta(hours=1), tick=5 * SECOND)
    rfqs = loop.recorded("RfqIssued")
    assert 20 < len(rfqs) < 35, rfqs  # at 16 s for ever it would be about 200
    assert rfqs[-1] - rfqs[-2] >= HOPELESS_BACKOFF_MAX.total_seconds()


def test_a_recorded_mandate_with_a_negative_budget_asks_the_market_nothing():
    """Such mandates are refused where they enter now; an old store may hold one. Its agent
    issued an RFQ, failed, and asked again for ever."""
    from hero.store import NewEvent

    loop = Loop(policy=FarmerPolicy(price_cu_hour=usd("0.01")))
    broken = mandate("web").model_copy(update={"budget_month": usd("-400")})
    event = OfftakerMandateSet(offtaker_id="old", mandate=broken)
    loop.store.append(
        "offtaker-old", 0, [NewEvent.of(event, actor="old-cli", occurred_at=T0)], "old-mandate"
    )
    loop.run_until(T0 + 60 * SECOND, tick=SECOND)
    old_rfqs = [
        r for r in loop.store.read_all(1, 10_000)
        if r.type == "RfqIssued" and r.envelope().payload["offtaker_id"] == "old"
    ]  # fmt: skip
    assert old_rfqs == []
    brain = loop.local.agents.brains.get("offtaker:old")
    assert isinstance(brain, OfftakerBrain)
    assert brain.mandate_refused == "budget_month is -400 USD: nothing can be bought with it"
    assert loop.local.rejected == []
