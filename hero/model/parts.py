"""The model's state in parts whose events touch nothing of each other's: the ledger
(transfer legs, the balances and books they make, the low-balance warnings) and the rest of
the market. Parts can be folded apart, in other processes, each from its own events in log
order, and joined: the same state as one fold of the whole log, since no handler of one part
reads or writes another's fields (``tests/unit/test_model_parts.py`` checks it on the golden
history and on generated logs).

Other parts were tried for the rebuild's second process and left out: the negotiations
(requests, offers, declines) and the usage facts are as independent, but sending their state
back (pickled pydantic models and Decimals) cost more than folding them apart saved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hero.model.state import MarketState
from schemas import (
    BalanceLow,
    Event,
    TransferPosted,
)

__all__ = ["LEDGER", "Part", "join_parts", "part_types"]


@dataclass(frozen=True)
class Part:
    """Events whose handlers touch only ``fields`` of the state, fields no other handler
    touches."""

    name: str
    events: frozenset[type[Event]]
    fields: tuple[str, ...]

    @property
    def types(self) -> frozenset[str]:
        return frozenset(t.__name__ for t in self.events)


LEDGER = Part(
    "ledger",
    frozenset({TransferPosted, BalanceLow}),
    (
        "accounts",
        "waiting_legs",
        "unsound_transfers",
        "unsound_reasons",
        "posted_transfers",
        "books",
        "sla_paid",
        "low_balance",
    ),
)


def part_types(parts: Iterable[Part]) -> frozenset[str]:
    """The event types of ``parts``."""
    return frozenset().union(*(part.types for part in parts))


def join_parts(state: MarketState, other: MarketState, parts: Iterable[Part]) -> None:
    """Give ``state`` (folded from none of the events of ``parts``) the fields of ``parts``
    from ``other`` (folded from their events only), in place; ``other`` is not to be used
    after."""
    for part in parts:
        for name in part.fields:
            setattr(state, name, getattr(other, name))
    state.position = max(state.position, other.position)
