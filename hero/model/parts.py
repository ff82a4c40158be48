"""The model's state in two parts whose events touch nothing of each other: the ledger
(transfer legs, the balances and books they make, the low-balance warnings) and the market
(everything else). Each part can be folded on its own, in another process, from its own
events in log order, and the two joined: the same state as one fold of the whole log, since
no handler of one part reads or writes the other's fields
(``tests/unit/test_model_parts.py`` checks it on the golden history and a generated log).
"""

from __future__ import annotations

from hero.model.state import MarketState
from schemas import BalanceLow, Event, TransferPosted

__all__ = ["LEDGER_EVENTS", "LEDGER_FIELDS", "LEDGER_TYPES", "join_ledger"]

#: The events of the ledger part: their handlers (hero.model._flows) touch only
#: :data:`LEDGER_FIELDS` and no other handler touches those.
LEDGER_EVENTS: frozenset[type[Event]] = frozenset({TransferPosted, BalanceLow})
LEDGER_TYPES: frozenset[str] = frozenset(t.__name__ for t in LEDGER_EVENTS)
LEDGER_FIELDS: tuple[str, ...] = (
    "accounts",
    "waiting_legs",
    "unsound_transfers",
    "unsound_reasons",
    "posted_transfers",
    "books",
    "sla_paid",
    "low_balance",
)


def join_ledger(state: MarketState, ledger: MarketState) -> None:
    """Give ``state`` (folded from the market's events only) the ledger part of ``ledger``
    (folded from the ledger's events only), in place; ``ledger`` is not to be used after."""
    for name in LEDGER_FIELDS:
        setattr(state, name, getattr(ledger, name))
    state.position = max(state.position, ledger.position)
