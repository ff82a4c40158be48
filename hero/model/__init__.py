"""The market model: one pure fold of the log (:func:`apply`) into typed state.

Imports only ``schemas`` and ``hero.domain``; every reader of the market is a view over it.
"""

from hero.model.fold import HANDLERS, IGNORED, apply, apply_all
from hero.model.state import (
    Account,
    Contract,
    ContractStatus,
    Decline,
    Farm,
    MarketState,
    Negotiation,
    NegotiationStatus,
    Node,
    Offer,
    OfferStatus,
    Replica,
    SlaOutcome,
    Usage,
)

__all__ = [
    "HANDLERS",
    "IGNORED",
    "Account",
    "Contract",
    "ContractStatus",
    "Decline",
    "Farm",
    "MarketState",
    "Negotiation",
    "NegotiationStatus",
    "Node",
    "Offer",
    "OfferStatus",
    "Replica",
    "SlaOutcome",
    "Usage",
    "apply",
    "apply_all",
]
