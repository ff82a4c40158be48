"""CheckpointStore: the relay's saved position, in memory and in the store's SQLite file."""

from __future__ import annotations

import pytest

from hero.domain.clock import ManualClock
from hero.store import (
    NO_STREAM,
    MemoryCheckpointStore,
    SqliteCheckpointStore,
    SqliteEventStore,
    open_checkpoints,
)
from tests.unit.store_contract import new_event


@pytest.fixture(params=["memory", "sqlite"])
def checkpoints(request, tmp_path):
    if request.param == "memory":
        yield MemoryCheckpointStore()
        return
    store = SqliteCheckpointStore(tmp_path / "events.db")
    yield store
    store.close()


def test_an_unknown_name_loads_zero(checkpoints):
    assert checkpoints.load("relay") == 0


def test_save_then_load(checkpoints):
    checkpoints.save("relay", 42)
    assert checkpoints.load("relay") == 42


def test_save_overwrites(checkpoints):
    checkpoints.save("relay", 42)
    checkpoints.save("relay", 7)
    assert checkpoints.load("relay") == 7


def test_names_are_independent(checkpoints):
    checkpoints.save("relay", 10)
    checkpoints.save("projector", 3)
    assert (checkpoints.load("relay"), checkpoints.load("projector")) == (10, 3)
    assert checkpoints.load("other") == 0


def test_sqlite_checkpoints_survive_reopening(tmp_path):
    path = tmp_path / "events.db"
    first = SqliteCheckpointStore(path)
    first.save("relay", 99)
    first.close()
    second = SqliteCheckpointStore(path)
    try:
        assert second.load("relay") == 99
    finally:
        second.close()


def test_sqlite_checkpoints_share_the_event_store_file(tmp_path):
    path = tmp_path / "events.db"
    clock = ManualClock()
    events = SqliteEventStore(path, clock)
    checkpoints = SqliteCheckpointStore(path)
    try:
        events.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
        checkpoints.save("relay", 1)
        assert events.current_position() == 1
        assert checkpoints.load("relay") == 1
    finally:
        checkpoints.close()
        events.close()


def test_open_checkpoints_from_a_sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    first = open_checkpoints(url)
    assert isinstance(first, SqliteCheckpointStore)
    first.save("relay", 5)
    first.close()
    second = open_checkpoints(url)
    try:
        assert second.load("relay") == 5
    finally:
        second.close()  # type: ignore[attr-defined]
