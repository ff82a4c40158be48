"""A farmer's auto-accept policy applied to an RFQ: which nodes to offer, at what price, or why not.

Pure: the same RFQ, policy and market view always give the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from agents.market import FarmView, MarketView, NodeView
from agents.strategies.guardrails import NodeRoom
from hero.domain.pricing import ask_price, floor_price, hourly_price_at
from schemas import FarmerPolicy, Money, Resources, RfqIssued
from schemas.catalogue.common import DeclineReason, NodeStatus
from schemas.catalogue.policies import PolicyMode

__all__ = [
    "Decline",
    "OfferPlan",
    "ask_price",
    "evaluate",
    "floor_price",
    "node_rooms",
    "plan_offers",
    "terms_refused",
]


@dataclass(frozen=True)
class OfferPlan:
    node_id: str
    price_hour: Money
    firm: bool


@dataclass(frozen=True)
class Decline:
    reasons: tuple[DeclineReason, ...]
    detail: str


def _terms_refused(
    rfq: RfqIssued, farm: FarmView, policy: FarmerPolicy | None, standing: Decimal
) -> list[DeclineReason]:
    if policy is None or policy.mode == PolicyMode.OFF:
        return [DeclineReason.POLICY_OFF]
    reasons: list[DeclineReason] = []
    denied = rfq.offtaker_id in policy.deny_offtakers
    if denied or (policy.allow_offtakers and rfq.offtaker_id not in policy.allow_offtakers):
        reasons.append(DeclineReason.OFFTAKER_DENIED)
    if standing < policy.min_standing:
        reasons.append(DeclineReason.STANDING_TOO_LOW)
    if (policy.regions and farm.region not in policy.regions) or (
        rfq.regions and farm.region not in rfq.regions
    ):
        reasons.append(DeclineReason.REGION_NOT_SERVED)
    if farm.grid not in policy.grids or farm.grid not in rfq.grids:
        reasons.append(DeclineReason.GRID_NOT_SERVED)
    if policy.max_term_hours is not None and rfq.term_hours > policy.max_term_hours:
        reasons.append(DeclineReason.TERM_TOO_LONG)
    if policy.sla.uptime_pct < rfq.min_uptime_pct or (rfq.certified_only and not farm.certified):
        reasons.append(DeclineReason.SLA_NOT_MET)
    return reasons


def _keeps_reserve(node: NodeView, resources: Resources, share: Decimal, now: datetime) -> bool:
    """After the offer, at least ``share`` of the node's cores and memory stay free."""
    free = node.free(now)
    if not resources.fits_in(free):
        return False
    left_cru = Decimal(free.cru - resources.cru)
    left_mru = Decimal(free.mru - resources.mru)
    return left_cru >= share * node.total.cru and left_mru >= share * node.total.mru


def terms_refused(rfq: RfqIssued, farm: FarmView, market: MarketView) -> list[DeclineReason]:
    """Why the farm's policy refuses the RFQ whatever the node: lists, region, grid, term."""
    return _terms_refused(rfq, farm, farm.policy, market.standing_of(rfq.offtaker_id))


def node_rooms(rfq: RfqIssued, farm: FarmView, market: MarketView, now: datetime) -> list[NodeRoom]:
    """Every node of the farm, with whether it may take one replica and at what prices."""
    ceiling = hourly_price_at(rfq.max_price_cu_hour, rfq.resources)
    rooms: list[NodeRoom] = []
    for node in sorted(market.farm_nodes(farm.farm_id), key=lambda n: n.node_id):
        policy = farm.policy_for(node.node_id)
        if policy is None or policy.mode == PolicyMode.OFF:
            zero = Money.zero("USD")
            rooms.append(NodeRoom(node.node_id, zero, zero, "the policy is off for this node"))
            continue
        ask, floor = ask_price(policy, rfq.resources), floor_price(policy, rfq.resources)
        room = NodeRoom(node.node_id, min(ask, ceiling), floor, firm=policy.mode == PolicyMode.AUTO)
        if node.status != NodeStatus.UP:
            room = replace(room, why_not=f"the node is {node.status.value}")
        elif not _keeps_reserve(node, rfq.resources, policy.reserve_share, now):
            room = replace(
                room,
                why_not=f"no room for the replica while keeping {policy.reserve_share:%} free",
            )
        elif floor > ceiling:
            room = replace(room, why_not="our floor is above the RFQ's maximum", below_floor=True)
        rooms.append(room)
    return rooms


def evaluate(
    rfq: RfqIssued, farm: FarmView, market: MarketView, now: datetime
) -> list[OfferPlan] | Decline:
    """Up to ``rfq.replicas`` offers on distinct nodes of the farm, or a decline with reasons."""
    return plan_offers(rfq, terms_refused(rfq, farm, market), node_rooms(rfq, farm, market, now))


def plan_offers(
    rfq: RfqIssued, refused: list[DeclineReason], rooms: list[NodeRoom]
) -> list[OfferPlan] | Decline:
    """:func:`evaluate` from the terms refused and the node rooms already worked out."""
    if refused:
        return Decline(tuple(refused), "the farm's policy does not serve this request")
    plans = [OfferPlan(r.node_id, r.ask, r.firm) for r in rooms if not r.why_not]
    if plans:
        return plans[: rfq.replicas]
    if any(r.below_floor for r in rooms):
        return Decline((DeclineReason.BELOW_FLOOR,), "the offtaker's maximum is below our floor")
    return Decline((DeclineReason.INSUFFICIENT_CAPACITY,), "no node has the capacity free")
