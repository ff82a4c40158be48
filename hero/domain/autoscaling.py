"""The autoscaler's arithmetic: Kubernetes' Horizontal Pod Autoscaler, rule for rule
(DOMAIN.md "How peers do the same job"; kubernetes/kubernetes,
``pkg/controller/podautoscaler/replica_calculator.go`` and ``horizontal.go``).

Pure: :func:`decide_scale` takes the readings, the policy, the clock's ``now`` and the
:class:`ScalingHistory` it returned last time, and returns a :class:`ScaleDecision` that
carries the next history. Nothing is remembered between calls except what the caller passes
back, so a replayed event stream gives the same decisions.

The rules, in the order they apply (each names the reason code it produces):

1. ``scaling_disabled``: zero replicas. HPA never scales up from zero; activating a workload
   from nothing is KEDA's job, not this one.
2. ``clamped_max`` / ``clamped_min``: the current count is outside [min, max]; it is brought
   inside before any metric is read.
3. ``no_metrics``: no ready replica reported the metric; nothing moves.
4. ``within_tolerance``: |ratio - 1| <= tolerance (0.1), ratio = mean(metric) / target over
   the ready replicas. Also when counting the missing and not-ready replicas (rule 5) brings the
   ratio inside the tolerance or reverses the direction: HPA then holds too.
5. Missing and not-ready replicas. Scaling up, a replica without a reading and a replica not
   ready both count as using 0; scaling down, a replica without a reading counts as using
   ``max(full_use, target)`` (100% of its request for a utilization metric) and a not-ready
   replica is left out.
6. ``scale_up`` / ``scale_down``: desired = ceil(sum(metric) / target), which is
   ceil(current * mean / target) over the replicas counted.
7. ``stabilized``: a scale-down takes the highest recommendation of the last 300 s, so a dip
   must last the whole window before replicas go.
8. ``rate_limited``: a scale-up adds at most max(100%, 4 replicas) per 15 s, counted from the
   replicas there were at the start of the period.
9. ``clamped_max`` / ``clamped_min``: the result is kept within [min, max].
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from enum import StrEnum

from pydantic import AwareDatetime, Field

from schemas import ScaleDecided, ScalingPolicy
from schemas.exact import ExactModel

__all__ = [
    "MetricReading",
    "Recommendation",
    "ReplicaChange",
    "ScaleDecision",
    "ScaleReason",
    "ScalingHistory",
    "ScalingPolicy",
    "decide_scale",
]

#: Ratios and mean values are reported to 7 places, as money is; decisions use exact sums.
_PLACES = Decimal("0.0000001")


class ScaleReason(StrEnum):
    WITHIN_TOLERANCE = "within_tolerance"
    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"
    STABILIZED = "stabilized"
    RATE_LIMITED = "rate_limited"
    CLAMPED_MAX = "clamped_max"
    CLAMPED_MIN = "clamped_min"
    NO_METRICS = "no_metrics"
    SCALING_DISABLED = "scaling_disabled"


class MetricReading(ExactModel):
    """One replica's latest value of the metric; ``None`` when it reported none."""

    replica_id: str = Field(min_length=1)
    value: Decimal | None = Field(default=None, ge=0)
    ready: bool = True


class Recommendation(ExactModel):
    """What the metrics asked for at one moment, before stabilization and limits."""

    at: AwareDatetime
    replicas: int = Field(ge=0)


class ReplicaChange(ExactModel):
    at: AwareDatetime
    from_replicas: int = Field(ge=0)
    to_replicas: int = Field(ge=0)


class ScalingHistory(ExactModel):
    """The autoscaler's memory, kept by the caller: the recommendations within the
    stabilization window and the replica changes within the scale-up period."""

    recommendations: tuple[Recommendation, ...] = ()
    changes: tuple[ReplicaChange, ...] = ()


class ScaleDecision(ExactModel):
    """A decision with every input that produced it. ``value`` is the mean of the metric over
    the ready replicas that reported it; ``ratio`` is the ratio the decision used, after the
    missing and not-ready replicas were counted; ``recommended_replicas`` is what the metrics
    asked for before stabilization, rate limit and clamps."""

    current_replicas: int = Field(ge=0)
    desired_replicas: int = Field(ge=0)
    recommended_replicas: int = Field(ge=0)
    metric: str
    value: Decimal | None
    target: Decimal
    ratio: Decimal | None
    reason: ScaleReason
    decided_at: AwareDatetime
    history: ScalingHistory
    reporting: int = Field(default=0, ge=0)
    missing: int = Field(default=0, ge=0)
    not_ready: int = Field(default=0, ge=0)

    @property
    def moves(self) -> bool:
        """Whether the decision changes the replica count."""
        return self.desired_replicas != self.current_replicas

    def to_event(self, offtaker_id: str, workload_id: str) -> ScaleDecided:
        return ScaleDecided(
            offtaker_id=offtaker_id,
            workload_id=workload_id,
            current_replicas=self.current_replicas,
            desired_replicas=self.desired_replicas,
            metric=self.metric,
            value=self.value,
            target=self.target,
            reason=self.reason.value,
            ratio=self.ratio,
            recommended_replicas=self.recommended_replicas,
            decided_at=self.decided_at,
            reporting=self.reporting,
            missing=self.missing,
            not_ready=self.not_ready,
        )


