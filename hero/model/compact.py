"""Dropping the market's finished history from a deciding host's state (:func:`compact`).

A deciding agent host reads the live market: farms, nodes and their holds, open negotiations
and their offers, live contracts, mandates and samples. What the model otherwise keeps
forever (closed negotiations with their offers and declines, ended contracts with their
usage, bills, placements and outcomes) is history: the read models and the CLI show it, no
decision reads it, yet a host's snapshot and its decode grew with it. :func:`compact` drops
what ended before a horizon (in event time), so a host's state is the size of the live
market. Only the deciding hosts compact; the projector and the CLI's views keep everything.

A late event for a dropped entity (a repeated cancellation, a late usage fact) then meets
nothing in the model, as it would meet a finished entity in the full one: the handlers keep
whatever such an event creates (an ``early_*`` entry, a usage hour), no decision reads it,
and the next compaction drops it again (it is older than the horizon by then).

Pure: no I/O, no clock; the caller says where the horizon is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hero.model.state import Contract, MarketState, Negotiation

__all__ = ["COMPACT_AFTER_S", "Compacted", "compact", "compact_at"]

#: The default horizon: a week of event time (what a host keeps of the finished market).
COMPACT_AFTER_S = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Compacted:
    """What one :func:`compact` dropped, by kind."""

    negotiations: int = 0
    offers: int = 0
    declines: int = 0
    contracts: int = 0

    @property
    def total(self) -> int:
        return self.negotiations + self.offers + self.declines + self.contracts


def compact(state: MarketState, before: datetime) -> Compacted:
    """Drop from ``state`` what ended before ``before``: closed negotiations whose deadline
    passed, with their offers and declines; cancelled contracts that ended, with their usage,
    bill, placement, replica, outcome and samples; the scaling decisions and moves of a
    workload made before it. Idempotent: compacting twice at one horizon is compacting once."""
    negotiations = _finished_negotiations(state, before)
    offers = _drop_negotiations(state, negotiations)
    declines = len(state.declines)
    state.declines = [d for d in state.declines if d.negotiation_id not in negotiations]
    contracts = _ended_contracts(state, before)
    _drop_contracts(state, contracts)
    _trim_workloads(state, before)
    _forget_strays(state, before)
    return Compacted(len(negotiations), offers, declines - len(state.declines), len(contracts))


def compact_at(state: MarketState, newest: datetime | None, after_s: float | None) -> Compacted:
    """:func:`compact` at ``after_s`` seconds before ``newest`` (the newest event time
    folded); nothing when either is None (no event yet, or compaction off)."""
    if newest is None or after_s is None:
        return Compacted()
    return compact(state, newest - timedelta(seconds=after_s))


def _finished(nego: Negotiation, before: datetime) -> bool:
    return not nego.open and nego.deadline < before


def _finished_negotiations(state: MarketState, before: datetime) -> set[str]:
    return {n for n, nego in state.negotiations.items() if _finished(nego, before)}


def _drop_negotiations(state: MarketState, dropped: set[str]) -> int:
    """Drop the negotiations and every offer made in them; the number of offers dropped."""
    for negotiation_id in dropped:
        del state.negotiations[negotiation_id]
    gone = [o for o, offer in state.offers.items() if offer.negotiation_id in dropped]
    for offer_id in gone:
        del state.offers[offer_id]
    return len(gone)


def _ended(contract: Contract, state: MarketState, before: datetime) -> bool:
    # While its negotiation is open, an offtaker looks its contract up to finish an accept.
    nego = state.negotiations.get(contract.negotiation_id)
    return (
        not contract.live
        and contract.ended_at is not None
        and contract.ended_at < before
        and (nego is None or not nego.open)
    )


def _ended_contracts(state: MarketState, before: datetime) -> set[str]:
    return {c for c, contract in state.contracts.items() if _ended(contract, state, before)}


def _drop_contracts(state: MarketState, dropped: set[str]) -> None:
    for contract_id in dropped:
        contract = state.contracts.pop(contract_id)
        workload = state.workloads.get((contract.offtaker_id, contract.workload_id))
        if workload is not None:
            workload.contracts.pop(contract_id, None)
        for kept in (state.placements, state.usage, state.billing, state.sla_outcomes,
                     state.suspensions, state.samples):  # fmt: skip
            kept.pop(contract_id, None)
        state.sla_paid.discard(contract_id)
    gone = [r for r, replica in state.replicas.items() if replica.contract_id in dropped]
    for replica_id in gone:
        del state.replicas[replica_id]


def _trim_workloads(state: MarketState, before: datetime) -> None:
    """A workload's decisions and moves made before the horizon; a workload left with
    nothing (and named by no mandate) is dropped: a new mention registers it again."""
    named = {
        (offtaker, spec.workload_id)
        for offtaker, mandate in state.mandates.items()
        for spec in mandate.workloads
    }
    empty: list[tuple[str, str]] = []
    for key, workload in state.workloads.items():
        if any(d.decided_at < before for d in workload.decisions):
            workload.decisions = [d for d in workload.decisions if d.decided_at >= before]
        if any(m.moved_at < before for m in workload.migrations):
            workload.migrations = [m for m in workload.migrations if m.moved_at >= before]
        if not (workload.contracts or workload.decisions or workload.migrations or key in named):
            empty.append(key)
    for key in empty:
        del state.workloads[key]


def _forget_strays(state: MarketState, before: datetime) -> None:
    """What a late event for a dropped contract leaves behind, once older than the horizon.

    A cancellation recorded before its contract waits in ``early_cancellations``, a sample
    before its contract in ``samples``, a usage hour in ``usage``: the contract comes within
    moments (its stream and the node's are ordered apart, not hours apart), so one still
    absent past the horizon was dropped (or never comes), and nothing will take the entry."""
    cancellations = state.early_cancellations
    for contract_id in [c for c, (_, at) in cancellations.items() if at < before]:
        del cancellations[contract_id]
    contracts = state.contracts
    for contract_id in [
        c for c, s in state.samples.items() if c not in contracts and s.sampled_at < before
    ]:
        del state.samples[contract_id]
    for contract_id in [
        c
        for c, usage in state.usage.items()
        if c not in contracts and all(hour < before for hour in usage.hours)
    ]:
        del state.usage[contract_id]
