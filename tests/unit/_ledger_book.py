"""The ledger's old read-side fold, kept as the reference the market model's view is checked
against: legs in log order matched into transfers with :func:`hero.domain.ledger.match_leg`,
as ``hero accounts`` read them before the model held the reason of each unsound transfer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hero.domain.ledger import Ledger, Leg, LegProblem, match_leg, orphan_reason, third_leg
from schemas import TransferPosted

__all__ = ["LedgerBook"]


@dataclass
class LedgerBook:
    """Legs in log order matched into transfers: the balances, and every unsound transfer.

    ``ledger`` holds the matched transfers only; ``unbalanced`` names each transfer id whose
    legs do not make one sound transfer, with the reason. ``balanced`` is what ``hero accounts
    list`` and the gateway report.
    """

    ledger: Ledger = field(default_factory=Ledger)
    waiting: dict[str, Leg] = field(default_factory=dict)
    faults: dict[str, tuple[LegProblem, str]] = field(default_factory=dict)

    def add(self, leg: Leg) -> TransferPosted | None:
        """Record one leg; the transfer when this leg completed it, else None."""
        transfer_id = leg.event.transfer_id
        if transfer_id in self.ledger.applied:
            step = third_leg(leg)
        else:
            step = match_leg(self.waiting.pop(transfer_id, None), leg)
        if step.waiting is not None:
            self.waiting[transfer_id] = step.waiting
        if step.problem is not None and step.fault is not None:
            self.faults[transfer_id] = (step.problem, step.fault)
        if step.posted is not None:
            self.ledger.apply(step.posted)
        return step.posted

    @property
    def problems(self) -> dict[str, LegProblem]:
        """Transfer id -> the code of what is wrong with it (what read models show)."""
        found = dict.fromkeys(self.waiting, LegProblem.ORPHAN_LEG)
        found.update({tid: problem for tid, (problem, _) in self.faults.items()})
        return dict(sorted(found.items()))

    @property
    def unbalanced(self) -> dict[str, str]:
        """Transfer id -> why it is not one sound transfer (orphan legs included)."""
        found = {tid: orphan_reason(leg) for tid, leg in self.waiting.items()}
        found.update({tid: reason for tid, (_, reason) in self.faults.items()})
        return dict(sorted(found.items()))

    @property
    def balanced(self) -> bool:
        return not self.unbalanced and all(total == 0 for total in self.ledger.totals().values())
