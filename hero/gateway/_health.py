"""What ``GET /health`` says: "ok", or "degraded" with the reasons, never an internal detail.

Degraded means a follower of the store in this gateway has stopped (its task or thread ended),
is failing (it logs why on every attempt), or lags the store by more than
``HERO_HEALTH_MAX_LAG`` events; or Valkey or the store do not answer. Rows the followers
stepped over are listed as ``skipped`` with a warning: they are recorded (``hero events
skipped``) and change nothing that still works, so they alone do not make it degraded. The
reasons are fixed sentences: exception text and addresses go to the log, not to this
unauthenticated answer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hero.gateway.context import GatewayContext
from hero.gateway.scopes import PROJECTIONS
from hero.store import skip_counts

__all__ = ["health_report", "watch_task"]

log = logging.getLogger(__name__)

#: How long /health waits for Valkey or the store before it calls them unavailable.
_TIMEOUT_S = 2.0


def watch_task(task: asyncio.Task[None], name: str, stopping: asyncio.Event) -> None:
    """Log a background task's end unless the gateway is stopping: no silent death."""

    def done(finished: asyncio.Task[None]) -> None:
        if stopping.is_set():
            return
        if finished.cancelled():
            log.error("%s: the task was cancelled; /health reports it stopped", name)
            return
        error = finished.exception()
        if error is not None:
            log.error("%s: the task died; /health reports it stopped", name, exc_info=error)
        else:
            log.error("%s: the task ended on its own; /health reports it stopped", name)

    task.add_done_callback(done)


async def health_report(
    context: GatewayContext, tasks: dict[str, asyncio.Task[None]], max_lag: int
) -> dict[str, Any]:
    reasons = [f"{name} stopped" for name, task in tasks.items() if task.done()]
    projector = context.extras.get("projector")
    if projector is not None and projector.failing and "read-models" in tasks:
        reasons.append(f"read-models failing: {projector.failing}")
    snapshots = context.extras.get("snapshots")
    if snapshots is not None and snapshots.last_error:
        reasons.append(f"read-models snapshot: {snapshots.last_error}")
    broadcaster = context.extras.get("broadcaster")
    if broadcaster is not None and broadcaster.stopped:
        reasons.append("event-streams stopped")
    body: dict[str, Any] = {"status": "ok", "reasons": reasons}
    try:
        head = await asyncio.wait_for(asyncio.to_thread(context.store.current_position), _TIMEOUT_S)
    except Exception:
        log.warning("health: the event store did not answer", exc_info=True)
        reasons.append("the event store does not answer")
        head = None
    read = context.extras["read_models"]
    try:
        positions = await asyncio.wait_for(_positions(read), _TIMEOUT_S)
    except Exception:
        log.warning("health: the read models did not answer", exc_info=True)
        reasons.append("the read models do not answer (Valkey)")
        positions = None
    if positions is not None:
        body["read_models"] = positions
    if head is not None:
        body["store_position"] = head
        reasons.extend(_lagging(positions, broadcaster, head, max_lag))
    skipped = skip_counts()
    if skipped:
        body["skipped"] = skipped
        body["warnings"] = [
            f"{count} unreadable row(s) skipped by {source}; `hero events skipped` lists them"
            for source, count in sorted(skipped.items())
        ]
    if reasons:
        body["status"] = "degraded"
    return body


async def _positions(read: Any) -> dict[str, int]:
    return {name: await read.position(name) for name in PROJECTIONS}


def _lagging(
    positions: dict[str, int] | None, broadcaster: Any, head: int, max_lag: int
) -> list[str]:
    found = []
    if positions:
        behind = head - min(positions.values())
        if behind > max_lag:
            found.append(f"read-models lagging: {behind} events behind (bound {max_lag})")
    if broadcaster is not None and broadcaster.started and not broadcaster.stopped:
        behind = head - broadcaster.position
        if behind > max_lag:
            found.append(f"event-streams lagging: {behind} events behind (bound {max_lag})")
    return found
