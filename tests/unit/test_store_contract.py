"""The EventStore contract against the memory and SQLite adapters, plus SQLite specifics."""

from __future__ import annotations

import pytest

from hero.domain.clock import ManualClock
from hero.store import (
    NO_STREAM,
    MemoryEventStore,
    SqliteEventStore,
    StoreError,
    open_store,
    recorded_after,
    sqlite_path_from_url,
)
from tests.unit.store_contract import (
    EventStoreContract,
    assert_gap_free,
    new_event,
    race_same_expected_version,
    race_with_retries,
)


class TestMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, clock):
        return MemoryEventStore(clock)


class TestSqliteEventStore(EventStoreContract):
    @pytest.fixture
    def path(self, tmp_path):
        return tmp_path / "events.db"

    @pytest.fixture
    def store(self, clock, path):
        store = SqliteEventStore(path, clock)
        yield store
        store.close()

    @pytest.fixture
    def second_store(self, clock, path, store):
        """Another store object on the same file: what a second process would hold."""
        other = SqliteEventStore(path, clock)
        yield other
        other.close()

    def test_events_survive_reopening_the_file(self, store, clock, path):
        event = new_event(clock)
        original = store.append("s1", NO_STREAM, [event], "cmd-1")
        store.close()
        reopened = SqliteEventStore(path, clock)
        try:
            assert reopened.current_position() == 1
            assert reopened.stream_version("s1") == 1
            assert reopened.read_stream("s1")[0].envelope().id == event.id
            # the idempotency record survives too
            again = reopened.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
            assert again.duplicate is True
            assert again.event_ids == original.event_ids
        finally:
            reopened.close()

    def test_a_second_store_sees_the_first_ones_appends(self, store, second_store, clock):
        store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
        assert second_store.stream_version("s1") == 1
        with pytest.raises(StoreError):
            second_store.append("s1", NO_STREAM, [new_event(clock)], "cmd-2")
        assert second_store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1").duplicate

    def test_two_stores_on_one_file_racing_with_one_expected_version(
        self, store, second_store, clock
    ):
        won, lost = race_same_expected_version([store, second_store], clock, "race", 20)
        assert (len(won), len(lost)) == (1, 19)
        assert store.stream_version("race") == second_store.stream_version("race") == 1

    def test_two_stores_on_one_file_retrying_leave_a_gap_free_stream(
        self, store, second_store, clock
    ):
        race_with_retries([store, second_store], clock, "race", threads=10, appends=10)
        assert_gap_free(store, "race", writers=10, appends=10)
        assert second_store.current_position() == 100

    def test_from_url_opens_the_file(self, tmp_path, clock):
        path = tmp_path / "sub" / "events.db"
        store = SqliteEventStore.from_url(f"sqlite:///{path}", clock)
        try:
            assert store.path == path
            assert path.exists()
        finally:
            store.close()

    def test_open_store_picks_sqlite_and_refuses_other_urls(self, tmp_path):
        store = open_store(f"sqlite:///{tmp_path / 'events.db'}")
        try:
            assert isinstance(store, SqliteEventStore)
        finally:
            store.close()
        with pytest.raises(StoreError, match="unsupported store URL"):
            open_store("mysql://u:secret@h/db")

    def test_sqlite_path_from_url(self):
        assert str(sqlite_path_from_url("sqlite:////var/hero/events.db")) == "/var/hero/events.db"
        assert str(sqlite_path_from_url("sqlite:///rel/events.db")) == "rel/events.db"
        with pytest.raises(StoreError, match="not a sqlite URL"):
            sqlite_path_from_url("sqlite://events.db")


class TestSqliteGroupCommit:
    """What only a transactional adapter can promise about a group commit."""

    @pytest.fixture
    def stores(self, tmp_path):
        writer, reader = SqliteEventStore(tmp_path / "e.db"), SqliteEventStore(tmp_path / "e.db")
        yield writer, reader
        writer.close()
        reader.close()

    def test_nothing_is_visible_to_others_before_the_block_ends(self, stores):
        writer, reader = stores
        with writer.group_commit():
            writer.append("s1", NO_STREAM, [new_event(ManualClock())], "cmd-1")
            assert reader.current_position() == 0
        assert reader.current_position() == 1

    def test_an_error_escaping_the_block_undoes_every_append_in_it(self, stores):
        writer, reader = stores

        def dies_half_way() -> None:
            with writer.group_commit():
                writer.append("s1", NO_STREAM, [new_event(ManualClock())], "cmd-1")
                writer.append("s2", NO_STREAM, [new_event(ManualClock())], "cmd-2")
                raise RuntimeError("the process dies here")

        with pytest.raises(RuntimeError):
            dies_half_way()
        assert reader.current_position() == 0
        assert writer.command_result("s1", "cmd-1") is None
        writer.append("s1", NO_STREAM, [new_event(ManualClock())], "cmd-1")  # retry works
        assert reader.stream_version("s1") == 1

    def test_a_nested_block_commits_with_the_outer_one(self, stores):
        writer, reader = stores
        with writer.group_commit():
            with writer.group_commit():
                writer.append("s1", NO_STREAM, [new_event(ManualClock())], "cmd-1")
            assert reader.current_position() == 0
        assert reader.current_position() == 1


def test_recorded_after_reads_every_batch_and_what_is_committed_meanwhile():
    store = MemoryEventStore()
    clock = ManualClock()
    for i in range(5):
        store.append(f"s{i}", NO_STREAM, [new_event(clock)], f"cmd-{i}")
    seen = []
    for row in recorded_after(store, 1, batch=2):
        seen.append(row.position)
        if row.position == 5:
            store.append("late", NO_STREAM, [new_event(clock)], "cmd-late")
    assert seen == [2, 3, 4, 5, 6]
