"""Grid 3 node status (grid-proxy ``pkg/nodestatus``): reports every 40 min; up = a report
within 80 min; standby = within 24 h with the power state or target down; else down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hero.domain.node_health import missed_reports, node_status, status_change
from schemas import NodeStatus

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


@pytest.mark.parametrize(
    ("last_report", "status"),
    [
        (ago(minutes=0), NodeStatus.UP),
        (ago(minutes=40), NodeStatus.UP),
        (ago(minutes=80), NodeStatus.UP),  # the bound is inclusive, as updated_at >= ...
        (ago(minutes=80, seconds=1), NodeStatus.DOWN),
        (ago(hours=5), NodeStatus.DOWN),
        (None, NodeStatus.DOWN),
    ],
)
def test_up_within_80_minutes_else_down(last_report: datetime | None, status: NodeStatus) -> None:
    assert node_status(last_report, NOW) == status


@pytest.mark.parametrize(
    ("last_report", "status"),
    [
        (ago(hours=3), NodeStatus.STANDBY),
        (ago(hours=24), NodeStatus.STANDBY),
        (ago(hours=24, seconds=1), NodeStatus.DOWN),
    ],
)
def test_standby_within_24_hours_when_the_power_target_is_down(
    last_report: datetime, status: NodeStatus
) -> None:
    assert node_status(last_report, NOW, power_target_down=True) == status


def test_a_node_being_powered_on_is_standby_not_up() -> None:
    assert node_status(ago(minutes=5), NOW, power_state_down=True) == NodeStatus.STANDBY


@pytest.mark.parametrize(
    ("silence", "missed"),
    [
        (timedelta(0), 0),
        (timedelta(minutes=80), 0),
        (timedelta(minutes=81), 2),
        (timedelta(hours=2), 3),
        (timedelta(hours=24), 36),
    ],
)
def test_missed_reports(silence: timedelta, missed: int) -> None:
    assert missed_reports(NOW - silence, NOW) == missed


def test_missed_reports_with_a_custom_threshold() -> None:
    assert missed_reports(ago(minutes=50), NOW, threshold=timedelta(minutes=40)) == 1


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        missed_reports(datetime(2026, 1, 1), NOW)


def test_status_change_emits_only_on_a_change() -> None:
    assert status_change("n1", NodeStatus.UP, ago(minutes=30), NOW) is None
    event = status_change("n1", NodeStatus.UP, ago(minutes=90), NOW)
    assert event is not None
    assert (event.node_id, event.status, event.previous) == ("n1", NodeStatus.DOWN, NodeStatus.UP)
    assert event.reason == "last_report_90_min_ago"
    first = status_change("n2", None, None, NOW)
    assert first is not None
    assert (first.status, first.reason) == (NodeStatus.DOWN, "never_reported")
