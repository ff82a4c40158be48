"""The SnapshotStore contract, reusable by every adapter: subclass
:class:`SnapshotStoreContract` and give it a ``snapshots`` fixture (and ``reopen``, a
fixture making a second store object on the same storage, when the adapter persists)."""

from __future__ import annotations

import pytest

from hero.store import Snapshot, SnapshotStore, StoreError
from hero.store.snapshots import KEEP_PER_NAME

__all__ = ["SnapshotStoreContract"]


class SnapshotStoreContract:
    def test_nothing_saved_is_none(self, snapshots: SnapshotStore):
        assert snapshots.latest("projector", 1) is None

    def test_save_then_latest(self, snapshots: SnapshotStore):
        saved = Snapshot("projector", 42, 1, b"\x00state\xff")
        snapshots.save(saved)
        assert snapshots.latest("projector", 1) == saved

    def test_latest_is_the_highest_position_of_that_version(self, snapshots: SnapshotStore):
        snapshots.save(Snapshot("projector", 10, 1, b"v1 at 10"))
        snapshots.save(Snapshot("projector", 30, 2, b"v2 at 30"))
        snapshots.save(Snapshot("projector", 20, 1, b"v1 at 20"))
        assert snapshots.latest("projector", 1) == Snapshot("projector", 20, 1, b"v1 at 20")
        assert snapshots.latest("projector", 2) == Snapshot("projector", 30, 2, b"v2 at 30")
        assert snapshots.latest("projector", 3) is None

    def test_names_are_independent(self, snapshots: SnapshotStore):
        snapshots.save(Snapshot("projector", 5, 1, b"p"))
        snapshots.save(Snapshot("agents-shard-0", 7, 1, b"a"))
        assert snapshots.latest("projector", 1) == Snapshot("projector", 5, 1, b"p")
        assert snapshots.latest("agents-shard-0", 1) == Snapshot("agents-shard-0", 7, 1, b"a")
        assert snapshots.latest("agents-shard-1", 1) is None

    def test_saving_the_same_position_again_replaces_it(self, snapshots: SnapshotStore):
        snapshots.save(Snapshot("projector", 5, 1, b"first"))
        snapshots.save(Snapshot("projector", 5, 1, b"second"))
        assert snapshots.latest("projector", 1) == Snapshot("projector", 5, 1, b"second")

    def test_only_the_newest_few_per_name_are_kept(self, snapshots: SnapshotStore):
        for position in range(1, KEEP_PER_NAME + 3):
            snapshots.save(Snapshot("projector", position * 10, 1, b"x%d" % position))
        snapshots.save(Snapshot("other", 1, 1, b"o"))
        newest = (KEEP_PER_NAME + 2) * 10
        assert snapshots.latest("projector", 1) == Snapshot("projector", newest, 1, b"x%d" % (
            KEEP_PER_NAME + 2))  # fmt: skip
        assert snapshots.latest("other", 1) is not None
        # Pruned by position: an old version falls out as the newer ones come.
        snapshots.save(Snapshot("pruned", 1, 7, b"old"))
        for position in range(2, KEEP_PER_NAME + 2):
            snapshots.save(Snapshot("pruned", position, 8, b"new"))
        assert snapshots.latest("pruned", 7) is None
        assert snapshots.latest("pruned", 8) == Snapshot("pruned", KEEP_PER_NAME + 1, 8, b"new")

    def test_a_large_body_round_trips(self, snapshots: SnapshotStore):
        body = bytes(range(256)) * 40_000  # 10 MB, every byte value
        snapshots.save(Snapshot("projector", 1, 1, body))
        found = snapshots.latest("projector", 1)
        assert found is not None
        assert found.body == body

    @pytest.mark.parametrize("name", ["", "has space", "a\n", "x" * 101, "-leading", "é"])
    def test_a_bad_name_is_refused_with_a_clear_error(self, snapshots: SnapshotStore, name):
        with pytest.raises(StoreError, match="snapshot name"):
            Snapshot(name, 1, 1, b"x")
        with pytest.raises(StoreError, match="snapshot name"):
            snapshots.latest(name, 1)

    @pytest.mark.parametrize(
        ("position", "version", "body", "what"),
        [
            (-1, 1, b"x", "position"),
            (1, 0, b"x", "schema_version"),
            (1, 1, b"", "body"),
            (True, 1, b"x", "position"),
            (1, 1.0, b"x", "schema_version"),
            (1, 1, "text", "body"),
            (2**63, 1, b"x", "position"),
        ],
    )
    def test_bad_fields_are_refused_and_nothing_is_written(
        self, snapshots: SnapshotStore, position, version, body, what
    ):
        with pytest.raises(StoreError, match=what):
            snapshots.save(Snapshot("projector", position, version, body))
        assert snapshots.latest("projector", 1) is None
