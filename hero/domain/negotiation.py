"""The negotiation aggregate: open -> offers -> awarded | failed | expired.

It keeps the terms: which offers exist (each backed by a hold), which are firm, countered,
withdrawn or accepted, and never accepts more offers than replicas wanted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from hero.domain.errors import Rejected
from schemas import (
    CounterAccepted,
    CounterOffered,
    CounterRejected,
    DeclineRfq,
    Event,
    Money,
    NegotiationAwarded,
    NegotiationExpired,
    NegotiationFailed,
    OfferAccepted,
    OfferApproved,
    OfferDeclined,
    OfferMade,
    OfferWithdrawn,
    RfqIssued,
)
from schemas.catalogue.common import DeclineReason, StrategyDecision

__all__ = [
    "NegotiationState",
    "OfferState",
    "contract_id_for",
    "evolve",
    "fold",
    "negotiation_stream",
]

Status = Literal["new", "open", "awarded", "failed", "expired"]
OfferStatus = Literal["open", "withdrawn", "accepted", "released"]


def negotiation_stream(negotiation_id: str) -> str:
    return f"nego-{negotiation_id}"


def contract_id_for(negotiation_id: str, offer_id: str) -> str:
    """Offer ids are unique within a negotiation and negotiation ids market-wide."""
    return f"ctr.{negotiation_id}.{offer_id}"


@dataclass(frozen=True, slots=True)
class OfferState:
    offer: OfferMade
    firm: bool
    status: OfferStatus = "open"
    counter: Money | None = None
    counter_answer: bool | None = None
    contract_id: str | None = None

    @property
    def price_hour(self) -> Money:
        """The agreed price: the counter when the farmer accepted it, else the ask."""
        return (
            self.counter
            if self.counter is not None and self.counter_answer
            else self.offer.price_hour
        )

    def live(self, now: datetime) -> bool:
        return self.status == "open" and self.offer.expires_at > now


@dataclass(frozen=True, slots=True)
class NegotiationState:
    status: Status = "new"
    rfq: RfqIssued | None = None
    offers: dict[str, OfferState] = field(default_factory=dict)
    declines: dict[str, tuple[DeclineReason, ...]] = field(default_factory=dict)

    @property
    def accepted(self) -> list[OfferState]:
        return [o for o in self.offers.values() if o.status == "accepted"]

    def open_rfq(self) -> RfqIssued:
        if self.rfq is None:
            raise Rejected("unknown_negotiation", "no RFQ was issued for this negotiation")
        if self.status != "open":
            raise Rejected("negotiation_closed", f"negotiation is {self.status}")
        return self.rfq

    def offer(self, offer_id: str) -> OfferState:
        offer = self.offers.get(offer_id)
        if offer is None:
            raise Rejected("unknown_offer", f"no offer {offer_id} in this negotiation")
        return offer

    # -- decisions -------------------------------------------------------------------------

    def issue(self, rfq: RfqIssued) -> list[Event]:
        if self.rfq is not None:
            raise Rejected("duplicate_negotiation", f"negotiation {rfq.negotiation_id} exists")
        return [rfq]

    def make_offer(self, offer: OfferMade, now: datetime) -> list[Event]:
        rfq = self.open_rfq()
        if offer.offer_id in self.offers:
            raise Rejected("duplicate_offer", f"offer {offer.offer_id} exists")
        if rfq.invited_farms and offer.farm_id not in rfq.invited_farms:
            raise Rejected("not_invited", f"farm {offer.farm_id} was not invited")
        if now >= rfq.deadline:
            raise Rejected("too_late", "the RFQ's deadline has passed")
        if offer.resources != rfq.resources:
            raise Rejected("resources_mismatch", "an offer covers one replica as asked")
        return [offer]

    def decline(self, command: DeclineRfq) -> list[Event]:
        self.open_rfq()
        return [
            OfferDeclined(
                negotiation_id=command.negotiation_id,
                farm_id=command.farm_id,
                node_id=command.node_id,
                reasons=command.reasons,
                detail=command.detail,
                decision=command.decision,
            )
        ]

    def approve(self, offer_id: str, now: datetime) -> list[Event]:
        self.open_rfq()
        offer = self.offer(offer_id)
        if offer.firm:
            raise Rejected("already_firm", f"offer {offer_id} does not await approval")
        if not offer.live(now):
            raise Rejected("offer_expired", f"offer {offer_id} is {offer.status} or expired")
        return [
            OfferApproved(
                negotiation_id=offer.offer.negotiation_id,
                offer_id=offer_id,
                farm_id=offer.offer.farm_id,
            )
        ]

    def withdraw(self, offer_id: str, reason: str) -> list[Event]:
        """Withdraw an open offer (the farmer rejects it, or it cannot be held)."""
        return self._withdrawn(offer_id, reason, "open")

    def void(self, offer_id: str, reason: str) -> list[Event]:
        """Void an acceptance whose contract the node refused: the replica is free again."""
        return self._withdrawn(offer_id, reason, "accepted")

    def _withdrawn(self, offer_id: str, reason: str, status: OfferStatus) -> list[Event]:
        offer = self.offer(offer_id)
        if offer.status != status:
            return []
        return [
            OfferWithdrawn(
                negotiation_id=offer.offer.negotiation_id,
                offer_id=offer_id,
                farm_id=offer.offer.farm_id,
                reason=reason,
            )
        ]

    def counter(
        self,
        offer_id: str,
        price_hour: Money,
        now: datetime,
        decision: StrategyDecision | None = None,
    ) -> list[Event]:
        self.open_rfq()
        offer = self.offer(offer_id)
        if not offer.live(now):
            raise Rejected("offer_expired", f"offer {offer_id} is {offer.status} or expired")
        if offer.counter is not None:
            raise Rejected("already_countered", f"offer {offer_id} was countered once already")
        if price_hour >= offer.offer.price_hour:
            raise Rejected("not_below_ask", "a counter must be below the ask")
        return [
            CounterOffered(
                negotiation_id=offer.offer.negotiation_id,
                offer_id=offer_id,
                farm_id=offer.offer.farm_id,
                price_hour=price_hour,
                decision=decision,
            )
        ]

    def answer_counter(
        self,
        offer_id: str,
        accept: bool,
        reasons: list[DeclineReason],
        decision: StrategyDecision | None = None,
    ) -> list[Event]:
        self.open_rfq()
        offer = self.offer(offer_id)
        if offer.counter is None or offer.counter_answer is not None:
            raise Rejected("no_open_counter", f"offer {offer_id} has no counter to answer")
        nego, farm = offer.offer.negotiation_id, offer.offer.farm_id
        if accept:
            return [
                CounterAccepted(
                    negotiation_id=nego,
                    offer_id=offer_id,
                    farm_id=farm,
                    price_hour=offer.counter,
                    decision=decision,
                )
            ]
        return [
            CounterRejected(
                negotiation_id=nego,
                offer_id=offer_id,
                farm_id=farm,
                reasons=reasons or [DeclineReason.BELOW_FLOOR],
                decision=decision,
            )
        ]

    def accept(
        self, offer_id: str, now: datetime, decision: StrategyDecision | None = None
    ) -> list[Event]:
        rfq = self.open_rfq()
        offer = self.offer(offer_id)
        if not offer.live(now):
            raise Rejected("offer_expired", f"offer {offer_id} is {offer.status} or expired")
        if not offer.firm:
            raise Rejected("awaiting_approval", f"offer {offer_id} awaits the farmer's approval")
        if offer.counter is not None and offer.counter_answer is None:
            raise Rejected("counter_pending", f"offer {offer_id} has an unanswered counter")
        if len(self.accepted) >= rfq.replicas:
            raise Rejected("enough_accepted", f"{rfq.replicas} replica(s) already awarded")
        return [
            OfferAccepted(
                negotiation_id=rfq.negotiation_id,
                offer_id=offer_id,
                farm_id=offer.offer.farm_id,
                contract_id=contract_id_for(rfq.negotiation_id, offer_id),
                price_hour=offer.price_hour,
                decision=decision,
            )
        ]

    def close(
        self,
        outcome: Literal["awarded", "failed", "expired"],
        reason: str,
        decisions: Sequence[StrategyDecision] = (),
    ) -> list[Event]:
        rfq = self.open_rfq()
        released = sorted(o for o, s in self.offers.items() if s.status == "open")
        contracts = [o.contract_id for o in self.accepted if o.contract_id]
        nego, offtaker = rfq.negotiation_id, rfq.offtaker_id
        if outcome == "awarded":
            if not contracts:
                raise Rejected("nothing_accepted", "an award needs at least one accepted offer")
            return [
                NegotiationAwarded(
                    negotiation_id=nego,
                    offtaker_id=offtaker,
                    contract_ids=contracts,
                    released_offers=released,
                    decisions=list(decisions),
                )
            ]
        if outcome == "expired":
            return [
                NegotiationExpired(
                    negotiation_id=nego,
                    offtaker_id=offtaker,
                    released_offers=released,
                    decisions=list(decisions),
                )
            ]
        return [
            NegotiationFailed(
                negotiation_id=nego,
                offtaker_id=offtaker,
                reason=reason or "no acceptable offer",
                released_offers=released,
                decisions=list(decisions),
            )
        ]


def evolve(state: NegotiationState, event: Event) -> NegotiationState:
    match event:
        case RfqIssued():
            return replace(state, status="open", rfq=event)
        case OfferMade():
            return _with_offer(state, event.offer_id, OfferState(event, firm=event.firm))
        case OfferDeclined():
            return replace(state, declines={**state.declines, event.farm_id: tuple(event.reasons)})
        case OfferApproved():
            return _update(state, event.offer_id, firm=True)
        case OfferWithdrawn():
            return _update(state, event.offer_id, status="withdrawn")
        case CounterOffered():
            return _update(state, event.offer_id, counter=event.price_hour)
        case CounterAccepted():
            return _update(state, event.offer_id, counter_answer=True)
        case CounterRejected():
            return _update(state, event.offer_id, counter_answer=False)
        case OfferAccepted():
            return _update(state, event.offer_id, status="accepted", contract_id=event.contract_id)
        case NegotiationAwarded() | NegotiationFailed() | NegotiationExpired():
            status: Status = (
                "awarded"
                if isinstance(event, NegotiationAwarded)
                else "expired"
                if isinstance(event, NegotiationExpired)
                else "failed"
            )
            offers = {
                k: replace(v, status="released") if k in event.released_offers else v
                for k, v in state.offers.items()
            }
            return replace(state, status=status, offers=offers)
    return state


def fold(events: list[Event], state: NegotiationState | None = None) -> NegotiationState:
    current = state or NegotiationState()
    for event in events:
        current = evolve(current, event)
    return current


def _with_offer(state: NegotiationState, offer_id: str, offer: OfferState) -> NegotiationState:
    return replace(state, offers={**state.offers, offer_id: offer})


def _update(state: NegotiationState, offer_id: str, **changes: object) -> NegotiationState:
    offer = state.offers.get(offer_id)
    if offer is None:
        return state
    return _with_offer(state, offer_id, replace(offer, **changes))  # type: ignore[arg-type]
