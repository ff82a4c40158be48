"""The snapshot store's contract in memory and in the event store's SQLite file; PostgreSQL's
is in tests/integration/test_snapshot_store.py."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from hero.config import HeroSettings
from hero.domain.clock import ManualClock
from hero.store import (
    NO_STREAM,
    MemorySnapshotStore,
    Snapshot,
    SnapshotCadence,
    SnapshotKeeper,
    SqliteEventStore,
    SqliteSnapshotStore,
    StoreError,
    open_snapshots,
)
from tests.unit.snapshot_contract import SnapshotStoreContract
from tests.unit.store_contract import new_event


class TestMemorySnapshotStore(SnapshotStoreContract):
    @pytest.fixture
    def snapshots(self):
        return MemorySnapshotStore()


class TestSqliteSnapshotStore(SnapshotStoreContract):
    @pytest.fixture
    def snapshots(self, tmp_path):
        store = SqliteSnapshotStore(tmp_path / "events.db")
        yield store
        store.close()


def test_sqlite_snapshots_live_in_the_event_store_file_and_survive_reopening(tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    clock = ManualClock()
    events = SqliteEventStore(tmp_path / "events.db", clock)
    first = open_snapshots(url)
    try:
        events.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
        first.save(Snapshot("projector", 1, 1, b"state"))
    finally:
        first.close()
        events.close()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == ["events.db"]
    second = open_snapshots(url)
    try:
        assert isinstance(second, SqliteSnapshotStore)
        assert second.latest("projector", 1) == Snapshot("projector", 1, 1, b"state")
    finally:
        second.close()


def test_an_unsupported_url_is_refused_naming_only_its_scheme():
    with pytest.raises(StoreError, match="scheme 'mysql'") as refused:
        open_snapshots("mysql://user:hunter2@host/db")
    assert "hunter2" not in str(refused.value)


# -- the cadence and the keeper -------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_snapshot_is_due_after_so_many_events_or_seconds_with_an_event():
    cadence = SnapshotCadence(every_events=100, every_s=60)
    assert not cadence.due(99, 59.9)
    assert cadence.due(100, 0)
    assert cadence.due(1, 60)
    assert not cadence.due(0, 3600)  # nothing new: nothing to save


@pytest.mark.parametrize(("events", "seconds"), [(0, 1.0), (-1, 1.0), (1, 0), (1, -5)])
def test_a_bad_cadence_is_refused(events, seconds):
    with pytest.raises(ValueError, match="every_"):
        SnapshotCadence(events, seconds)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HERO_SNAPSHOT_EVERY_EVENTS", "0"),
        ("HERO_SNAPSHOT_EVERY_EVENTS", "many"),
        ("HERO_SNAPSHOT_EVERY_S", "0"),
        ("HERO_SNAPSHOT_EVERY_S", "86401"),
    ],
)
def test_the_snapshot_settings_are_checked(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("HERO_").lower()):
        HeroSettings()


def test_the_snapshot_settings_have_sane_defaults(monkeypatch):
    monkeypatch.setenv("HERO_SNAPSHOT_EVERY_EVENTS", "500")
    settings = HeroSettings()
    assert (settings.snapshot_every_events, settings.snapshot_every_s) == (500, 300.0)


def test_the_keeper_counts_from_the_snapshot_it_started_from_and_from_each_save():
    clock = _Clock()
    store = MemorySnapshotStore()
    keeper = SnapshotKeeper(store, "projector", 1, SnapshotCadence(10, 60), monotonic=clock)
    assert keeper.newest(100) is None
    assert keeper.due(10)
    assert not keeper.due(9)
    assert keeper.save(10, b"at 10")
    assert not keeper.due(19)
    clock.now = 61
    assert keeper.due(11)
    fresh = SnapshotKeeper(store, "projector", 1, SnapshotCadence(10, 60), monotonic=clock)
    found = fresh.newest(100)
    assert found == Snapshot("projector", 10, 1, b"at 10")
    fresh.started_from(found.position)
    assert not fresh.due(19)
    assert fresh.due(20)
    assert fresh.newest(9) is None  # ahead of where the follower must start: not used


class _Broken(MemorySnapshotStore):
    def save(self, snapshot: Snapshot) -> None:
        raise OSError("disk full")

    def latest(self, name: str, schema_version: int) -> Snapshot | None:
        raise OSError("no answer")


def test_a_store_that_fails_is_logged_and_kept_for_health_never_raised(caplog):
    keeper = SnapshotKeeper(_Broken(), "projector", 1)
    with caplog.at_level(logging.WARNING, logger="hero.store.snapshots"):
        assert keeper.newest(10) is None
        assert "no answer" in (keeper.last_error or "")
        assert keeper.save(10, b"x") is False
    assert "disk full" in (keeper.last_error or "")
    assert "disk full" in caplog.text
    assert keeper.saved == 0


def test_a_keeper_checks_its_name_and_version():
    with pytest.raises(StoreError, match="snapshot name"):
        SnapshotKeeper(MemorySnapshotStore(), "no spaces", 1)
    with pytest.raises(StoreError, match="schema_version"):
        SnapshotKeeper(MemorySnapshotStore(), "projector", 0)


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "a week", "315360001"])
def test_the_compaction_horizon_is_checked(monkeypatch, value):
    monkeypatch.setenv("HERO_COMPACT_AFTER_S", value)
    with pytest.raises(ValidationError, match="compact_after_s"):
        HeroSettings()


def test_the_compaction_horizon_defaults_to_a_week(monkeypatch):
    monkeypatch.delenv("HERO_COMPACT_AFTER_S", raising=False)
    assert HeroSettings().compact_after_s == 7 * 24 * 3600.0
    monkeypatch.setenv("HERO_COMPACT_AFTER_S", "3600")
    assert HeroSettings().compact_after_s == 3600.0
