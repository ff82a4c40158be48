"""``python -m agents.runtime [--shards N]``: agent hosts on the stack's Ray until SIGTERM.

Reads the HERO_* settings (``HERO_DATA_DIR`` names the stack). ``hero up`` starts it with
every endpoint set explicitly (``HERO_KAFKA_BOOTSTRAP``, ``HERO_REDIS_URL``,
``HERO_RAY_ADDRESS``) and the Ray client's variables in its environment, so
``LocalStack.endpoints()`` resolves before the stack is complete; run by hand against a
running stack, it finds the endpoints in ``run/stack.json``.

Once every host answers and has caught up with the store it writes ``<data_dir>/run/
agents.health`` (JSON: pid, shards, agents, caught_up, host_pids, hosts_by_node, updated_at),
the readiness ``hero up`` waits for, and refreshes it every ~2 s. The hosts are spread over
the Ray nodes; after a refresh, a host is moved when one node runs two more than another (a
worker node came back after Ray restarted its hosts on the head). It logs the cluster's
stats every ``--report-every`` seconds. SIGTERM or SIGINT stops the hosts (killing the actors
it started), leaves Ray and exits 0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.runtime.cluster import AgentCluster, ClusterStats
from hero.config import HeroSettings
from infra import LocalStack

log = logging.getLogger("agents.runtime")

HEALTH_EVERY_S = 2.0
"""How often ``run/agents.health`` is refreshed."""
_POLL_S = 0.1


def health_path(settings: HeroSettings) -> Path:
    return settings.data_dir / "run" / "agents.health"


def default_name_prefix(settings: HeroSettings) -> str:
    """Actor names of this data dir's hosts: two stacks sharing one Ray never clash."""
    digest = hashlib.sha256(str(settings.data_dir).encode()).hexdigest()[:8]
    return f"hero-agents-{digest}"


def write_health(path: Path, shards: int, stats: ClusterStats | None, error: str = "") -> None:
    """The report, written atomically (a reader never sees half of it)."""
    report: dict[str, Any] = {
        "pid": os.getpid(),
        "shards": shards,
        "agents": stats.agents if stats is not None else None,
        "caught_up": stats.caught_up if stats is not None else False,
        "host_pids": [host.pid for host in stats.hosts] if stats is not None else [],
        "hosts_by_node": stats.hosts_by_node if stats is not None else {},
        "bad_records": stats.total("bad_records") if stats is not None else 0,
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if error:
        report["error"] = error
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(report))
    partial.replace(path)


def remove_health(path: Path) -> None:
    """Remove the report if it is ours (a newer process may have replaced it)."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def wait_caught_up(
    cluster: AgentCluster, stop: threading.Event, timeout_s: float
) -> ClusterStats | None:
    """``AgentCluster.wait_caught_up`` that gives up on ``stop`` (then None)."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        stats = cluster.stats(timeout_s=timeout_s)
        if stats.caught_up:
            return stats
        if time.monotonic() > deadline:
            raise TimeoutError(f"agent hosts not caught up after {timeout_s}s: {stats}")
        stop.wait(_POLL_S)
    return None


def _rebalance(cluster: AgentCluster, stats: ClusterStats) -> None:
    """Spread the hosts again over the Ray nodes alive (one move at a time)."""
    try:
        moved = cluster.rebalance(stats)
    except Exception as error:  # reported; the next round tries again
        log.warning("moving an agent host to another Ray node failed: %r", error)
        return
    if moved is not None:
        log.info("moved agent host %d to spread the hosts over the Ray nodes", moved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.runtime", description=__doc__)
    parser.add_argument("--shards", type=int, default=2, help="agent hosts to start")
    parser.add_argument("--report-every", type=float, default=30.0, metavar="S")
    parser.add_argument(
        "--name-prefix", default=None, help="actor name prefix (default: one per data dir)"
    )
    parser.add_argument("--catch-up-timeout", type=float, default=120.0, metavar="S")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    settings = HeroSettings()
    endpoints = LocalStack(settings).endpoints()
    health = health_path(settings)
    prefix = args.name_prefix or default_name_prefix(settings)
    cluster = AgentCluster(settings, endpoints, shards=args.shards, name_prefix=prefix)
    # A SIGTERM while ray.init runs meets Ray's own handler (SystemExit): start() then kills
    # the hosts it created and re-raises.
    cluster.start()
    # After ray.init, which installs its own SIGTERM handler (one that does not stop us cleanly).
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        stats = wait_caught_up(cluster, stop, args.catch_up_timeout)
        if stats is None:
            return 0
        write_health(health, args.shards, stats)
        log.info("%d agent hosts caught up: %d agents", args.shards, stats.agents)
        next_log = time.monotonic() + args.report_every
        while not stop.wait(HEALTH_EVERY_S):
            try:
                stats = cluster.stats(timeout_s=max(HEALTH_EVERY_S * 2, 5.0))
            except Exception as error:  # a host restarting: report it, keep going
                log.warning("agent hosts' stats: %r", error)
                write_health(health, args.shards, None, error=repr(error)[:200])
            else:
                write_health(health, args.shards, stats)
                _rebalance(cluster, stats)
                if time.monotonic() >= next_log:
                    next_log = time.monotonic() + args.report_every
                    summary = stats.as_dict()
                    summary.pop("hosts")
                    log.info("agents: %s", json.dumps(summary))
    finally:
        cluster.stop()
        remove_health(health)
        log.info("agent hosts stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
