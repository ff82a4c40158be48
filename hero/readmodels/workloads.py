"""Each offtaker's workloads, a view over the market model (:mod:`hero.model`): what the
mandate asks for, what the autoscaler decided, where the replicas run and why they went there,
the moves, and how the ended contracts did against their SLA.

A workload id is unique only within one offtaker's mandate, so a workload is keyed by
``(offtaker_id, workload_id)``; people name it ``W`` when one offtaker has it, else
``OFFTAKER/W`` (:meth:`WorkloadsView.find`).

Events on different streams come in any order relative to each other (a ``ReplicaPlaced``
before or after its ``ContractCreated``, an ``SlaOutcomeRecorded`` before or after the
cancellation): the model keeps each by contract id and the rows join them when read. Pure
apart from :func:`read_workloads`, which applies a store's log to the model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from hero.model import HANDLERS, Contract, MarketState, Migration, Placement, SlaOutcome
from hero.model import apply as model_apply
from hero.store import (
    EventStore,
    PoisonRow,
    RecordedEvent,
    SkipHandler,
    decode_event,
    recorded_after,
    skip_row,
)
from schemas import (
    Envelope,
    Event,
    Grid,
    Money,
    NodeStatus,
    ScaleDecided,
    ScalingPolicy,
    WorkloadSpec,
)

__all__ = [
    "DECISIONS_KEPT",
    "AmbiguousWorkload",
    "DecisionRow",
    "MigrationRow",
    "PlacementRow",
    "ReplicaRow",
    "SlaRow",
    "UnknownWorkload",
    "WorkloadKey",
    "WorkloadLookupError",
    "WorkloadRow",
    "WorkloadsView",
    "read_workloads",
]

#: How many of a workload's latest scale decisions the view keeps.
DECISIONS_KEPT = 10

WorkloadKey = tuple[str, str]
"""``(offtaker_id, workload_id)``."""

#: The event types the model applies; the others are not even decoded.
_APPLIED = frozenset(t.__name__ for t in HANDLERS)


class WorkloadLookupError(LookupError):
    """A workload reference that names no workload, or more than one."""


class UnknownWorkload(WorkloadLookupError):
    pass


class AmbiguousWorkload(WorkloadLookupError):
    def __init__(self, workload_id: str, offtakers: list[str]):
        self.workload_id, self.offtakers = workload_id, offtakers
        super().__init__(
            f"workload {workload_id} belongs to {len(offtakers)} offtakers "
            f"({', '.join(offtakers)}): name one as OFFTAKER/{workload_id}, "
            f"e.g. {offtakers[0]}/{workload_id}"
        )


# -- rows -----------------------------------------------------------------------------------------


PlacementRow = Placement
"""Why a replica went where it did (``ReplicaPlaced``): the weighted criteria and total."""


SlaRow = SlaOutcome
"""How an ended contract did against its SLA (``SlaOutcomeRecorded``): the model's record."""


@dataclass(frozen=True)
class ReplicaRow:
    """One replica, that is one contract. ``replica_id`` is the placement's, else the contract
    id; ``ended_at`` and ``end_reason`` are set once the contract was cancelled."""

    contract_id: str
    replica_id: str
    farm_id: str
    node_id: str
    grid: Grid
    node_status: NodeStatus
    price_hour: Money
    started_at: datetime
    suspended: bool = False
    placement: PlacementRow | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None
    sla: SlaRow | None = None


DecisionRow = ScaleDecided
"""One autoscaler decision with the inputs that produced it: the event, as the model keeps it."""


MigrationRow = Migration


@dataclass(frozen=True)
class WorkloadRow:
    """One workload of one offtaker.

    ``spec`` is the workload in the offtaker's current mandate; None when that mandate does
    not list it (any more). ``target`` is the replicas wanted: the last decision's
    ``desired_replicas`` while the spec autoscales, the spec's ``replicas`` when it does not
    or before any decision; None without a spec or a decision. ``decisions`` are the latest
    (oldest first), ``decisions_total`` how many there were in all.
    """

    offtaker_id: str
    workload_id: str
    spec: WorkloadSpec | None
    target: int | None
    live: tuple[ReplicaRow, ...]
    ended: tuple[ReplicaRow, ...]
    decisions: tuple[DecisionRow, ...]
    decisions_total: int
    migrations: tuple[MigrationRow, ...]

    @property
    def key(self) -> WorkloadKey:
        return (self.offtaker_id, self.workload_id)

    @property
    def ref(self) -> str:
        """The unambiguous name: ``OFFTAKER/W``."""
        return f"{self.offtaker_id}/{self.workload_id}"

    @property
    def autoscale(self) -> ScalingPolicy | None:
        return self.spec.autoscale if self.spec is not None else None

    @property
    def last_decision(self) -> DecisionRow | None:
        return self.decisions[-1] if self.decisions else None

    @property
    def grids(self) -> dict[Grid, int]:
        """Live replicas per grid, grids in their order."""
        counts = Counter(replica.grid for replica in self.live)
        return {grid: counts[grid] for grid in Grid if counts[grid]}


# -- the view -----------------------------------------------------------------------------------


