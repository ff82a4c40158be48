"""A farmer's auto-accept policy applied to an RFQ: which nodes to offer, at what price, or why not.

Pure: the same RFQ, policy and market view always give the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from agents.market import FarmView, MarketView, NodeView
from hero.domain.pricing import ask_price, floor_price, hourly_price_at
from schemas import FarmerPolicy, Money, Resources, RfqIssued
from schemas.catalogue.common import DeclineReason, NodeStatus
from schemas.catalogue.policies import PolicyMode

__all__ = ["Decline", "OfferPlan", "ask_price", "evaluate", "floor_price"]


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


def evaluate(
    rfq: RfqIssued, farm: FarmView, market: MarketView, now: datetime
) -> list[OfferPlan] | Decline:
    """Up to ``rfq.replicas`` offers on distinct nodes of the farm, or a decline with reasons."""
    reasons = _terms_refused(rfq, farm, farm.policy, market.standing_of(rfq.offtaker_id))
    if reasons:
        return Decline(tuple(reasons), "the farm's policy does not serve this request")
    plans: list[OfferPlan] = []
    too_cheap = False
    for node in sorted(market.farm_nodes(farm.farm_id), key=lambda n: n.node_id):
        policy = farm.policy_for(node.node_id)
        if policy is None or policy.mode == PolicyMode.OFF or node.status != NodeStatus.UP:
            continue
        if not _keeps_reserve(node, rfq.resources, policy.reserve_share, now):
            continue
        ceiling = hourly_price_at(rfq.max_price_cu_hour, rfq.resources)
        floor = floor_price(policy, rfq.resources)
        if floor > ceiling:
            too_cheap = True
            continue
        price = min(ask_price(policy, rfq.resources), ceiling)
        plans.append(OfferPlan(node.node_id, price, firm=policy.mode == PolicyMode.AUTO))
        if len(plans) >= rfq.replicas:
            break
    if plans:
        return plans
    if too_cheap:
        return Decline((DeclineReason.BELOW_FLOOR,), "the offtaker's maximum is below our floor")
    return Decline((DeclineReason.INSUFFICIENT_CAPACITY,), "no node has the capacity free")
