"""The autoscaler agent: one per offtaker whose mandate autoscales a workload.

It reads the newest sample of each replica (``UtilizationSampled``, straight from Kafka), applies
Kubernetes' HPA rules (:func:`hero.domain.autoscaling.decide_scale`) and records each decision
that matters as ``ScaleDecided`` with its inputs; the offtaker agent follows the decided count
(more replicas: RFQs; fewer: the costliest contracts end first).

Its clock is the samples' time, not the host's: a decision is a function of the samples and the
log, so it is the same on a replay, and a test moves time by the samples it sends. A workload is
evaluated when samples newer than its last decision arrive; the scale-down stabilization window
and the scale-up rate limit are counted in sample time as well.

What it records: every decision that changes the replica count, and every decision whose
recommendation or reason differs from the last one recorded (a held scale-down shows up as
``stabilized`` once, not every 15 seconds). After a restart the samples are read again from
Kafka; those not newer than the last recorded decision are folded, not decided on, and the
stabilization history is rebuilt from the recorded decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from agents.brain import Brain
from agents.market import MarketView, autoscaler_id
from hero.domain.autoscaling import (
    MetricReading,
    Recommendation,
    ReplicaChange,
    ScaleDecision,
    ScalingHistory,
    decide_scale,
)
from schemas import (
    Command,
    Envelope,
    Event,
    Mandate,
    NodeStatus,
    OfftakerMandateSet,
    RecordScaleDecision,
    ScaleDecided,
    ScalingPolicy,
    UtilizationSampled,
    WorkloadSpec,
)

__all__ = ["STALE_AFTER_INTERVALS", "AutoscalerBrain", "metric_value"]

#: Metrics that are a share of what the replica reserved: 1 is full use. A replica without a
#: reading counts as using all of it on a scale-down, as HPA counts a pod's resource metric.
UTILIZATION_METRICS = frozenset({"cpu", "memory", "disk"})

#: A replica whose newest sample is older than this many of its reporting intervals (counted
#: back from the workload's newest sample) has no current reading: HPA's "missing metric".
STALE_AFTER_INTERVALS = 3


def metric_value(sample: UtilizationSampled, metric: str) -> Decimal:
    """The sample's value of ``metric``: a share for cpu, memory and disk; requests per
    second for requests."""
    match metric:
        case "cpu":
            return sample.cpu
        case "memory":
            return sample.memory
        case "disk":
            return sample.disk
        case "requests":
            return Decimal(sample.requests) / sample.interval_s
    raise ValueError(f"unknown metric {metric!r}")


@dataclass(slots=True)
class _Workload:
    """One autoscaled workload: its count, its memory, and its sample clock."""

    target: int
    history: ScalingHistory = field(default_factory=ScalingHistory)
    clock: datetime | None = None  # the newest sample's time
    decided_at: datetime | None = None  # the last decision recorded (or sent)
    last: tuple[int, str] | None = None  # its (recommended, reason)
    due: bool = False


class AutoscalerBrain(Brain):
    __slots__ = ("_workloads", "offtaker_id")

    def __init__(self, offtaker_id: str):
        super().__init__(autoscaler_id(offtaker_id))
        self.offtaker_id = offtaker_id
        self._workloads: dict[str, _Workload] = {}

    # -- what it holds --------------------------------------------------------------------

    def target(self, workload_id: str) -> int | None:
        """The replica count decided for the workload (its spec's count before any)."""
        known = self._workloads.get(workload_id)
        return known.target if known else None

    def _spec(self, workload_id: str, market: MarketView) -> WorkloadSpec | None:
        """The workload as the offtaker's mandate (the model's, as last set) describes it."""
        mandate = market.state.mandates.get(self.offtaker_id)
        if mandate is None:
            return None
        return next((w for w in mandate.workloads if w.workload_id == workload_id), None)

    # -- folding --------------------------------------------------------------------------

    def observe(self, envelope: Envelope, event: Event, market: MarketView) -> None:
        match event:
            case OfftakerMandateSet() if event.offtaker_id == self.offtaker_id:
                self._set_mandate(event.mandate)
            case UtilizationSampled():
                self._sampled(event, market)
            case ScaleDecided() if event.offtaker_id == self.offtaker_id:
                self._recorded(event, market)

    def _set_mandate(self, mandate: Mandate) -> None:
        for spec in mandate.workloads:
            if spec.autoscale is not None and spec.workload_id not in self._workloads:
                self._workloads[spec.workload_id] = _Workload(target=spec.replicas)

    def _sampled(self, sample: UtilizationSampled, market: MarketView) -> None:
        live = market.live_contracts_of(self.offtaker_id).get(sample.contract_id)
        workload_id = live.workload_id if live is not None else sample.workload_id
        known = self._workloads.get(workload_id)
        if known is None:
            return
        if known.clock is None or sample.sampled_at > known.clock:
            known.clock = sample.sampled_at
        if known.decided_at is None or sample.sampled_at > known.decided_at:
            known.due = True

    def _recorded(self, decision: ScaleDecided, market: MarketView) -> None:
        """A decision in the log: ours coming back (already applied) or, after a restart,
        the memory to rebuild."""
        known = self._workloads.get(decision.workload_id)
        if known is None:
            spec = self._spec(decision.workload_id, market)
            if spec is None:
                return
            known = self._workloads[decision.workload_id] = _Workload(target=spec.replicas)
        if known.decided_at is not None and decision.decided_at <= known.decided_at:
            return
        known.target = decision.desired_replicas
        known.decided_at = decision.decided_at
        known.last = (decision.recommended_replicas or decision.desired_replicas, decision.reason)
        recommendations = known.history.recommendations
        if decision.recommended_replicas is not None:
            recommendations += (
                Recommendation(at=decision.decided_at, replicas=decision.recommended_replicas),
            )
        changes = known.history.changes
        if decision.desired_replicas != decision.current_replicas:
            changes += (
                ReplicaChange(
                    at=decision.decided_at,
                    from_replicas=decision.current_replicas,
                    to_replicas=decision.desired_replicas,
                ),
            )
        known.history = ScalingHistory(recommendations=recommendations, changes=changes)

    # -- deciding -------------------------------------------------------------------------

    def decide(self, now: datetime, market: MarketView) -> list[Command]:
        commands: list[Command] = []
        for workload_id, known in self._workloads.items():
            spec = self._spec(workload_id, market)
            if not known.due or known.clock is None or spec is None or spec.autoscale is None:
                continue
            known.due = False
            decision = self._evaluate(workload_id, _effective(spec.autoscale), known, market)
            known.history = decision.history
            remembered = (decision.recommended_replicas, decision.reason.value)
            if not decision.moves and remembered == known.last:
                continue
            known.last = remembered
            known.target = decision.desired_replicas
            known.decided_at = decision.decided_at
            commands.append(self._record(workload_id, decision))
        return commands

    def _evaluate(
        self, workload_id: str, policy: ScalingPolicy, known: _Workload, market: MarketView
    ) -> ScaleDecision:
        assert known.clock is not None
        readings: list[MetricReading] = []
        live = market.live_contracts_of(self.offtaker_id)
        for contract_id in sorted(c for c, k in live.items() if k.workload_id == workload_id):
            node = market.nodes.get(live[contract_id].node_id)
            ready = node is None or node.status == NodeStatus.UP
            sample = market.samples.get(contract_id)
            value = None
            if sample is not None:
                stale = timedelta(seconds=sample.interval_s * STALE_AFTER_INTERVALS)
                if sample.sampled_at >= known.clock - stale:
                    value = metric_value(sample, policy.metric)
            readings.append(MetricReading(replica_id=contract_id, value=value, ready=ready))
        # Replicas decided but not contracted yet are pending: HPA's not-ready pods.
        pending = max(known.target - len(readings), 0)
        readings += [MetricReading(replica_id=f"pending-{i}", ready=False) for i in range(pending)]
        return decide_scale(policy, known.target, readings, known.history, known.clock)

    def _record(self, workload_id: str, decision: ScaleDecision) -> RecordScaleDecision:
        at = decision.decided_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        return RecordScaleDecision(
            command_id=f"{self.agent_id}:{workload_id}:{at}",
            decision=decision.to_event(self.offtaker_id, workload_id),
        )


def _effective(policy: ScalingPolicy) -> ScalingPolicy:
    if policy.full_use is None and policy.metric in UTILIZATION_METRICS:
        return policy.model_copy(update={"full_use": Decimal(1)})
    return policy
