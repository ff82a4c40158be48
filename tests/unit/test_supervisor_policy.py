"""The supervisor's restart policy on an injected clock: capped exponential backoff, the reset
after a stable run, the crash loop and its window; and the restart order (dependencies
first, a kind added later last)."""

from __future__ import annotations

import pytest

from infra.local import restart_order
from infra.supervisor_policy import Backoff, RestartPolicy


def test_the_delay_doubles_from_half_a_second_and_stops_at_the_cap() -> None:
    backoff = Backoff(RestartPolicy(base_s=0.5, cap_s=30.0, loop_window_s=1000.0))
    now, delays = 0.0, []
    for _ in range(9):
        delays.append(backoff.crashed(now))
        now += delays[-1]
        backoff.started(now)
        now += 0.1  # it dies again at once
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert backoff.restarts == 9


def test_a_stable_run_starts_the_delay_over() -> None:
    policy = RestartPolicy(stable_s=60.0)
    backoff = Backoff(policy)
    for now in (0.0, 1.0, 3.0):
        backoff.crashed(now)
        backoff.started(now + 0.5)
    backoff.running(40.0)  # 36.5 s after its start: not yet stable
    assert backoff.crashed(41.0) == 4.0
    backoff.started(45.0)
    backoff.running(105.0)  # 60 s after its start
    assert backoff.crashed(300.0) == 0.5


def test_five_exits_within_a_minute_are_a_crash_loop_and_it_ends_when_they_age_out() -> None:
    backoff = Backoff(RestartPolicy(loop_crashes=5, loop_window_s=60.0))
    for now in (0.0, 5.0, 10.0, 15.0):
        backoff.crashed(now)
        assert not backoff.crash_looping(now)
    backoff.crashed(20.0)
    assert backoff.crash_looping(20.0)
    assert backoff.crashes_in_window(20.0) == 5
    assert backoff.crash_looping(60.0)  # the first exit is exactly 60 s old: still counted
    assert not backoff.crash_looping(60.5)
    assert backoff.crashes_in_window(81.0) == 0


def test_a_loop_never_spins_the_starts_are_spaced_by_the_backoff() -> None:
    # A command that exits at once, restarted as soon as the policy allows, for 60 s.
    backoff = Backoff(RestartPolicy())
    now, starts = 0.0, 0
    while now < 60.0:
        now += backoff.crashed(now)
        backoff.started(now)
        starts += 1
    assert starts <= 8  # 0.5 + 1 + 2 + 4 + 8 + 16 + 30 > 60
    assert backoff.crash_looping(now)


@pytest.mark.parametrize(
    ("kwargs", "wrong"),
    [
        ({"base_s": 0.0}, "base_s"),
        ({"base_s": 40.0, "cap_s": 30.0}, "base_s"),
        ({"stable_s": 0.0}, "stable_s"),
        ({"loop_crashes": 0}, "loop_crashes"),
    ],
)
def test_a_wrong_policy_is_refused_naming_the_field(kwargs: dict[str, float], wrong: str) -> None:
    with pytest.raises(ValueError, match=wrong):
        RestartPolicy(**kwargs)


def test_dependencies_come_first_and_an_unknown_kind_last() -> None:
    labels = [
        "agents", "gateway-2", "faust-usage", "relay", "ray-2", "gateway", "valkey", "broker",
        "treasury", "postgres", "ray", "usage", "relay-2",
    ]  # fmt: skip
    assert restart_order(labels) == [
        "postgres", "broker", "valkey", "ray", "ray-2", "relay", "relay-2", "usage",
        "treasury", "agents", "gateway", "gateway-2", "faust-usage",
    ]  # fmt: skip
