"""The HPA rules, with the Kubernetes docs' formula worked by hand:

    desired = ceil(current * mean(metric) / target) = ceil(sum(metric) / target)

no move while |ratio - 1| <= 0.1; a scale-up adds at most max(100%, 4) per 15 s; a
scale-down waits for the highest recommendation of the last 300 s.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hero.domain.autoscaling import (
    MetricReading,
    ReplicaChange,
    ScaleDecision,
    ScaleReason,
    ScalingHistory,
    ScalingPolicy,
    decide_scale,
)
from hero.domain.clock import ManualClock
from schemas import ScaleDecided

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NO_HISTORY = ScalingHistory()


def cpu(target: str = "0.5", **overrides: object) -> ScalingPolicy:
    fields: dict[str, object] = {
        "metric": "cpu",
        "target": Decimal(target),
        "min_replicas": 1,
        "max_replicas": 100,
    }
    fields.update(overrides)
    return ScalingPolicy.model_validate(fields)


def readings(*values: str | None) -> list[MetricReading]:
    return [
        MetricReading(replica_id=f"r{i}", value=None if v is None else Decimal(v))
        for i, v in enumerate(values)
    ]


def decide(
    policy: ScalingPolicy,
    current: int,
    values: list[MetricReading],
    history: ScalingHistory = NO_HISTORY,
    now: datetime = T0,
) -> ScaleDecision:
    return decide_scale(policy, current, values, history, now)


# -- the formula ---------------------------------------------------------------------------------


def test_three_replicas_at_90_percent_against_50_doubles_to_six() -> None:
    # ratio = 0.9 / 0.5 = 1.8; desired = ceil(3 * 1.8) = ceil(5.4) = 6 (limit max(6, 7) = 7)
    decision = decide(cpu(), 3, readings("0.9", "0.9", "0.9"))
    assert decision.desired_replicas == 6
    assert decision.reason == ScaleReason.SCALE_UP
    assert decision.value == Decimal("0.9")
    assert decision.ratio == Decimal("1.8")
    assert decision.target == Decimal("0.5")


def test_200_milli_against_100_milli_doubles() -> None:
    # ratio = 200 / 100 = 2; desired = ceil(2 * 2) = 4
    policy = ScalingPolicy(metric="cpu_milli", target=Decimal(100), max_replicas=10)
    decision = decide(policy, 2, readings("200", "200"))
    assert (decision.desired_replicas, decision.reason) == (4, ScaleReason.SCALE_UP)
    assert decision.ratio == Decimal(2)


def test_ratio_1_1_is_inside_the_tolerance_and_just_above_is_not() -> None:
    # 0.55 / 0.5 = 1.1: |1.1 - 1| = 0.1 <= 0.1, hold
    held = decide(cpu(), 4, readings("0.55", "0.55", "0.55", "0.55"))
    assert (held.desired_replicas, held.reason) == (4, ScaleReason.WITHIN_TOLERANCE)
    # 0.5501 / 0.5 = 1.1002: ceil(4 * 1.1002) = ceil(4.4008) = 5
    moved = decide(cpu(), 4, readings("0.5501", "0.5501", "0.5501", "0.5501"))
    assert (moved.desired_replicas, moved.reason) == (5, ScaleReason.SCALE_UP)


def test_ratio_0_9_is_inside_the_tolerance_and_just_below_is_not() -> None:
    policy = cpu(scale_down_stabilization_s=0)
    held = decide(policy, 10, readings(*["0.45"] * 10))
    assert (held.desired_replicas, held.reason) == (10, ScaleReason.WITHIN_TOLERANCE)
    # 0.4499 / 0.5 = 0.8998: ceil(10 * 0.8998) = ceil(8.998) = 9
    moved = decide(policy, 10, readings(*["0.4499"] * 10))
    assert (moved.desired_replicas, moved.reason) == (9, ScaleReason.SCALE_DOWN)


def test_a_mean_without_a_finite_decimal_still_rounds_up_exactly() -> None:
    # sum = 1.5 over 3 replicas against 0.3: 1.5 / 0.3 = 5 exactly, not 6
    policy = cpu("0.3")
    decision = decide(policy, 3, readings("0.5", "0.5", "0.5"))
    assert decision.desired_replicas == 5
    assert decision.ratio == Decimal("1.6666667")


# -- missing and not-ready replicas ----------------------------------------------------------------


def test_scaling_up_a_missing_replica_counts_as_zero_and_can_cancel_the_move() -> None:
    # ready only: 0.9 / 0.5 = 1.8 (up); with the missing one at 0: 0.9 / (2 * 0.5) = 0.9 -> hold
    decision = decide(cpu(), 2, readings("0.9", None))
    assert (decision.desired_replicas, decision.reason) == (2, ScaleReason.WITHIN_TOLERANCE)
    assert decision.ratio == Decimal("0.9")


def test_scaling_up_missing_replicas_that_reverse_the_direction_hold() -> None:
    # ready: 0.6 / 0.5 = 1.2 (up); 3 replicas absent from the readings count as 0:
    # 0.6 / (4 * 0.5) = 0.3, a scale-down: HPA refuses to reverse, so hold at 4
    decision = decide(cpu(), 4, readings("0.6"))
    assert (decision.desired_replicas, decision.reason) == (4, ScaleReason.WITHIN_TOLERANCE)


def test_scaling_up_with_missing_replicas_counted_as_zero() -> None:
    # ready: 1.0 + 1.0 + 1.0 = 3 over 3 (ratio 2); 1 missing at 0: 3 / (4 * 0.5) = 1.5
    # desired = ceil(3 / 0.5) = 6
    decision = decide(cpu(), 4, readings("1.0", "1.0", "1.0", None))
    assert (decision.desired_replicas, decision.reason) == (6, ScaleReason.SCALE_UP)
    assert decision.ratio == Decimal("1.5")
    assert decision.value == Decimal("1.0")


def test_scaling_down_a_missing_replica_counts_as_full_use() -> None:
    # ready: 0.1 * 3 = 0.3 (ratio 0.2); the missing one at max(1, 0.5) = 1:
    # (0.3 + 1) / (4 * 0.5) = 0.65; desired = ceil(1.3 / 0.5) = ceil(2.6) = 3, not ceil(0.6) = 1
    policy = cpu(full_use=Decimal(1), scale_down_stabilization_s=0)
    decision = decide(policy, 4, readings("0.1", "0.1", "0.1", None))
    assert (decision.desired_replicas, decision.reason) == (3, ScaleReason.SCALE_DOWN)
    assert decision.ratio == Decimal("0.65")


def test_scaling_down_without_full_use_a_missing_replica_counts_as_the_target() -> None:
    # (0.3 + 0.5) / (4 * 0.5) = 0.4; desired = ceil(0.8 / 0.5) = ceil(1.6) = 2
    decision = decide(cpu(scale_down_stabilization_s=0), 4, readings("0.1", "0.1", "0.1", None))
    assert (decision.desired_replicas, decision.reason) == (2, ScaleReason.SCALE_DOWN)


def test_scaling_up_a_not_ready_replica_counts_as_zero() -> None:
    # ready: 2.0 over 2 (ratio 2); the starting replica at 0: 2 / (3 * 0.5) = 1.3333333
    values = [*readings("1.0", "1.0"), MetricReading(replica_id="new", value=None, ready=False)]
    decision = decide(cpu(), 3, values)
    assert (decision.desired_replicas, decision.ratio) == (4, Decimal("1.3333333"))


def test_scaling_down_a_not_ready_replica_is_left_out() -> None:
    # 0.2 / (2 * 0.5) = 0.2; the not-ready one is not counted: ceil(0.2 / 0.5) = 1
    values = [
        *readings("0.1", "0.1"),
        MetricReading(replica_id="boot", value=Decimal("0.9"), ready=False),
    ]
    decision = decide(cpu(scale_down_stabilization_s=0), 3, values)
    assert (decision.desired_replicas, decision.reason) == (1, ScaleReason.SCALE_DOWN)


@pytest.mark.parametrize("values", [[], readings(None, None)])
def test_no_metrics_changes_nothing(values: list[MetricReading]) -> None:
    decision = decide(cpu(), 2, values)
    assert (decision.desired_replicas, decision.reason) == (2, ScaleReason.NO_METRICS)
    assert decision.value is None
    assert decision.ratio is None


def test_zero_replicas_never_scale_up() -> None:
    decision = decide(cpu(min_replicas=0), 0, [])
    assert (decision.desired_replicas, decision.reason) == (0, ScaleReason.SCALING_DISABLED)


# -- clamps and the scale-up rate ----------------------------------------------------------------


def test_desired_above_max_is_clamped() -> None:
    decision = decide(cpu(max_replicas=5), 3, readings("0.9", "0.9", "0.9"))
    assert (decision.desired_replicas, decision.recommended_replicas) == (5, 6)
    assert decision.reason == ScaleReason.CLAMPED_MAX


def test_desired_below_min_is_clamped() -> None:
    # ceil(4 * 0.05 / 0.5) = ceil(0.4) = 1, below the minimum of 2
    policy = cpu(min_replicas=2, scale_down_stabilization_s=0)
    decision = decide(policy, 4, readings("0.05", "0.05", "0.05", "0.05"))
    assert (decision.desired_replicas, decision.reason) == (2, ScaleReason.CLAMPED_MIN)


def test_a_count_outside_the_bounds_is_brought_inside_before_any_metric() -> None:
    above = decide(cpu(max_replicas=5), 7, readings("0.5"))
    assert (above.desired_replicas, above.reason) == (5, ScaleReason.CLAMPED_MAX)
    below = decide(cpu(min_replicas=3), 1, [])
    assert (below.desired_replicas, below.reason) == (3, ScaleReason.CLAMPED_MIN)


def test_scale_up_by_100_percent_when_it_is_more_than_4_pods() -> None:
    # 10 replicas at 4x the target want 40; max(10 * 2, 10 + 4) = 20
    decision = decide(cpu(), 10, readings(*["2.0"] * 10))
    assert (decision.recommended_replicas, decision.desired_replicas) == (40, 20)
    assert decision.reason == ScaleReason.RATE_LIMITED


def test_scale_up_by_4_pods_when_it_is_more_than_100_percent() -> None:
    # 1 replica at 10x wants 10; max(1 * 2, 1 + 4) = 5
    decision = decide(cpu(), 1, readings("5.0"))
    assert (decision.desired_replicas, decision.reason) == (5, ScaleReason.RATE_LIMITED)


def test_the_scale_up_limit_counts_from_the_start_of_the_15_s_period() -> None:
    clock = ManualClock(T0)
    first = decide(cpu(), 1, readings("5.0"), now=clock.now())
    assert first.desired_replicas == 5
    assert first.history.changes == (ReplicaChange(at=T0, from_replicas=1, to_replicas=5),)
    # 10 s later the period began at 1 replica: still at most max(2, 5) = 5
    clock.advance(timedelta(seconds=10))
    hot = readings(*["5.0"] * 5)
    second = decide(cpu(), 5, hot, first.history, clock.now())
    assert (second.desired_replicas, second.reason) == (5, ScaleReason.RATE_LIMITED)
    # 15 s after the change it has left the period: from 5, max(10, 9) = 10
    clock.set(T0 + timedelta(seconds=15))
    third = decide(cpu(), 5, hot, second.history, clock.now())
    assert (third.desired_replicas, third.reason) == (10, ScaleReason.RATE_LIMITED)


# -- scale-down stabilization ----------------------------------------------------------------------


def test_a_drop_scales_down_only_after_the_300_s_window() -> None:
    clock = ManualClock(T0)
    policy = cpu()
    busy = decide(policy, 4, readings(*["0.5"] * 4), now=clock.now())
    assert busy.reason == ScaleReason.WITHIN_TOLERANCE
    history, quiet = busy.history, readings(*["0.1"] * 4)
    # every 15 s the metrics ask for ceil(0.4 / 0.5) = 1, but 4 was asked at T0
    for _ in range(19):
        clock.advance(timedelta(seconds=15))
        held = decide(policy, 4, quiet, history, clock.now())
        assert (held.desired_replicas, held.recommended_replicas) == (4, 1)
        assert held.reason == ScaleReason.STABILIZED
        history = held.history
    assert clock.now() == T0 + timedelta(seconds=285)
    clock.advance(timedelta(seconds=15))  # T0 + 300 s: T0's recommendation left the window
    dropped = decide(policy, 4, quiet, history, clock.now())
    assert (dropped.desired_replicas, dropped.reason) == (1, ScaleReason.SCALE_DOWN)
    assert dropped.to_event("acme", "w1").desired_replicas == 1


def test_a_first_low_reading_does_not_remove_replicas_at_once() -> None:
    decision = decide(cpu(), 4, readings(*["0.1"] * 4))
    assert (decision.desired_replicas, decision.reason) == (4, ScaleReason.STABILIZED)


def test_the_highest_recommendation_of_the_window_wins() -> None:
    clock = ManualClock(T0)
    policy = cpu(max_replicas=10)
    history = ScalingHistory()
    for values in (["0.5"] * 6, ["0.25"] * 6):  # ask 6, then ceil(1.5 / 0.5) = 3
        history = decide(policy, 6, readings(*values), history, clock.now()).history
        clock.advance(timedelta(seconds=200))
    # at T0 + 400 s: T0's 6 has left; 3 (T0 + 200 s) is the highest left, above today's 1
    decision = decide(policy, 6, readings(*["0.05"] * 6), history, clock.now())
    assert (decision.desired_replicas, decision.recommended_replicas) == (3, 1)
    assert decision.reason == ScaleReason.STABILIZED


def test_stabilization_never_delays_a_scale_up() -> None:
    history = ScalingHistory()
    low = decide(cpu(), 4, readings(*["0.1"] * 4), history, T0)
    high = decide(cpu(), 4, readings(*["0.9"] * 4), low.history, T0 + timedelta(seconds=15))
    assert (high.desired_replicas, high.reason) == (8, ScaleReason.SCALE_UP)


# -- the event and the policy ----------------------------------------------------------------------


def test_the_decision_maps_onto_scale_decided() -> None:
    decision = decide(cpu(), 3, readings("0.9", "0.9", "0.9"))
    event = decision.to_event("acme", "shop")
    assert event == ScaleDecided(
        offtaker_id="acme",
        workload_id="shop",
        current_replicas=3,
        desired_replicas=6,
        metric="cpu",
        value=Decimal("0.9"),
        target=Decimal("0.5"),
        reason="scale_up",
        ratio=Decimal("1.8"),
        recommended_replicas=6,
        decided_at=decision.decided_at,
        reporting=3,
    )


def test_the_decision_counts_reporting_missing_and_not_ready_replicas() -> None:
    got = decide(
        cpu(),
        5,
        [
            MetricReading(replica_id="a", value=Decimal("0.9")),
            MetricReading(replica_id="b"),
            MetricReading(replica_id="c", value=Decimal("0.9"), ready=False),
        ],
    )
    # two replicas are absent from the readings altogether: missing too
    assert (got.reporting, got.missing, got.not_ready) == (1, 3, 1)


def test_the_policy_refuses_floats_and_inverted_bounds() -> None:
    with pytest.raises(ValidationError, match="not a float"):
        ScalingPolicy(metric="cpu", target=0.5, max_replicas=3)
    with pytest.raises(ValidationError, match="min_replicas"):
        cpu(min_replicas=5, max_replicas=3)
    with pytest.raises(ValidationError):
        cpu(target="0")


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(cpu(), 1, readings("0.5"), now=datetime(2026, 1, 1))


# -- properties ----------------------------------------------------------------------------------

values_strategy = st.lists(
    st.one_of(
        st.none(),
        st.decimals(min_value=0, max_value=5, places=3, allow_nan=False, allow_infinity=False),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(
    bounds=st.tuples(st.integers(0, 10), st.integers(1, 20)).map(sorted),
    current=st.integers(1, 25),
    values=values_strategy,
    target=st.decimals(min_value="0.05", max_value=3, places=2),
    seconds=st.integers(0, 600),
)
def test_desired_always_within_min_and_max(
    bounds: list[int],
    current: int,
    values: list[Decimal | None],
    target: Decimal,
    seconds: int,
) -> None:
    low, high = bounds[0], max(bounds[1], 1)
    policy = ScalingPolicy(metric="cpu", target=target, min_replicas=low, max_replicas=high)
    metrics = [MetricReading(replica_id=f"r{i}", value=v) for i, v in enumerate(values)]
    first = decide(policy, current, metrics)
    later = decide(
        policy, first.desired_replicas, metrics, first.history, T0 + timedelta(seconds=seconds)
    )
    for decision in (first, later):
        assert low <= decision.desired_replicas <= high


@settings(max_examples=200, deadline=None)
@given(
    current=st.integers(1, 20),
    target=st.decimals(min_value="0.05", max_value=3, places=2),
    scale=st.decimals(min_value="0.9", max_value="1.1", places=4),
)
def test_never_moves_inside_the_tolerance(current: int, target: Decimal, scale: Decimal) -> None:
    policy = ScalingPolicy(metric="cpu", target=target, min_replicas=1, max_replicas=20)
    metrics = readings(*[str(target * scale)] * current)
    decision = decide(policy, current, metrics)
    assert decision.desired_replicas == current
    assert decision.reason == ScaleReason.WITHIN_TOLERANCE
