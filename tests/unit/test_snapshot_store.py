"""The snapshot store's contract in memory and in the event store's SQLite file; PostgreSQL's
is in tests/integration/test_snapshot_store.py."""

from __future__ import annotations

import pytest

from hero.domain.clock import ManualClock
from hero.store import (
    NO_STREAM,
    MemorySnapshotStore,
    Snapshot,
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
