"""``apply``: the one fold of the market's events into :class:`~hero.model.state.MarketState`.

A table from event class to the small function that applies it; the event classes the model
has no use for are listed in :data:`IGNORED`, so a new event type is a choice, not an accident
(``tests/unit/test_market_model.py`` checks every registered event is in one or the other).
Pure: the state is mutated in place, nothing else is touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hero.model import _flows, _market
from hero.model.state import MarketState
from schemas import (
    BalanceLow,
    CapacityHeld,
    CommandRejected,
    ContractCancelled,
    ContractCreated,
    ContractResumed,
    ContractSuspended,
    CounterAccepted,
    CounterOffered,
    CounterRejected,
    Envelope,
    Event,
    FarmerPolicySet,
    FarmRegistered,
    FiatConverted,
    FiatPaymentReceived,
    HoldExpired,
    HoldReleased,
    NegotiationAwarded,
    NegotiationExpired,
    NegotiationFailed,
    NodeRegistered,
    NodeStatusChanged,
    OfferAccepted,
    OfferApproved,
    OfferDeclined,
    OfferMade,
    OfferWithdrawn,
    OfftakerMandateSet,
    QuoteIssued,
    QuoteRefused,
    ReplicaMigrated,
    ReplicaPlaced,
    RfqIssued,
    ScaleDecided,
    SlaOutcomeRecorded,
    TransferPosted,
    UsageBilled,
    UsageRecorded,
    UtilizationSampled,
)

__all__ = ["HANDLERS", "IGNORED", "apply", "apply_all"]

# Each handler takes the event of its key's class; ``Any`` here only lets one table hold them.
Handler = Callable[[MarketState, Envelope, Any], None]

HANDLERS: dict[type[Event], Handler] = {
    FarmRegistered: _market.farm_registered,
    FarmerPolicySet: _market.farmer_policy_set,
    NodeRegistered: _market.node_registered,
    NodeStatusChanged: _market.node_status_changed,
    CapacityHeld: _market.capacity_held,
    HoldReleased: _market.hold_ended,
    HoldExpired: _market.hold_ended,
    ContractCreated: _market.contract_created,
    ContractCancelled: _market.contract_cancelled,
    ContractSuspended: _market.contract_suspended,
    ContractResumed: _market.contract_resumed,
    RfqIssued: _market.rfq_issued,
    OfferMade: _market.offer_made,
    OfferDeclined: _market.offer_declined,
    OfferApproved: _market.offer_approved,
    OfferWithdrawn: _market.offer_withdrawn,
    OfferAccepted: _market.offer_accepted,
    CounterOffered: _market.counter_offered,
    CounterAccepted: _market.counter_answered,
    CounterRejected: _market.counter_answered,
    NegotiationAwarded: _market.negotiation_closed,
    NegotiationFailed: _market.negotiation_closed,
    NegotiationExpired: _market.negotiation_closed,
    OfftakerMandateSet: _flows.mandate_set,
    UtilizationSampled: _flows.utilization_sampled,
    ScaleDecided: _flows.scale_decided,
    ReplicaPlaced: _flows.replica_placed,
    ReplicaMigrated: _flows.replica_migrated,
    SlaOutcomeRecorded: _flows.sla_outcome,
    UsageRecorded: _flows.usage_recorded,
    UsageBilled: _flows.usage_billed,
    TransferPosted: _flows.transfer_posted,
    BalanceLow: _flows.balance_low,
}

#: Events that change nothing the market's state holds: the treasury's steps before a
#: transfer (the transfer itself moves the balance), and the command processor's answer to a
#: refused command (nothing was written).
IGNORED: frozenset[type[Event]] = frozenset(
    {FiatPaymentReceived, QuoteIssued, QuoteRefused, FiatConverted, CommandRejected}
)


def apply(state: MarketState, envelope: Envelope, event: Event) -> None:
    """Fold one event into ``state``, in place. The caller drops repeats: the log's global
    order holds per stream only, so a position older than ``state.position`` is not one."""
    state.position = max(state.position, envelope.position)
    handler = HANDLERS.get(type(event))
    if handler is not None:
        handler(state, envelope, event)


def apply_all(
    items: Iterable[tuple[Envelope, Event]], state: MarketState | None = None
) -> MarketState:
    """``state`` (a new one by default) with every item applied in order."""
    state = state if state is not None else MarketState()
    for envelope, event in items:
        apply(state, envelope, event)
    return state
