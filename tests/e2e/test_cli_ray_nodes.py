"""``hero up --ray-nodes 2`` through the CLI: a worker node beside the head, the agent hosts
on both, ``hero status`` showing where each runs, ``hero down`` leaving nothing of either."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from infra._procfs import iter_procs
from tests.e2e._cli import hero, hero_json

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _sessions(*leaders: int) -> list[int]:
    """Live processes in the sessions of ``leaders`` (each component is a session leader)."""
    return sorted(p.pid for p in iter_procs() if p.sid in leaders and not p.dead)


def _by_name(components: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in components}


def test_up_with_two_ray_nodes_spreads_the_hosts_and_down_stops_both_nodes(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    up = hero("up", "--ray-nodes", "2", data_dir=data, timeout=300)
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        deadline = time.monotonic() + 60
        while True:
            status = _by_name(hero_json("status", data_dir=data))
            agents = status["agents"]["detail"] or ""
            if re.search(r"hosts per Ray node: ray \[\d\]; ray-2 \[\d\]", agents):
                break
            assert time.monotonic() < deadline, f"hosts not spread: {agents}"
            time.sleep(0.5)
        head, worker = status["ray"], status["ray-2"]
        assert worker["state"] == "up"
        assert worker["detail"] == f"Ray worker node of the head at {head['address']}"
        assert worker["pid"] != head["pid"]
        # A whole Ray node of its own: its raylet and the rest run in its session.
        assert len(_sessions(worker["pid"])) > 1
        leaders = [c["pid"] for c in status.values() if c["pid"] is not None]
        # A second `up` finds it all running: nothing is started twice.
        again = hero_json("up", data_dir=data)
        assert {c["name"]: c["pid"] for c in again["components"]}["ray-2"] == worker["pid"]
    finally:
        down = hero("down", data_dir=data, timeout=120)
    assert down.returncode == 0, down.stderr + down.stdout
    assert _sessions(*leaders) == []
    assert {c["state"] for c in hero_json("status", data_dir=data)} == {"down"}
