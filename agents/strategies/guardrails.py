"""Hard limits applied to a model's move after it is made. Pure: no I/O, no model.

A move outside the limits is clamped when a nearby move is inside them (a counter above the
ceiling becomes a counter at the ceiling) and refused otherwise (an accept over budget); every
change is reported as a :class:`~schemas.GuardrailHit`, which the agent records on the event.
A refused move leaves the decision to the rules, which apply the same limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from agents.strategies.moves import Move
from hero.domain.pricing import HOURS_PER_MONTH, hourly_price_at, price_per_cu_hour
from schemas import GuardrailHit, Money, Resources

__all__ = [
    "FarmerLimits",
    "Guarded",
    "NodeRoom",
    "OfftakerLimits",
    "guard_counter_answer",
    "guard_farmer_offer",
    "guard_offtaker",
]


@dataclass(frozen=True)
class Guarded:
    """The move to make (``None``: refused) and what the guardrails did to it. For a farmer
    answering an RFQ, ``offers`` are the (node, price per replica-hour) to offer."""

    move: Move | None
    hits: tuple[GuardrailHit, ...] = ()
    offers: tuple[tuple[str, Money], ...] = ()

    @property
    def refused(self) -> bool:
        return self.move is None


def _hit(rule: str, outcome: str, detail: str) -> GuardrailHit:
    return GuardrailHit.model_validate({"rule": rule, "outcome": outcome, "detail": detail[:500]})


def _refused(hits: list[GuardrailHit], rule: str, detail: str) -> Guarded:
    return Guarded(None, (*hits, _hit(rule, "refused", detail)))


def _usd(amount: Decimal) -> Money:
    return Money(amount=amount, currency="USD")


# -- the offtaker: accept, counter or decline an offer ------------------------------------------


@dataclass(frozen=True)
class OfftakerLimits:
    """``agreed`` is what an accept binds now: the ask, or the counter the farmer took."""

    ask: Money
    agreed: Money
    resources: Resources
    max_price_cu_hour: Money
    budget_left_month: Money
    may_counter: bool
    counter_pending: bool = False

    @property
    def ceiling(self) -> Money:
        """The mandate's maximum, as a price for one replica-hour of these resources."""
        return hourly_price_at(self.max_price_cu_hour, self.resources)


def guard_offtaker(move: Move, limits: OfftakerLimits) -> Guarded:
    if move.action == "decline":
        return Guarded(move)
    if move.action == "accept":
        return _guard_accept(move, limits)
    return _guard_counter(move, limits)


def _guard_accept(move: Move, limits: OfftakerLimits) -> Guarded:
    if limits.counter_pending:
        return _refused([], "protocol", "the offer has a counter the farmer has not answered")
    per_cu = price_per_cu_hour(limits.agreed, limits.resources)
    if per_cu > limits.max_price_cu_hour:
        return _refused(
            [],
            "ceiling",
            f"accepting at {per_cu.amount} USD/CU-h is above the mandate's maximum "
            f"{limits.max_price_cu_hour.amount} USD/CU-h",
        )
    monthly = limits.agreed.times(HOURS_PER_MONTH)
    if monthly > limits.budget_left_month:
        return _refused(
            [],
            "budget",
            f"accepting adds {monthly.amount} USD a month; {limits.budget_left_month.amount} "
            "USD of the monthly budget is left",
        )
    return Guarded(move)


def _guard_counter(move: Move, limits: OfftakerLimits) -> Guarded:
    if not limits.may_counter:
        return _refused([], "protocol", "this offer was countered once already")
    if move.price_hour is None or move.price_hour <= 0:
        return _refused([], "protocol", "a counter needs a positive price_hour")
    hits: list[GuardrailHit] = []
    price = move.price_hour
    ceiling = limits.ceiling.amount
    if price > ceiling:
        hits.append(_hit("ceiling", "clamped", f"{price} USD/h above the maximum {ceiling}"))
        price = ceiling
    affordable = limits.budget_left_month.amount / HOURS_PER_MONTH
    if price > affordable:
        hits.append(
            _hit("budget", "clamped", f"{price} USD/h above what the budget allows, {affordable}")
        )
        price = affordable
    price = Money.rounded(price, "USD").amount
    if price <= 0:
        return _refused(hits, "budget", "no budget is left for this replica")
    if price >= limits.ask.amount:
        return _refused(hits, "protocol", f"a counter must be below the ask {limits.ask.amount}")
    return Guarded(move.model_copy(update={"price_hour": price}), tuple(hits))


