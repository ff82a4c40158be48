"""The relay's takeover on the default engines, SQLite + the embedded Tansu broker: the lease is
an ``flock`` beside the database, and Tansu's end offsets are not Kafka's (the last batch's
base offset + 1), so reading what a dead relay left on the topic is checked here too."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hero.config import HeroSettings
from hero.store import SqliteEventStore
from infra._procfs import running
from infra._state import StackState
from infra.hero_processes import RelayProcess
from tests.e2e._cli import hero, hero_json
from tests.integration._failover import successor_leaves_out_what_was_published
from tests.integration._kafka import append_round_robin

pytestmark = [
    pytest.mark.integration,
    pytest.mark.embedded_only(reason="the SQLite + Tansu twin of test_relay_failover.py"),
]

TAKEOVER_BOUND_S = 5.0


async def test_a_successor_leaves_out_what_a_dead_relay_published_on_tansu(
    broker_factory, store_factory
) -> None:
    figures = await successor_leaves_out_what_was_published(
        str(broker_factory().address), store_factory(), idempotent=False
    )
    print("\ncheckpoint behind the broker, Tansu:", figures)


def _health(relay: RelayProcess) -> dict[str, object]:
    return relay.health() or {}


def _until(condition, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s} s for {what}")
        time.sleep(0.01)  # polling a health file, bounded by the deadline above


def test_the_standby_takes_over_on_sqlite_and_tansu(broker_factory, tmp_path: Path) -> None:
    broker = broker_factory()
    bootstrap = str(broker.address)
    settings = HeroSettings(
        data_dir=tmp_path / "hero", store_url=f"sqlite:///{tmp_path / 'events.db'}"
    )
    store = SqliteEventStore(tmp_path / "events.db")
    streams = [f"node-tansu-{i}" for i in range(10)]
    first, second = (RelayProcess(settings, bootstrap, replica=n) for n in (1, 2))
    try:
        first.start(timeout=60)
        _until(lambda: _health(first).get("role") == "active", 30, "relay 1 to lead")
        second.start(timeout=60)
        assert _health(second).get("role") == "standby"
        total = append_round_robin(store, streams, per_stream=20)
        _until(lambda: _health(first).get("position") == total, 30, "relay 1 to publish")
        killed_at = time.monotonic()
        first.kill()
        more = append_round_robin(store, [f"{s}-b" for s in streams], per_stream=5)
        _until(
            lambda: _health(second).get("position") == total + more,
            TAKEOVER_BOUND_S + 5,
            "relay 2 to take over and publish",
        )
        takeover = time.monotonic() - killed_at
    finally:
        for relay in (first, second):
            relay.stop()
        store.close()
    print(f"\nSQLite + Tansu: the standby published {takeover:.3f} s after kill -9")
    assert takeover < TAKEOVER_BOUND_S


@pytest.mark.e2e
def test_hero_up_replicas_starts_relays_that_status_lists_and_down_stops(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    report = hero_json("up", "--replicas", "2", data_dir=data_dir)
    try:
        components = {c["name"]: c for c in report["components"]}
        assert {"relay", "relay-2"} <= set(components), components
        assert all(c["state"] == "up" for c in components.values()), components
        state = StackState.load(data_dir)
        assert state is not None
        started = [(record.pid, record.start_ticks) for record in state.processes.values()]
        roles = sorted(
            (components[name]["detail"] or "").split(":")[0].split(",")[0]
            for name in ("relay", "relay-2")
        )
        assert roles == ["active", "standby"], components
        listed = {c["name"]: c for c in hero_json("status", data_dir=data_dir)}
        assert listed["relay"]["state"] == listed["relay-2"]["state"] == "up", listed
    finally:
        down = hero_json("down", data_dir=data_dir)
    stopped = {c["name"]: c for c in down}
    assert stopped["relay"]["state"] == stopped["relay-2"]["state"] == "down", stopped
    assert [pid for pid, ticks in started if running(pid, ticks)] == []
    assert not (data_dir / "run" / "relay-2.health").exists()


@pytest.mark.parametrize("value", ["0", "9", "two"])
def test_hero_up_refuses_a_bad_replica_count_and_starts_nothing(tmp_path: Path, value) -> None:
    data_dir = tmp_path / "data"
    result = hero("up", "--replicas", value, data_dir=data_dir)
    assert result.returncode != 0
    assert "--replicas" in result.stderr + result.stdout
    assert not StackState.path(data_dir).exists()


def test_hero_replicas_out_of_range_in_the_environment_is_named(tmp_path: Path) -> None:
    result = hero("config", data_dir=tmp_path / "data", env={"HERO_REPLICAS": "12"})
    assert result.returncode != 0
    assert "replicas" in (result.stderr + result.stdout).lower()


def test_a_standby_that_cannot_reach_the_store_says_why(tmp_path: Path) -> None:
    settings = HeroSettings(
        data_dir=tmp_path / "hero", store_url="postgresql://hero:hunter2@127.0.0.1:1/hero"
    )
    relay = RelayProcess(settings, "127.0.0.1:1")
    try:
        relay.start(timeout=60)
        _until(lambda: "reason" in _health(relay), 30, "the standby to report its reason")
        health = _health(relay)
    finally:
        relay.stop()
    assert health["role"] == "standby"
    assert "cannot reach the store for the lease" in str(health["reason"])
    assert "hunter2" not in json.dumps(health)
