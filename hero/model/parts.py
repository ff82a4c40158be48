"""The model's state in parts whose events touch nothing of each other's, so that parts can
be folded apart, in other processes, each from its own events in log order, and joined: the
same state as one fold of the whole log (``tests/unit/test_model_parts.py`` checks it on the
golden history and on generated logs).

* :data:`LEDGER`: transfer legs, the balances and books they make, the low-balance warnings:
  fields of the state no other event touches.
* :data:`HOLDS`: the nodes' capacity holds. A hold is kept only on a registered node and a
  contract's creation takes its hold, so this part's fold also sees those two events, doing
  only their share of the holds (the rest of the market folds them in full, its nodes'
  holds staying empty); the join gives each node the holds this part folded.

Other parts were tried for the rebuild's second process and left out: the negotiations
(requests, offers, declines) and the usage facts are as independent, but sending their state
back (pickled pydantic models and Decimals) cost more than folding them apart saved; a hold
is dropped when its contract is made, so the holds left to send back are few.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hero.model import _market
from hero.model.fold import HANDLERS
from hero.model.state import MarketState
from schemas import (
    BalanceLow,
    CapacityHeld,
    ContractCreated,
    Envelope,
    Event,
    HoldExpired,
    HoldReleased,
    NodeRegistered,
    TransferPosted,
)

__all__ = ["HOLDS", "LEDGER", "Part", "join_parts", "part_apply", "part_types", "seen_types"]

Handler = Callable[[MarketState, Envelope, Any], None]


def _fields_of(state: MarketState, other: MarketState, names: tuple[str, ...]) -> None:
    for name in names:
        setattr(state, name, getattr(other, name))


@dataclass(frozen=True)
class Part:
    """``events`` whose handlers touch only this part's state: ``fields`` (no other
    handler touches them), or what ``join`` takes from the part's fold. ``also``: events
    of the rest this part's fold must see too, each with what it does of them here."""

    name: str
    events: frozenset[type[Event]]
    fields: tuple[str, ...] = ()
    also: Mapping[type[Event], Handler] = field(default_factory=dict)
    join: Callable[[MarketState, MarketState], None] | None = None

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


def _join_holds(state: MarketState, other: MarketState) -> None:
    """Each node its holds as the holds part folded them (the same nodes are registered in
    both folds: the part sees every NodeRegistered)."""
    nodes = state.nodes
    for node_id, node in other.nodes.items():
        nodes[node_id].holds = node.holds


HOLDS = Part(
    "holds",
    frozenset({CapacityHeld, HoldReleased, HoldExpired}),
    also={NodeRegistered: _market.node_registered, ContractCreated: _market.contract_hold_taken},
    join=_join_holds,
)


def part_types(parts: Iterable[Part]) -> frozenset[str]:
    """The event types of ``parts``: only their fold applies them."""
    return frozenset().union(*(part.types for part in parts))


def seen_types(parts: Iterable[Part]) -> frozenset[str]:
    """Every event type the fold of ``parts`` reads: theirs, and the ones they also see."""
    parts = list(parts)
    return part_types(parts) | {t.__name__ for part in parts for t in part.also}


def part_apply(parts: Iterable[Part]) -> Callable[[MarketState, Envelope, Event], None]:
    """``apply`` for the fold of ``parts`` alone: their events in full, the ones they also
    see only as far as they concern them, nothing of any other."""
    parts = list(parts)
    table: dict[type[Event], Handler] = {}
    for part in parts:
        table.update(part.also)
    for part in parts:
        table.update({kind: HANDLERS[kind] for kind in part.events})

    def apply(state: MarketState, envelope: Envelope, event: Event) -> None:
        state.position = max(state.position, envelope.position)
        handler = table.get(type(event))
        if handler is not None:
            handler(state, envelope, event)

    return apply


def join_parts(state: MarketState, other: MarketState, parts: Iterable[Part]) -> None:
    """Give ``state`` (folded from none of the events of ``parts``) the state of ``parts``
    from ``other`` (their fold, :func:`part_apply`), in place; ``other`` is not to be used
    after."""
    for part in parts:
        _fields_of(state, other, part.fields)
        if part.join is not None:
            part.join(state, other)
    state.position = max(state.position, other.position)