# -- the farmer: answer an RFQ ----------------------------------------------------------------


@dataclass(frozen=True)
class NodeRoom:
    """One of the farm's nodes as the rules see it for this RFQ: may it take a replica
    (``why_not`` empty) and at what prices."""

    node_id: str
    ask: Money
    floor: Money
    why_not: str = ""
    firm: bool = True
    below_floor: bool = False


@dataclass(frozen=True)
class FarmerLimits:
    """``refused_terms``: why the policy refuses the RFQ at all (lists, term, grid...)."""

    ceiling: Money
    replicas: int
    nodes: Mapping[str, NodeRoom]
    refused_terms: tuple[tuple[str, str], ...] = ()
    default_nodes: tuple[str, ...] = ()


def guard_farmer_offer(move: Move, limits: FarmerLimits) -> Guarded:
    if move.action == "decline":
        return Guarded(move)
    hits: list[GuardrailHit] = []
    if limits.refused_terms:
        for rule, detail in limits.refused_terms:
            hits.append(_hit(rule, "refused", detail))
        return Guarded(None, tuple(hits))
    wanted = list(move.node_ids) or list(limits.default_nodes)
    chosen: list[NodeRoom] = []
    for node_id in wanted:
        room = limits.nodes.get(node_id)
        if room is None:
            hits.append(_hit("capacity", "refused", f"{node_id} is not a node of this farm"))
        elif room in chosen:
            hits.append(_hit("capacity", "refused", f"{node_id} named twice: one replica each"))
        elif room.why_not:
            hits.append(_hit("capacity", "refused", f"{node_id}: {room.why_not}"))
        else:
            chosen.append(room)
    if len(chosen) > limits.replicas:
        hits.append(
            _hit("capacity", "clamped", f"{len(chosen)} nodes for {limits.replicas} replica(s)")
        )
        chosen = chosen[: limits.replicas]
    if not chosen:
        return Guarded(None, (*hits, _hit("capacity", "refused", "no node can take a replica")))
    offers: list[tuple[str, Money]] = []
    for room in chosen:
        price = _offer_price(move, room, limits.ceiling, hits)
        if price is not None:
            offers.append((room.node_id, price))
    if not offers:
        return Guarded(None, tuple(hits))
    final = move.model_copy(update={"node_ids": [node for node, _ in offers]})
    return Guarded(final, tuple(hits), tuple(offers))


def _offer_price(
    move: Move, room: NodeRoom, ceiling: Money, hits: list[GuardrailHit]
) -> Money | None:
    if room.floor > ceiling:
        hits.append(
            _hit("floor", "refused", f"{room.node_id}: floor {room.floor.amount} above the "
                 f"RFQ's maximum {ceiling.amount} USD/h")
        )  # fmt: skip
        return None
    if move.action == "accept" or move.price_hour is None:
        return min(room.ask, ceiling)
    price = _usd(move.price_hour)
    if price < room.floor:
        hits.append(
            _hit("floor", "clamped", f"{room.node_id}: {price.amount} USD/h below the floor "
                 f"{room.floor.amount}")
        )  # fmt: skip
        price = room.floor
    if price > ceiling:
        hits.append(
            _hit("ceiling", "clamped", f"{room.node_id}: {price.amount} USD/h above the RFQ's "
                 f"maximum {ceiling.amount}")
        )  # fmt: skip
        price = ceiling
    return Money.rounded(price.amount, price.currency)


# -- the farmer: answer a counter ---------------------------------------------------------------


def guard_counter_answer(move: Move, counter: Money, floor: Money | None) -> Guarded:
    """Take a counter only at or above the floor; a farmer cannot counter a counter."""
    if move.action == "decline":
        return Guarded(move)
    if move.action == "counter":
        return _refused([], "protocol", "a counter is answered by accepting or declining it")
    if floor is None:
        return _refused([], "policy", "no policy covers this offer's node any more")
    if counter < floor:
        return _refused(
            [], "floor", f"the counter {counter.amount} USD/h is below the floor {floor.amount}"
        )
    return Guarded(move)
