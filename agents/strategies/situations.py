"""The questions agents ask a strategy: the negotiation so far and the limits, as JSON-able
facts a model can read. Pure.

``answer_by`` leaves the rules time to act before the negotiation moves on: an RFQ must be
answered before its deadline, an offer accepted before its hold expires.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

from agents.market import FarmView, MarketView
from agents.strategies.guardrails import FarmerLimits, OfftakerLimits
from agents.strategies.moves import Question
from hero.domain.pricing import price_per_cu_hour
from schemas import CounterOffered, Money, OfferMade, Resources, RfqIssued

__all__ = ["PATIENCE", "counter_question", "offer_question", "rfq_question"]

#: The longest an agent waits for a strategy's answer before the rules decide.
PATIENCE = timedelta(seconds=20)
#: Time kept for the move itself before the negotiation's own deadline: this much, or a
#: quarter of the time left when that is shorter (a 2-second RFQ window leaves the model 1.5 s).
MARGIN = timedelta(seconds=1)


def _answer_by(now: datetime, limit: datetime) -> datetime:
    left = limit - now
    return max(now, min(now + PATIENCE, limit - min(MARGIN, left / 4)))


def _question(
    agent_id: str,
    question_id: str,
    negotiation_id: str,
    role: Literal["offtaker", "farmer"],
    stage: Literal["offer", "rfq", "counter"],
    situation: dict[str, Any],
    now: datetime,
    limit: datetime,
) -> Question:
    """A question asked ``now`` about a move that must be made before ``limit``."""
    return Question(
        question_id=question_id,
        agent_id=agent_id,
        negotiation_id=negotiation_id,
        role=role,
        stage=stage,
        situation=situation,
        asked_at=now,
        answer_by=_answer_by(now, limit),
    )


def _usd(money: Money) -> str:
    return f"{money.amount} {money.currency}"


def _resources(resources: Resources) -> dict[str, Any]:
    return resources.model_dump(mode="json")


def _offer(offer: OfferMade) -> dict[str, Any]:
    return {
        "offer_id": offer.offer_id,
        "farm_id": offer.farm_id,
        "node_id": offer.node_id,
        "grid": offer.grid.value,
        "region": offer.region,
        "certified": offer.certified,
        "uptime_pct": str(offer.uptime_pct),
        "price_hour": _usd(offer.price_hour),
        "price_cu_hour": _usd(price_per_cu_hour(offer.price_hour, offer.resources)),
        "sla": offer.sla.model_dump(mode="json"),
        "term_hours": offer.term_hours,
        "expires_at": offer.expires_at.isoformat(),
    }


def _rfq(rfq: RfqIssued) -> dict[str, Any]:
    return {
        "negotiation_id": rfq.negotiation_id,
        "offtaker_id": rfq.offtaker_id,
        "workload_id": rfq.workload_id,
        "resources_per_replica": _resources(rfq.resources),
        "replicas": rfq.replicas,
        "regions": rfq.regions,
        "grids": [g.value for g in rfq.grids],
        "min_uptime_pct": str(rfq.min_uptime_pct),
        "max_price_cu_hour": _usd(rfq.max_price_cu_hour),
        "term_hours": rfq.term_hours,
        "certified_only": rfq.certified_only,
        "deadline": rfq.deadline.isoformat(),
    }


def offer_question(
    agent_id: str,
    question_id: str,
    rfq: RfqIssued,
    offer: OfferMade,
    limits: OfftakerLimits,
    *,
    counter: tuple[Money, bool | None] | None,
    others: Iterable[OfferMade],
    needed: int,
    spend_month: Money,
    now: datetime,
) -> Question:
    """The offtaker's question: what to do with ``offer`` (accept, counter, decline)."""
    situation: dict[str, Any] = {
        "you_are": "the offtaker's buying agent",
        "request": _rfq(rfq),
        "replicas_still_needed": needed,
        "offer": _offer(offer),
        "counter": None
        if counter is None
        else {
            "price_hour": _usd(counter[0]),
            "farmer_answer": {None: "pending", True: "accepted", False: "rejected"}[counter[1]],
        },
        "other_offers": [_offer(o) for o in others if o.offer_id != offer.offer_id][:10],
        "limits": {
            "max_price_cu_hour": _usd(limits.max_price_cu_hour),
            "max_price_hour_for_this_offer": _usd(limits.ceiling),
            "spend_month": _usd(spend_month),
            "budget_left_month": _usd(limits.budget_left_month),
            "hours_per_month": 720,
            "may_counter": limits.may_counter,
            "accept_would_pay_hour": _usd(limits.agreed),
        },
    }
    return _question(agent_id, question_id, rfq.negotiation_id, "offtaker", "offer", situation,
                     now, offer.expires_at)  # fmt: skip


def rfq_question(
    agent_id: str,
    rfq: RfqIssued,
    farm: FarmView,
    market: MarketView,
    limits: FarmerLimits,
    now: datetime,
) -> Question:
    """The farmer's question: offer on which nodes at what price, or decline."""
    policy = farm.policy
    situation: dict[str, Any] = {
        "you_are": "the farmer's selling agent",
        "request": _rfq(rfq),
        "offtaker_standing": str(market.standing_of(rfq.offtaker_id)),
        "farm": {
            "farm_id": farm.farm_id,
            "grid": farm.grid.value,
            "region": farm.region,
            "certified": farm.certified,
        },
        "policy": policy.model_dump(mode="json") if policy else None,
        "policy_refuses": [detail for _, detail in limits.refused_terms],
        "max_price_hour_for_one_replica": _usd(limits.ceiling),
        "nodes": [
            {
                "node_id": room.node_id,
                "can_take_a_replica": not room.why_not,
                "why_not": room.why_not or None,
                "ask_price_hour": _usd(room.ask),
                "floor_price_hour": _usd(room.floor),
            }
            for room in limits.nodes.values()
        ],
        "rules_would_offer_on": list(limits.default_nodes),
    }
    nego = rfq.negotiation_id
    return _question(agent_id, f"{nego}:rfq", nego, "farmer", "rfq", situation, now, rfq.deadline)


def counter_question(
    agent_id: str,
    counter: CounterOffered,
    offer: OfferMade,
    floor: Money | None,
    now: datetime,
) -> Question:
    """The farmer's question: take the offtaker's counter or decline it."""
    situation: dict[str, Any] = {
        "you_are": "the farmer's selling agent",
        "our_offer": _offer(offer),
        "counter_price_hour": _usd(counter.price_hour),
        "floor_price_hour": _usd(floor) if floor is not None else None,
    }
    nego = counter.negotiation_id
    question_id = f"{nego}:{counter.offer_id}:counter"
    return _question(agent_id, question_id, nego, "farmer", "counter", situation, now,
                     offer.expires_at)  # fmt: skip
