"""Each offtaker's workloads, folded from the log: what the mandate asks for, what the
autoscaler decided, where the replicas run and why they went there, the moves, and how the
ended contracts did against their SLA.

A workload id is unique only within one offtaker's mandate, so a workload is keyed by
``(offtaker_id, workload_id)``; people name it ``W`` when one offtaker has it, else
``OFFTAKER/W`` (:meth:`WorkloadsView.find`).

Events on different streams come in any order relative to each other (a ``ReplicaPlaced``
before or after its ``ContractCreated``, an ``SlaOutcomeRecorded`` before or after the
cancellation): each is kept by contract id and joined when the rows are read. Pure apart from
:func:`read_workloads`, which folds a store.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

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
    ContractCancelled,
    ContractCreated,
    ContractResumed,
    ContractSuspended,
    Envelope,
    Event,
    Grid,
    Money,
    NodeStatus,
    NodeStatusChanged,
    OfftakerMandateSet,
    ReplicaMigrated,
    ReplicaPlaced,
    ScaleDecided,
    ScalingPolicy,
    SlaOutcomeRecorded,
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

#: The event types the view folds; the others are not even decoded.
_FOLDED = frozenset(
    {
        "OfftakerMandateSet",
        "ContractCreated",
        "ContractCancelled",
        "ContractSuspended",
        "ContractResumed",
        "NodeStatusChanged",
        "ScaleDecided",
        "ReplicaPlaced",
        "ReplicaMigrated",
        "SlaOutcomeRecorded",
    }
)


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


@dataclass(frozen=True)
class PlacementRow:
    """Why a replica went where it did (``ReplicaPlaced``): the weighted criteria and total."""

    replica_id: str
    scores: dict[str, Decimal]
    total: Decimal | None
    price_cu_hour: Money | None


@dataclass(frozen=True)
class SlaRow:
    """How an ended contract did against its SLA (``SlaOutcomeRecorded``)."""

    promised_pct: Decimal
    uptime_pct: Decimal
    met: bool
    hours_down: Decimal
    period_hours: Decimal
    penalty: Money


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


@dataclass(frozen=True)
class DecisionRow:
    """One autoscaler decision (``ScaleDecided``) with the inputs that produced it."""

    decided_at: datetime
    current_replicas: int
    desired_replicas: int
    reason: str
    metric: str
    value: Decimal | None
    target: Decimal
    ratio: Decimal | None
    recommended_replicas: int | None
    reporting: int
    missing: int
    not_ready: int


@dataclass(frozen=True)
class MigrationRow:
    moved_at: datetime
    replica_id: str
    from_node_id: str
    to_node_id: str
    from_contract_id: str
    to_contract_id: str
    reason: str


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


# -- folding --------------------------------------------------------------------------------------


@dataclass
class _Contract:
    created: ContractCreated
    suspended: bool = False
    ended_at: datetime | None = None
    end_reason: str | None = None


@dataclass
class _Workload:
    decisions: deque[DecisionRow]
    contracts: list[str] = field(default_factory=list)
    last_desired: int | None = None
    decisions_total: int = 0
    migrations: list[MigrationRow] = field(default_factory=list)


class WorkloadsView:
    """The workloads folded from the log; ``position`` is the last position applied.

    ``apply(envelope, event)`` in log order (a position applied before is skipped), then read
    :attr:`workloads`, :meth:`workload` or :meth:`find`.
    """

    def __init__(self, decisions_kept: int = DECISIONS_KEPT) -> None:
        if decisions_kept < 0:
            raise ValueError(f"decisions_kept must be >= 0, got {decisions_kept}")
        self.position = 0
        self._kept = decisions_kept
        self._workloads: dict[WorkloadKey, _Workload] = {}
        self._specs: dict[str, dict[str, WorkloadSpec]] = {}
        self._contracts: dict[str, _Contract] = {}
        self._placements: dict[str, ReplicaPlaced] = {}
        self._outcomes: dict[str, SlaOutcomeRecorded] = {}
        self._node_status: dict[str, NodeStatus] = {}

    def apply(self, envelope: Envelope, event: Event) -> None:
        if envelope.position <= self.position:
            return
        self.position = envelope.position
        match event:
            case OfftakerMandateSet():
                self._specs[event.offtaker_id] = {w.workload_id: w for w in event.mandate.workloads}
                for spec in event.mandate.workloads:
                    self._workload((event.offtaker_id, spec.workload_id))
            case ContractCreated():
                self._contracts[event.contract_id] = _Contract(event)
                contracts = self._workload((event.offtaker_id, event.workload_id)).contracts
                if event.contract_id not in contracts:
                    contracts.append(event.contract_id)
            case ContractCancelled():
                self._end(event, envelope.occurred_at)
            case ContractSuspended() | ContractResumed():
                contract = self._contracts.get(event.contract_id)
                if contract is not None:
                    contract.suspended = isinstance(event, ContractSuspended)
            case NodeStatusChanged():
                self._node_status[event.node_id] = event.status
            case ScaleDecided():
                self._decided(event)
            case ReplicaPlaced():
                self._placements[event.contract_id] = event
            case ReplicaMigrated():
                self._migrated(event, envelope.occurred_at)
            case SlaOutcomeRecorded():
                self._outcomes[event.contract_id] = event

    def _workload(self, key: WorkloadKey) -> _Workload:
        if key not in self._workloads:
            self._workloads[key] = _Workload(decisions=deque(maxlen=self._kept))
        return self._workloads[key]

    def _end(self, event: ContractCancelled, at: datetime) -> None:
        contract = self._contracts.get(event.contract_id)
        if contract is not None and contract.ended_at is None:
            contract.ended_at, contract.end_reason = at, event.reason

    def _decided(self, event: ScaleDecided) -> None:
        workload = self._workload((event.offtaker_id, event.workload_id))
        workload.last_desired = event.desired_replicas
        workload.decisions_total += 1
        workload.decisions.append(
            DecisionRow(
                decided_at=event.decided_at,
                current_replicas=event.current_replicas,
                desired_replicas=event.desired_replicas,
                reason=event.reason,
                metric=event.metric,
                value=event.value,
                target=event.target,
                ratio=event.ratio,
                recommended_replicas=event.recommended_replicas,
                reporting=event.reporting,
                missing=event.missing,
                not_ready=event.not_ready,
            )
        )

    def _migrated(self, event: ReplicaMigrated, at: datetime) -> None:
        self._workload((event.offtaker_id, event.workload_id)).migrations.append(
            MigrationRow(
                moved_at=at,
                replica_id=event.replica_id,
                from_node_id=event.from_node_id,
                to_node_id=event.to_node_id,
                from_contract_id=event.from_contract_id,
                to_contract_id=event.to_contract_id,
                reason=event.reason,
            )
        )

    # -- reading ----------------------------------------------------------------------------

    @property
    def workloads(self) -> list[WorkloadRow]:
        """Every workload, by offtaker then workload id."""
        return [self._row(key) for key in sorted(self._workloads)]

    def workload(self, offtaker_id: str, workload_id: str) -> WorkloadRow | None:
        key = (offtaker_id, workload_id)
        return self._row(key) if key in self._workloads else None

    def offtakers_of(self, workload_id: str) -> list[str]:
        """The offtakers with a workload of that id, sorted."""
        return sorted(o for o, w in self._workloads if w == workload_id)

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
        workload = self._workloads[key]
        spec = self._specs.get(offtaker_id, {}).get(workload_id)
        replicas = [self._replica(self._contracts[c]) for c in workload.contracts]
        return WorkloadRow(
            offtaker_id=offtaker_id,
            workload_id=workload_id,
            spec=spec,
            target=_target(spec, workload.last_desired),
            live=tuple(r for r in replicas if r.ended_at is None),
            ended=tuple(r for r in replicas if r.ended_at is not None),
            decisions=tuple(workload.decisions),
            decisions_total=workload.decisions_total,
            migrations=tuple(workload.migrations),
        )

    def _replica(self, contract: _Contract) -> ReplicaRow:
        created = contract.created
        placed = self._placements.get(created.contract_id)
        outcome = self._outcomes.get(created.contract_id)
        return ReplicaRow(
            contract_id=created.contract_id,
            replica_id=placed.replica_id if placed is not None else created.contract_id,
            farm_id=created.farm_id,
            node_id=created.node_id,
            grid=created.grid,
            node_status=self._node_status.get(created.node_id, NodeStatus.UP),
            price_hour=created.price_hour,
            started_at=created.starts_at,
            suspended=contract.suspended,
            placement=_placement(placed) if placed is not None else None,
            ended_at=contract.ended_at,
            end_reason=contract.end_reason,
            sla=_sla(outcome) if outcome is not None else None,
        )


def _target(spec: WorkloadSpec | None, last_desired: int | None) -> int | None:
    if spec is None:
        return last_desired
    if spec.autoscale is None or last_desired is None:
        return spec.replicas
    return last_desired


def _placement(event: ReplicaPlaced) -> PlacementRow:
    return PlacementRow(
        replica_id=event.replica_id,
        scores=dict(event.scores),
        total=event.total,
        price_cu_hour=event.price_cu_hour,
    )


def _sla(event: SlaOutcomeRecorded) -> SlaRow:
    return SlaRow(
        promised_pct=event.sla.uptime_pct,
        uptime_pct=event.uptime_pct,
        met=event.met,
        hours_down=event.hours_down,
        period_hours=event.period_hours,
        penalty=event.penalty,
    )


def read_workloads(
    store: EventStore,
    decisions_kept: int = DECISIONS_KEPT,
    view: WorkloadsView | None = None,
    on_skip: SkipHandler | None = None,
) -> WorkloadsView:
    """The workloads folded from the whole log; given a view, only what came after it."""
    view = view or WorkloadsView(decisions_kept)
    for row in recorded_after(store, view.position):
        if row.type in _FOLDED:
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
