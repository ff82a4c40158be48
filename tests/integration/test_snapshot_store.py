"""The snapshot store's contract on the session's engines (the store beside the event log:
SQLite on the embedded pass, PostgreSQL on the production one), and on an embedded PostgreSQL
of this module's own on the embedded pass, so both adapters run on every pass."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hero.store import PostgresSnapshotStore, Snapshot, open_snapshots, open_store
from tests._engines import PostgresDatabases
from tests.unit.snapshot_contract import SnapshotStoreContract

pytestmark = pytest.mark.integration


class TestSessionStoreSnapshots(SnapshotStoreContract):
    @pytest.fixture
    def snapshots(self, store_factory):
        store = open_snapshots(store_factory().url)
        yield store
        store.close()


@pytest.fixture(scope="module")
def databases() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases()
    try:
        yield databases
    finally:
        databases.close()


@pytest.mark.embedded_only(reason="the session's store is PostgreSQL already")
class TestPostgresSnapshotStore(SnapshotStoreContract):
    @pytest.fixture
    def snapshots(self, databases):
        store = open_snapshots(databases.new())
        assert isinstance(store, PostgresSnapshotStore)
        yield store
        store.close()

    def test_snapshots_live_in_the_event_store_database(self, databases):
        url = databases.new()
        events = open_store(url)  # migrates: the snapshots table comes with the store
        first = open_snapshots(url)
        try:
            first.save(Snapshot("projector", 3, 1, b"state"))
        finally:
            first.close()
            events.close()  # type: ignore[attr-defined]
        second = open_snapshots(url)
        try:
            assert second.latest("projector", 1) == Snapshot("projector", 3, 1, b"state")
        finally:
            second.close()
