"""Snapshots of folded state: what a restarted follower loads instead of replaying the log.

A :class:`Snapshot` is opaque bytes (the folder's codec makes them, e.g.
:mod:`hero.model.snapshot`) with who folded them, the last store position folded in and the
format version of the folded state. The store keeps the newest few per name and answers the
newest one of a version; a follower whose code reads another version gets nothing and replays
the whole log. Kept in the event store's own SQLite file or PostgreSQL database, so a store
and the state folded from it move together.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from hero.store.port import StoreError
from hero.store.postgres_schema import connect as pg_connect
from hero.store.postgres_schema import migrate_connection
from hero.store.sqlite import WriteLock, connect, write_transaction
from schemas.ids import ID_PATTERN, is_id

__all__ = [
    "KEEP_PER_NAME",
    "MAX_SNAPSHOT_BYTES",
    "MemorySnapshotStore",
    "PostgresSnapshotStore",
    "Snapshot",
    "SnapshotStore",
    "SqliteSnapshotStore",
]

#: How many snapshots of one name are kept: the newest, and a few before it in case the
#: newest is found corrupt (then the one before it still saves most of the replay).
KEEP_PER_NAME = 3
#: A snapshot larger than this is refused: 1 GiB is far beyond any grid's folded state, and a
#: body that size is a bug, not a state.
MAX_SNAPSHOT_BYTES = 1 << 30
_MAX_VERSION = 2**31 - 1


@dataclass(frozen=True)
class Snapshot:
    """``name`` folded the log through ``position`` into a state of format ``schema_version``."""

    name: str
    position: int
    schema_version: int
    body: bytes

    def __post_init__(self) -> None:
        check_name(self.name)
        if type(self.position) is not int or not 0 <= self.position < 2**63:
            raise StoreError(f"a snapshot's position must be an integer >= 0: {self.position!r}")
        _check_version(self.schema_version)
        if not isinstance(self.body, bytes) or not self.body:
            raise StoreError("a snapshot's body must be non-empty bytes")
        if len(self.body) > MAX_SNAPSHOT_BYTES:
            raise StoreError(f"a snapshot's body is {len(self.body)} bytes (at most 1 GiB)")


def check_name(name: str) -> None:
    if not is_id(name, 100):
        raise StoreError(
            f"a snapshot name must be an id matching {ID_PATTERN} (1-100 chars), got {name!r}"
        )


def _check_version(schema_version: int) -> None:
    if type(schema_version) is not int or not 1 <= schema_version <= _MAX_VERSION:
        raise StoreError(f"schema_version must be an integer >= 1, got {schema_version!r}")


class SnapshotStore(ABC):
    """The newest few snapshots per name."""

    @abstractmethod
    def save(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` (replacing one of the same name and position) and drop the
        snapshots of its name beyond the newest :data:`KEEP_PER_NAME`."""

    @abstractmethod
    def latest(self, name: str, schema_version: int) -> Snapshot | None:
        """The newest (highest position) snapshot of ``name`` in ``schema_version``."""

    def close(self) -> None:  # noqa: B027 -- most adapters hold nothing to close
        """Release the connection, if the adapter holds one."""


class MemorySnapshotStore(SnapshotStore):
    def __init__(self) -> None:
        self._kept: dict[str, dict[int, Snapshot]] = {}
        self._lock = threading.Lock()

    def save(self, snapshot: Snapshot) -> None:
        with self._lock:
            kept = self._kept.setdefault(snapshot.name, {})
            kept[snapshot.position] = snapshot
            for position in sorted(kept)[:-KEEP_PER_NAME]:
                del kept[position]

    def latest(self, name: str, schema_version: int) -> Snapshot | None:
        check_name(name)
        _check_version(schema_version)
        with self._lock:
            kept = self._kept.get(name, {})
            found = [s for p, s in sorted(kept.items()) if s.schema_version == schema_version]
        return found[-1] if found else None


# The same statements on both engines, but for the parameter marker.
_UPSERT = (
    "INSERT INTO snapshots (name, position, schema_version, body) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (name, position) DO UPDATE"
    " SET schema_version = excluded.schema_version, body = excluded.body"
)
_PRUNE = (
    "DELETE FROM snapshots WHERE name = ? AND position < ("
    "SELECT MIN(position) FROM (SELECT position FROM snapshots WHERE name = ?"
    " ORDER BY position DESC LIMIT ?) AS newest)"
)
_LATEST = (
    "SELECT position, body FROM snapshots WHERE name = ? AND schema_version = ?"
    " ORDER BY position DESC LIMIT 1"
)


class SqliteSnapshotStore(SnapshotStore):
    """In the event store's own file (the table is made with the store's schema)."""

    def __init__(self, path: Path | str):
        self._conn = connect(Path(path))
        self._lock = threading.Lock()
        self._write_lock = WriteLock(Path(path))

    def save(self, snapshot: Snapshot) -> None:
        s = snapshot
        with self._lock, write_transaction(self._conn, self._write_lock) as conn:
            conn.execute(_UPSERT, (s.name, s.position, s.schema_version, s.body))
            conn.execute(_PRUNE, (s.name, s.name, KEEP_PER_NAME))

    def latest(self, name: str, schema_version: int) -> Snapshot | None:
        check_name(name)
        _check_version(schema_version)
        with self._lock:
            found = self._conn.execute(_LATEST, (name, schema_version)).fetchone()
        if found is None:
            return None
        return Snapshot(name, int(found[0]), schema_version, bytes(found[1]))

    def close(self) -> None:
        self._conn.close()


def _pg(statement: str) -> str:
    return statement.replace("?", "%s")


class PostgresSnapshotStore(SnapshotStore):
    """In the event store's own database (the table comes with its migrations)."""

    def __init__(self, url: str):
        self._conn = pg_connect(url)
        migrate_connection(self._conn)
        self._lock = threading.Lock()

    def save(self, snapshot: Snapshot) -> None:
        s = snapshot
        with self._lock, self._conn.transaction():
            self._conn.execute(_pg(_UPSERT), (s.name, s.position, s.schema_version, s.body))
            self._conn.execute(_pg(_PRUNE), (s.name, s.name, KEEP_PER_NAME))

    def latest(self, name: str, schema_version: int) -> Snapshot | None:
        check_name(name)
        _check_version(schema_version)
        with self._lock:
            found = self._conn.execute(_pg(_LATEST), (name, schema_version)).fetchone()
        if found is None:
            return None
        body = found[1]
        assert isinstance(body, bytes | memoryview)
        return Snapshot(name, int(str(found[0])), schema_version, bytes(body))

    def close(self) -> None:
        self._conn.close()
