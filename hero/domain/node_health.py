"""Grid 3 node status from the last report, as the grid proxy decides it (DOMAIN.md "Grid 3";
threefoldtech/tfgrid-sdk-go, ``grid-proxy/pkg/nodestatus``).

Nodes report every 40 minutes. A node is *up* when it reported within 80 minutes (two
reports) and no power state or target is down; *standby* when it reported within 24 hours and
its power state or target is down (farmerbot switched it off, or is switching it); otherwise
*down*. Both bounds are inclusive, as the proxy's ``updated_at >= now - interval`` is.

Pure: the caller passes ``now``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from schemas import NodeStatus, NodeStatusChanged

__all__ = [
    "REPORT_INTERVAL",
    "STANDBY_WITHIN",
    "UP_WITHIN",
    "missed_reports",
    "node_status",
    "status_change",
]

#: A node sends a report every 40 minutes.
REPORT_INTERVAL = timedelta(minutes=40)
#: Up: a report within two intervals.
UP_WITHIN = 2 * REPORT_INTERVAL
#: Standby: a report within a day while the power state or target is down.
STANDBY_WITHIN = timedelta(hours=24)


def _aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")


def node_status(
    last_report: datetime | None,
    now: datetime,
    *,
    power_target_down: bool = False,
    power_state_down: bool = False,
    up_within: timedelta = UP_WITHIN,
    standby_within: timedelta = STANDBY_WITHIN,
) -> NodeStatus:
    """The node's status at ``now``; a node that never reported is down."""
    _aware(now, "now")
    if last_report is None:
        return NodeStatus.DOWN
    _aware(last_report, "last_report")
    silence = now - last_report
    if power_target_down or power_state_down:
        return NodeStatus.STANDBY if silence <= standby_within else NodeStatus.DOWN
    return NodeStatus.UP if silence <= up_within else NodeStatus.DOWN


def missed_reports(
    last_seen: datetime,
    now: datetime,
    threshold: timedelta = UP_WITHIN,
    interval: timedelta = REPORT_INTERVAL,
) -> int:
    """How many reports did not arrive since ``last_seen``: 0 while the silence is within
    ``threshold`` (the node still counts as up), else the whole intervals elapsed.

    At the default 40-minute interval, silent for 80 minutes gives 0, for 81 minutes 2, for
    2 hours 3: a node is late only once the threshold is past, and then every report it should
    have sent counts.
    """
    _aware(last_seen, "last_seen")
    _aware(now, "now")
    if interval <= timedelta(0):
        raise ValueError("interval must be positive")
    silence = now - last_seen
    if silence <= threshold:
        return 0
    return silence // interval


def status_change(
    node_id: str,
    previous: NodeStatus | None,
    last_report: datetime | None,
    now: datetime,
    *,
    power_target_down: bool = False,
    power_state_down: bool = False,
) -> NodeStatusChanged | None:
    """The event to record when the status at ``now`` differs from ``previous``, else None."""
    status = node_status(
        last_report, now, power_target_down=power_target_down, power_state_down=power_state_down
    )
    if status == previous:
        return None
    if last_report is None:
        reason = "never_reported"
    else:
        minutes = int((now - last_report).total_seconds() // 60)
        reason = f"last_report_{minutes}_min_ago"
    return NodeStatusChanged(node_id=node_id, status=status, previous=previous, reason=reason)