def _ceil_div(numerator: Decimal, divisor: Decimal) -> int:
    """ceil(numerator / divisor), exact even where the quotient has no finite decimal form."""
    guess = int((numerator / divisor).to_integral_value(rounding=ROUND_CEILING))
    while guess * divisor < numerator:
        guess += 1
    while guess > 0 and (guess - 1) * divisor >= numerator:
        guess -= 1
    return guess


def _within(total: Decimal, count: int, policy: ScalingPolicy) -> bool:
    """|total / (count * target) - 1| <= tolerance, compared without dividing."""
    wanted = count * policy.target
    return abs(total - wanted) <= policy.tolerance * wanted


def _ratio(total: Decimal, count: int, target: Decimal) -> Decimal:
    return (total / (count * target)).quantize(_PLACES, rounding=ROUND_HALF_EVEN)


class _Recommendation:
    __slots__ = ("ratio", "reason", "replicas", "value")

    def __init__(
        self, replicas: int, reason: ScaleReason, value: Decimal | None, ratio: Decimal | None
    ) -> None:
        self.replicas, self.reason, self.value, self.ratio = replicas, reason, value, ratio


def _recommend(
    policy: ScalingPolicy, current: int, readings: Sequence[MetricReading]
) -> _Recommendation:
    """Rules 3 to 6: what the metrics ask for (replica_calculator.go, GetResourceReplicas)."""
    ready = [r.value for r in readings if r.ready and r.value is not None]
    not_ready = sum(1 for r in readings if not r.ready)
    # Replicas running but absent from the readings have no metric either.
    missing = sum(1 for r in readings if r.ready and r.value is None)
    missing += max(current - len(readings), 0)
    if not ready:
        return _Recommendation(current, ScaleReason.NO_METRICS, None, None)
    total, count = sum(ready, Decimal(0)), len(ready)
    value = (total / count).quantize(_PLACES, rounding=ROUND_HALF_EVEN)
    ratio = _ratio(total, count, policy.target)
    wanted = count * policy.target
    scaling_up = total > wanted
    scaling_down = total < wanted
    needs_rebalance = missing > 0 or (not_ready > 0 and scaling_up)
    if not needs_rebalance or not (scaling_up or scaling_down):
        if _within(total, count, policy):
            return _Recommendation(current, ScaleReason.WITHIN_TOLERANCE, value, ratio)
        return _Recommendation(
            _ceil_div(total, policy.target), _direction(total, wanted), value, ratio
        )
    if scaling_down:
        fallback = policy.target
        if policy.full_use is not None:
            fallback = max(policy.full_use, policy.target)
        total, count = total + missing * fallback, count + missing
    else:
        count = count + missing + not_ready  # each counted as using 0
    rebalanced = _ratio(total, count, policy.target)
    wanted = count * policy.target
    reversed_direction = (scaling_up and total < wanted) or (scaling_down and total > wanted)
    if _within(total, count, policy) or reversed_direction:
        return _Recommendation(current, ScaleReason.WITHIN_TOLERANCE, value, rebalanced)
    replicas = _ceil_div(total, policy.target)
    if (scaling_down and replicas > current) or (scaling_up and replicas < current):
        return _Recommendation(current, ScaleReason.WITHIN_TOLERANCE, value, rebalanced)
    return _Recommendation(replicas, _direction(total, wanted), value, rebalanced)


def _direction(total: Decimal, wanted: Decimal) -> ScaleReason:
    return ScaleReason.SCALE_UP if total > wanted else ScaleReason.SCALE_DOWN


def _scale_up_limit(
    policy: ScalingPolicy, current: int, history: ScalingHistory, now: datetime
) -> int:
    """max(period start * (1 + percent/100), period start + pods), never below ``current``
    (horizontal.go, calculateScaleUpLimitWithScalingRules; ``selectPolicy: Max``)."""
    cutoff = now - timedelta(seconds=policy.scale_up_period_s)
    added = sum(
        c.to_replicas - c.from_replicas
        for c in history.changes
        if c.at > cutoff and c.to_replicas > c.from_replicas
    )
    removed = sum(
        c.from_replicas - c.to_replicas
        for c in history.changes
        if c.at > cutoff and c.to_replicas < c.from_replicas
    )
    start = current - added + removed
    by_percent = _ceil_div(Decimal(start) * (100 + policy.scale_up_percent), Decimal(100))
    return max(by_percent, start + policy.scale_up_pods, current)


