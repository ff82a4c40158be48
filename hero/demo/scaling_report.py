"""What ``hero demo``'s scaling act found: the spike's decision and new replicas, the failed
node's move and the ended contract's SLA outcome, the refund; and how each is told (the
``demo ok`` line, ``--json``, the penalty line). The act itself is :mod:`hero.demo.scaling`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from hero.cli.tables import fmt_money
from hero.domain.ledger import AccountKind, account_id, account_stream
from hero.market.views import ContractRow
from hero.readmodels.workloads import DecisionRow, MigrationRow, ReplicaRow, SlaRow
from hero.store import EventStore
from schemas import Grid, Money, TransferKind, TransferPosted, WorkloadSpec

if TYPE_CHECKING:
    from hero.payments.billing import BillingReport

__all__ = ["Failure", "Scaling", "Spike", "percent", "say_penalty", "seconds_of"]


@dataclass(frozen=True)
class Spike:
    decision: DecisionRow
    decision_ms: int
    """From handing the samples over to the decision's commit in the store."""
    contracted_s: float
    """From the samples to the last replica the decision asked for under contract."""
    grids: dict[Grid, int]
    added: tuple[ReplicaRow, ...]


@dataclass(frozen=True)
class Failure:
    node_id: str
    farm_id: str
    migration: MigrationRow
    moved_to: ReplicaRow | None
    sla: SlaRow
    moved_s: float
    """From the node going down to its replacement under contract."""
    back_up: bool
    others_moved: tuple[MigrationRow, ...] = ()
    """The other replicas the failure moved: other workloads' (an earlier run's, on a shared
    store), or this one's when two ran on the node."""


@dataclass
class Scaling:
    """The act's outcome; ``problem`` says what did not happen in time."""

    offtaker_id: str
    spec: WorkloadSpec
    contracts: dict[str, ContractRow]
    """Every contract of the run seen, ended ones too: what the demo bills."""
    spike: Spike | None = None
    failure: Failure | None = None
    problem: str | None = None
    seconds: float = 0.0
    """How long the act took, from the spike to the node back up."""
    penalty_paid: Money = field(default_factory=lambda: Money.zero("TFT"))
    penalty_paid_by: str = ""

    @property
    def ref(self) -> str:
        return f"{self.offtaker_id}/{self.spec.workload_id}"

    def note_penalty(self, store: EventStore, report: BillingReport | None) -> None:
        """The SLA refund the offtaker received for the ended contract (the ledger's word: on
        the stack its treasury may have paid it before the demo's billing run did)."""
        if self.failure is None:
            return
        contract_id = self.failure.migration.from_contract_id
        stream = account_stream(account_id(AccountKind.OFFTAKER, self.offtaker_id))
        paid = [
            event
            for row in store.read_stream(stream)
            if isinstance(event := row.envelope().decode(), TransferPosted)
            and event.kind == TransferKind.SLA_PENALTY
            and event.reference == contract_id
        ]
        self.penalty_paid = sum((t.amount for t in paid), Money.zero("TFT"))
        if report is not None and contract_id in report.sla_penalties:
            self.penalty_paid_by = "the demo's billing"
        elif paid:
            self.penalty_paid_by = "the stack's treasury"

    def document(self) -> dict[str, Any]:
        """The act in full for ``--json``: the decision, each new replica and its placement,
        the move and the ended contract's SLA outcome."""
        return {
            "workload": self.ref,
            "autoscale": self.spec.autoscale,
            "problem": self.problem,
            "spike": self.spike,
            "failure": self.failure,
        }

    def summary(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "workload": self.ref,
            "problem": self.problem,
            "seconds": round(self.seconds, 2),
        }
        if self.spike is not None:
            d = self.spike.decision
            figures.update(
                decision={
                    "reason": d.reason,
                    "current_replicas": d.current_replicas,
                    "desired_replicas": d.desired_replicas,
                    "metric": d.metric,
                    "value": d.value,
                    "target": d.target,
                },
                spike_to_decision_ms=self.spike.decision_ms,
                spike_to_contracts_s=round(self.spike.contracted_s, 2),
                replicas_per_grid={g.value: n for g, n in self.spike.grids.items()},
                placement_totals=[
                    r.placement.total for r in self.spike.added if r.placement is not None
                ],
            )
        if self.failure is not None:
            f, sla = self.failure, self.failure.sla
            figures.update(
                migration={
                    "from_node": f.migration.from_node_id,
                    "to_node": f.migration.to_node_id,
                    "from_contract": f.migration.from_contract_id,
                    "to_contract": f.migration.to_contract_id,
                    "moved_s": round(f.moved_s, 2),
                    "others_moved": len(f.others_moved),
                },
                sla={
                    "contract_id": f.migration.from_contract_id,
                    "uptime_pct": sla.uptime_pct,
                    "promised_pct": sla.promised_pct,
                    "met": sla.met,
                    "downtime_s": seconds_of(sla.hours_down),
                    "life_s": seconds_of(sla.period_hours),
                    "penalty_usd": sla.penalty,
                },
                sla_penalty_paid_tft=self.penalty_paid,
            )
        return figures

    def line(self) -> str:
        """The scaling part of the ``demo ok`` line."""
        parts = []
        if self.spike is not None:
            d = self.spike.decision
            parts.append(
                f"{self.spec.workload_id} {d.reason} {d.current_replicas} → "
                f"{d.desired_replicas} {self.spike.decision_ms} ms after the spike "
                f"({_grids(self.spike.grids)})"
            )
        if self.failure is not None:
            f = self.failure
            verdict = "met" if f.sla.met else "not met"
            others = f" (and {len(f.others_moved)} other replicas)" if f.others_moved else ""
            parts.append(
                f"1 replica migrated {f.migration.from_node_id} → {f.migration.to_node_id}"
                f"{others}, SLA {percent(f.sla.uptime_pct)} % {verdict}, penalty "
                f"{fmt_money(f.sla.penalty)} ({fmt_money(self.penalty_paid)} refunded)"
            )
        return ", ".join(parts)


def seconds_of(hours: Decimal) -> Decimal:
    """Hours as seconds, to the hundredth."""
    return (hours * 3600).quantize(Decimal("0.01"), ROUND_HALF_EVEN)


def percent(value: Decimal) -> str:
    """A percentage to the hundredth, never in exponent form."""
    return f"{value.quantize(Decimal('0.01'), ROUND_HALF_EVEN):f}"


def _grids(grids: dict[Grid, int]) -> str:
    return ", ".join(f"{grid.value} {count}" for grid, count in grids.items()) or "none"


def say_penalty(scaling: Scaling, say: Callable[[str], None]) -> None:
    if scaling.failure is None:
        return
    contract_id = scaling.failure.migration.from_contract_id
    if scaling.penalty_paid.amount > 0:
        say(
            f"[bold]sla[/] penalty {fmt_money(scaling.penalty_paid)} refunded to "
            f"{scaling.offtaker_id} for {contract_id} by {scaling.penalty_paid_by}"
        )
    elif scaling.failure.sla.penalty.amount > 0:
        say(f"[yellow]sla[/] penalty for {contract_id} not refunded yet")
