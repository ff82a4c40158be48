"""The market model: one pure fold of the log (:func:`apply`) into typed state.

Imports only ``schemas`` and ``hero.domain``; every reader of the market is a view over it.
"""

from hero.model.compact import COMPACT_AFTER_S, Compacted, compact, compact_at
from hero.model.fold import HANDLERS, IGNORED, apply, apply_all
from hero.model.parts import LEDGER, Part, join_parts, part_types
from hero.model.state import (
    LAST_TRANSFERS,
    Account,
    AccountBook,
    Contract,
    ContractStatus,
    Decline,
    Farm,
    HourUsage,
    MarketState,
    Migration,
    Negotiation,
    NegotiationStatus,
    Node,
    Offer,
    OfferStatus,
    Placement,
    Replica,
    SlaOutcome,
    Suspension,
    TransferLine,
    Usage,
    Workload,
)

__all__ = [
    "COMPACT_AFTER_S",
    "HANDLERS",
    "IGNORED",
    "LAST_TRANSFERS",
    "LEDGER",
    "Account",
    "AccountBook",
    "Compacted",
    "Contract",
    "ContractStatus",
    "Decline",
    "Farm",
    "HourUsage",
    "MarketState",
    "Migration",
    "Negotiation",
    "NegotiationStatus",
    "Node",
    "Offer",
    "OfferStatus",
    "Part",
    "Placement",
    "Replica",
    "SlaOutcome",
    "Suspension",
    "TransferLine",
    "Usage",
    "Workload",
    "apply",
    "apply_all",
    "compact",
    "compact_at",
    "join_parts",
    "part_types",
]