def _stabilize(
    policy: ScalingPolicy, current: int, recommended: int, history: ScalingHistory, now: datetime
) -> int:
    """A scale-down goes no lower than the highest recommendation of the window
    (horizontal.go, stabilizeRecommendationWithBehaviors; the scale-up window is 0 s)."""
    cutoff = now - timedelta(seconds=policy.scale_down_stabilization_s)
    highest = max(
        (r.replicas for r in history.recommendations if r.at > cutoff), default=recommended
    )
    return min(max(current, recommended), max(highest, recommended))


def _remembered(
    policy: ScalingPolicy,
    history: ScalingHistory,
    now: datetime,
    recommendation: int | None,
    change: ReplicaChange | None,
) -> ScalingHistory:
    """The history to pass back: what is still inside its window, plus this call's entries."""
    window = now - timedelta(seconds=policy.scale_down_stabilization_s)
    period = now - timedelta(seconds=policy.scale_up_period_s)
    recommendations = [r for r in history.recommendations if r.at > window]
    if recommendation is not None and policy.scale_down_stabilization_s > 0:
        recommendations.append(Recommendation(at=now, replicas=recommendation))
    changes = [c for c in history.changes if c.at > period]
    if change is not None:
        changes.append(change)
    return ScalingHistory(recommendations=tuple(recommendations), changes=tuple(changes))


def decide_scale(
    policy: ScalingPolicy,
    current_replicas: int,
    readings: Sequence[MetricReading],
    history: ScalingHistory,
    now: datetime,
) -> ScaleDecision:
    """How many replicas the workload should run now; see the module's rules 1 to 9.

    ``history`` is the one the previous decision returned (``ScalingHistory()`` the first
    time). As HPA does for a new autoscaler, an empty history starts the stabilization window
    with the current count, so a first low reading does not remove replicas at once.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if current_replicas < 0:
        raise ValueError(f"current_replicas cannot be negative, got {current_replicas}")
    if not history.recommendations and not history.changes:
        history = ScalingHistory(
            recommendations=(Recommendation(at=now, replicas=current_replicas),)
        )

    reporting = sum(1 for r in readings if r.ready and r.value is not None)
    not_ready = sum(1 for r in readings if not r.ready)
    missing = len(readings) - reporting - not_ready + max(current_replicas - len(readings), 0)

    def decision(
        desired: int,
        recommended: int,
        reason: ScaleReason,
        value: Decimal | None,
        ratio: Decimal | None,
        remember: int | None,
    ) -> ScaleDecision:
        change = None
        if desired != current_replicas:
            change = ReplicaChange(at=now, from_replicas=current_replicas, to_replicas=desired)
        return ScaleDecision(
            current_replicas=current_replicas,
            desired_replicas=desired,
            recommended_replicas=recommended,
            metric=policy.metric,
            value=value,
            target=policy.target,
            ratio=ratio,
            reason=reason,
            decided_at=now,
            history=_remembered(policy, history, now, remember, change),
            reporting=reporting,
            missing=missing,
            not_ready=not_ready,
        )

    if current_replicas == 0:
        return decision(0, 0, ScaleReason.SCALING_DISABLED, None, None, None)
    if current_replicas > policy.max_replicas:
        top = policy.max_replicas
        return decision(top, top, ScaleReason.CLAMPED_MAX, None, None, None)
    if current_replicas < policy.min_replicas:
        bottom = policy.min_replicas
        return decision(bottom, bottom, ScaleReason.CLAMPED_MIN, None, None, None)

    wanted = _recommend(policy, current_replicas, readings)
    if wanted.reason == ScaleReason.NO_METRICS:
        return decision(current_replicas, current_replicas, wanted.reason, None, None, None)
    recommended, reason = wanted.replicas, wanted.reason
    desired = _stabilize(policy, current_replicas, recommended, history, now)
    if desired != recommended:
        reason = ScaleReason.STABILIZED
    if desired > current_replicas:
        limit = _scale_up_limit(policy, current_replicas, history, now)
        if desired > policy.max_replicas and policy.max_replicas <= limit:
            desired, reason = policy.max_replicas, ScaleReason.CLAMPED_MAX
        elif desired > limit:
            desired, reason = limit, ScaleReason.RATE_LIMITED
    elif desired < current_replicas and desired < policy.min_replicas:
        desired, reason = policy.min_replicas, ScaleReason.CLAMPED_MIN
    return decision(desired, recommended, reason, wanted.value, wanted.ratio, recommended)