class WorkloadsView:
    """The workloads as the market model has them; ``position`` is the last position applied.

    ``apply(envelope, event)`` in log order (a position applied before is skipped) applies it
    to the model (``state``, a new one by default), then read :attr:`workloads`,
    :meth:`workload` or :meth:`find`.
    """

    def __init__(
        self, decisions_kept: int = DECISIONS_KEPT, state: MarketState | None = None
    ) -> None:
        if decisions_kept < 0:
            raise ValueError(f"decisions_kept must be >= 0, got {decisions_kept}")
        self.state = state if state is not None else MarketState()
        self.position = self.state.position
        self._kept = decisions_kept

    def apply(self, envelope: Envelope, event: Event) -> None:
        if envelope.position <= self.position:
            return
        self.position = envelope.position
        model_apply(self.state, envelope, event)

    # -- reading ----------------------------------------------------------------------------

    @property
    def workloads(self) -> list[WorkloadRow]:
        """Every workload, by offtaker then workload id."""
        return [self._row(key) for key in sorted(self.state.workloads)]

    def workload(self, offtaker_id: str, workload_id: str) -> WorkloadRow | None:
        key = (offtaker_id, workload_id)
        return self._row(key) if key in self.state.workloads else None

    def offtakers_of(self, workload_id: str) -> list[str]:
        """The offtakers with a workload of that id, sorted."""
        return sorted(o for o, w in self.state.workloads if w == workload_id)

    def find(self, ref: str) -> WorkloadRow:
        """The workload ``ref`` names: ``W`` when a single offtaker has one of that id, else
        ``OFFTAKER/W``. :class:`UnknownWorkload` or :class:`AmbiguousWorkload` otherwise."""
        offtaker_id, slash, workload_id = ref.partition("/")
        if not slash:
            offtaker_id, workload_id = "", ref
        if not workload_id or "/" in workload_id or (slash and not offtaker_id):
            raise UnknownWorkload(f"{ref!r} names no workload: give W or OFFTAKER/W")
        if offtaker_id:
            row = self.workload(offtaker_id, workload_id)
            if row is None:
                raise UnknownWorkload(f"offtaker {offtaker_id} has no workload {workload_id}")
            return row
        offtakers = self.offtakers_of(workload_id)
        if not offtakers:
            raise UnknownWorkload(f"no offtaker has a workload {workload_id}")
        if len(offtakers) > 1:
            raise AmbiguousWorkload(workload_id, offtakers)
        row = self.workload(offtakers[0], workload_id)
        assert row is not None
        return row

    def _row(self, key: WorkloadKey) -> WorkloadRow:
        offtaker_id, workload_id = key
        workload = self.state.workloads[key]
        mandate = self.state.mandates.get(offtaker_id)
        specs = mandate.workloads if mandate is not None else []
        spec = next((w for w in specs if w.workload_id == workload_id), None)
        replicas = [self._replica(self.state.contracts[c]) for c in workload.contracts]
        decisions = workload.decisions[-self._kept :] if self._kept else []
        last = workload.decisions[-1].desired_replicas if workload.decisions else None
        return WorkloadRow(
            offtaker_id=offtaker_id,
            workload_id=workload_id,
            spec=spec,
            target=_target(spec, last),
            live=tuple(r for r in replicas if r.ended_at is None),
            ended=tuple(r for r in replicas if r.ended_at is not None),
            decisions=tuple(decisions),
            decisions_total=len(workload.decisions),
            migrations=tuple(workload.migrations),
        )

    def _replica(self, contract: Contract) -> ReplicaRow:
        placed = self.state.placements.get(contract.contract_id)
        outcome = self.state.sla_outcomes.get(contract.contract_id)
        ended = contract.ended_at is not None
        return ReplicaRow(
            contract_id=contract.contract_id,
            replica_id=placed.replica_id if placed is not None else contract.contract_id,
            farm_id=contract.farm_id,
            node_id=contract.node_id,
            grid=contract.grid,
            node_status=self.state.node_status(contract.node_id),
            price_hour=contract.price_hour,
            started_at=contract.starts_at,
            suspended=contract.status == "suspended",
            placement=placed,
            ended_at=contract.ended_at,
            end_reason=contract.reason if ended else None,
            sla=outcome,
        )


def _target(spec: WorkloadSpec | None, last_desired: int | None) -> int | None:
    if spec is None:
        return last_desired
    if spec.autoscale is None or last_desired is None:
        return spec.replicas
    return last_desired


def read_workloads(
    store: EventStore,
    decisions_kept: int = DECISIONS_KEPT,
    view: WorkloadsView | None = None,
    on_skip: SkipHandler | None = None,
) -> WorkloadsView:
    """The workloads of the whole log; given a view, only what came after it is applied."""
    view = view or WorkloadsView(decisions_kept)
    for row in recorded_after(store, view.position):
        if row.type in _APPLIED:
            try:
                envelope, event = decode_event(row)
            except PoisonRow as error:
                (on_skip or _log_skip)(row, error)
            else:
                view.apply(envelope, event)
        view.position = max(view.position, row.position)
    return view


def _log_skip(row: RecordedEvent, error: PoisonRow) -> None:
    skip_row(None, "workloads", row, error)
