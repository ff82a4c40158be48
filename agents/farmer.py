"""The farmer agent: answers RFQs by its farm's policy, answers counters, sweeps expired holds."""

from __future__ import annotations

from datetime import datetime, timedelta

from agents._inflight import InFlight
from agents.brain import Brain
from agents.market import MarketView
from agents.policy import Decline, evaluate, floor_price
from schemas import (
    AnswerCounter,
    CapacityHeld,
    Command,
    ContractCreated,
    CounterAccepted,
    CounterOffered,
    CounterRejected,
    DeclineRfq,
    Envelope,
    Event,
    ExpireHolds,
    HoldExpired,
    HoldReleased,
    MakeOffer,
    NegotiationAwarded,
    NegotiationExpired,
    NegotiationFailed,
    OfferDeclined,
    OfferMade,
    RfqIssued,
)
from schemas.catalogue.common import DeclineReason

__all__ = ["FarmerBrain", "offer_id_for"]

#: How long a firm offer's hold outlives the RFQ's deadline, for the offtaker to accept it.
FIRM_HOLD_AFTER_DEADLINE = timedelta(seconds=30)
#: A hold past its deadline is swept this long after, so the sweep never races an accept.
SWEEP_GRACE = timedelta(seconds=1)


def offer_id_for(negotiation_id: str, farm_id: str, index: int) -> str:
    return f"{negotiation_id}.{farm_id}.{index}"


class FarmerBrain(Brain):
    __slots__ = ("_counters", "_holds", "_inflight", "_offers", "_rfqs", "farm_id")

    def __init__(self, farm_id: str):
        super().__init__(f"farmer:{farm_id}")
        self.farm_id = farm_id
        self._rfqs: dict[str, RfqIssued] = {}  # RFQs not answered yet
        self._counters: dict[str, CounterOffered] = {}  # counters not answered yet
        self._offers: dict[str, OfferMade] = {}  # our offers in open negotiations
        self._holds: dict[str, datetime] = {}  # live holds on our nodes -> deadline
        self._inflight = InFlight()

    def observe(self, envelope: Envelope, event: Event, market: MarketView) -> None:
        match event:
            case RfqIssued():
                if not event.invited_farms or self.farm_id in event.invited_farms:
                    self._rfqs[event.negotiation_id] = event
            case OfferMade() | OfferDeclined() if event.farm_id == self.farm_id:
                self._rfqs.pop(event.negotiation_id, None)
                self._inflight.done_prefix(f"answer:{event.negotiation_id}")
                if isinstance(event, OfferMade):
                    self._offers[event.offer_id] = event
            case CapacityHeld():
                self._holds[event.hold_id] = event.expires_at
            case HoldReleased() | HoldExpired():
                self._holds.pop(event.hold_id, None)
            case ContractCreated() if event.farm_id == self.farm_id:
                self._holds.pop(event.hold_id, None)
            case CounterOffered() if event.farm_id == self.farm_id:
                self._counters[event.offer_id] = event
            case CounterAccepted() | CounterRejected() if event.farm_id == self.farm_id:
                self._counters.pop(event.offer_id, None)
                self._inflight.done(f"counter:{event.offer_id}")
            case NegotiationAwarded() | NegotiationFailed() | NegotiationExpired():
                self._rfqs.pop(event.negotiation_id, None)
                ended = [
                    o
                    for o, offer in self._offers.items()
                    if offer.negotiation_id == event.negotiation_id
                ]
                for offer_id in ended:
                    del self._offers[offer_id]
                    self._counters.pop(offer_id, None)

    def decide(self, now: datetime, market: MarketView) -> list[Command]:
        commands: list[Command] = []
        farm = market.farms.get(self.farm_id)
        if farm is None:
            return commands
        for nego_id, rfq in list(self._rfqs.items()):
            if rfq.deadline <= now:
                del self._rfqs[nego_id]
                continue
            key = f"answer:{nego_id}"
            if not self._inflight.due(key, now):
                continue
            self._inflight.mark(key, now)
            commands += self._answer(rfq, farm, market, now)
        for offer_id, counter in list(self._counters.items()):
            key = f"counter:{offer_id}"
            if self._inflight.due(key, now):
                self._inflight.mark(key, now)
                commands.append(self._answer_counter(counter, market))
        commands += self._sweep(market, now)
        return commands

    def next_wakeup(self) -> datetime | None:
        """When the earliest live hold on our nodes is due for the sweep."""
        return min(self._holds.values()) + SWEEP_GRACE if self._holds else None

    def _answer(
        self, rfq: RfqIssued, farm: object, market: MarketView, now: datetime
    ) -> list[Command]:
        plan = evaluate(rfq, farm, market, now)  # type: ignore[arg-type]
        base = f"{self.agent_id}:{rfq.negotiation_id}"
        if isinstance(plan, Decline):
            return [
                DeclineRfq(
                    command_id=f"{base}:decline",
                    negotiation_id=rfq.negotiation_id,
                    farm_id=self.farm_id,
                    reasons=list(plan.reasons),
                    detail=plan.detail,
                )
            ]
        policy = market.farms[self.farm_id].policy
        assert policy is not None
        commands: list[Command] = []
        for index, offer in enumerate(plan):
            expires = (
                rfq.deadline + FIRM_HOLD_AFTER_DEADLINE
                if offer.firm
                else now + timedelta(seconds=policy.approval_ttl_s)
            )
            commands.append(
                MakeOffer(
                    command_id=f"{base}:offer:{index}",
                    negotiation_id=rfq.negotiation_id,
                    offer_id=offer_id_for(rfq.negotiation_id, self.farm_id, index),
                    farm_id=self.farm_id,
                    node_id=offer.node_id,
                    price_hour=offer.price_hour,
                    term_hours=rfq.term_hours,
                    sla=policy.sla,
                    firm=offer.firm,
                    expires_at=expires,
                )
            )
        return commands

    def _answer_counter(self, counter: CounterOffered, market: MarketView) -> Command:
        """Take a counter at or above our floor for that offer, refuse one below it."""
        offer = self._offers.get(counter.offer_id)
        policy = market.farms[self.farm_id].policy_for(offer.node_id) if offer else None
        accept = (
            offer is not None
            and policy is not None
            and counter.price_hour >= floor_price(policy, offer.resources)
        )
        return AnswerCounter(
            command_id=f"{self.agent_id}:{counter.offer_id}:counter",
            negotiation_id=counter.negotiation_id,
            offer_id=counter.offer_id,
            accept=accept,
            reasons=[] if accept else [DeclineReason.BELOW_FLOOR],
        )

    def _sweep(self, market: MarketView, now: datetime) -> list[Command]:
        """Expire holds past their deadline on our nodes (every hold ends)."""
        commands: list[Command] = []
        for node in market.farm_nodes(self.farm_id):
            expired = node.expired_holds(now - SWEEP_GRACE)
            if not expired:
                continue
            key = f"sweep:{node.node_id}:{expired[-1]}"
            if self._inflight.due(key, now):
                self._inflight.mark(key, now)
                commands.append(
                    ExpireHolds(
                        command_id=f"{self.agent_id}:expire:{node.node_id}:"
                        f"{len(expired)}:{expired[-1]}",
                        node_id=node.node_id,
                    )
                )
        return commands
