"""Usage, node status and scaling (``hero.utilization``)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import AwareDatetime, Field

from schemas.catalogue.common import NodeStatus
from schemas.ids import ContractId, FarmId, Identifier, NodeId, OfftakerId, WorkloadId
from schemas.messages import Event, event
from schemas.money import Money
from schemas.resources import Grid
from schemas.topics import Topic

__all__ = [
    "NodeStatusChanged",
    "ReplicaMigrated",
    "ReplicaPlaced",
    "ScaleDecided",
    "UsageRecorded",
    "UtilizationSampled",
]

Ratio = Decimal


@event(Topic.UTILIZATION)
class UtilizationSampled(Event):
    sample_id: Identifier
    workload_id: WorkloadId
    replica_id: Identifier
    contract_id: ContractId
    node_id: NodeId
    cpu: Ratio = Field(ge=0, description="share of the reserved cores in use")
    memory: Ratio = Field(ge=0)
    disk: Ratio = Field(ge=0)
    network_bytes: int = Field(ge=0)
    requests: int = Field(default=0, ge=0)
    sampled_at: AwareDatetime
    interval_s: int = Field(
        default=15, gt=0, le=3600, description="the seconds of running this sample stands for"
    )


@event(Topic.UTILIZATION)
class UsageRecorded(Event):
    """The usage fact of one contract for one hour: billing reads these."""

    contract_id: ContractId
    hour: AwareDatetime
    cu_hours: Decimal = Field(ge=0)
    su_hours: Decimal = Field(ge=0)
    nu_gb: Decimal = Field(ge=0)
    seconds: int = Field(default=0, ge=0, le=3600, description="seconds reported running")
    samples: int = Field(default=0, ge=0)


@event(Topic.UTILIZATION)
class NodeStatusChanged(Event):
    node_id: NodeId
    status: NodeStatus
    previous: NodeStatus | None = None
    reason: str = ""
    changed_at: AwareDatetime | None = Field(
        default=None, description="when the status changed; the SLA counts downtime from it"
    )


@event(Topic.UTILIZATION)
class ScaleDecided(Event):
    """One autoscaler decision with every input that produced it (HPA's rules,
    ``hero.domain.autoscaling``). ``value`` is the mean of ``metric`` over the replicas that
    reported it; ``ratio`` the one the decision used, after the missing and not-ready replicas
    were counted; ``recommended_replicas`` what the metrics asked for before stabilization,
    rate limit and clamps. ``decided_at`` is the time of the newest sample it read."""

    offtaker_id: OfftakerId
    workload_id: WorkloadId
    current_replicas: int = Field(ge=0)
    desired_replicas: int = Field(ge=0)
    metric: str
    value: Decimal | None
    target: Decimal
    reason: str
    ratio: Decimal | None = Field(default=None, description="value / target, when there is one")
    recommended_replicas: int | None = Field(
        default=None, ge=0, description="the formula's answer before limits and stabilization"
    )
    decided_at: AwareDatetime
    reporting: int = Field(default=0, ge=0, description="ready replicas with a fresh reading")
    missing: int = Field(default=0, ge=0, description="ready replicas without a fresh reading")
    not_ready: int = Field(default=0, ge=0, description="replicas pending or on a node not up")


@event(Topic.UTILIZATION)
class ReplicaPlaced(Event):
    """Why a replica went where it did: the weighted part of each placement criterion
    (``hero.domain.placement``), their ``total``, and the price compared."""

    offtaker_id: OfftakerId
    workload_id: WorkloadId
    replica_id: Identifier
    contract_id: ContractId
    farm_id: FarmId
    node_id: NodeId
    grid: Grid
    price_cu_hour: Money | None = None
    scores: dict[str, Decimal] = Field(default_factory=dict)
    total: Decimal | None = None


@event(Topic.UTILIZATION)
class ReplicaMigrated(Event):
    """A replica moved: its new contract runs; the old one ends next, with its SLA outcome."""

    offtaker_id: OfftakerId
    workload_id: WorkloadId
    replica_id: Identifier
    from_node_id: NodeId
    to_node_id: NodeId
    from_contract_id: ContractId
    to_contract_id: ContractId
    reason: str
