"""Snapshots of folded state: what a restarted follower loads instead of replaying the log.

A :class:`Snapshot` is opaque bytes (the folder's codec makes them, e.g.
:mod:`hero.model.snapshot`) with who folded them, the last store position folded in and the
format version of the folded state. The store keeps the newest few per name and answers the
newest one of a version; a follower whose code reads another version gets nothing and replays
the whole log. Kept in the event store's own SQLite file or PostgreSQL database, so a store
and the state folded from it move together.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
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
    "SnapshotCadence",
    "SnapshotKeeper",
    "SnapshotStore",
    "SqliteSnapshotStore",
]

log = logging.getLogger(__name__)

#: How many snapshots of one name are kept: storage stays bounded, and the two before the
#: newest are still there to look at when the newest is found corrupt (a follower then
#: replays the whole log: ``latest`` answers the newest only).
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


@dataclass(frozen=True)
class SnapshotCadence:
    """Save a snapshot once ``every_events`` events were folded since the last one, or once
    ``every_s`` seconds passed with at least one event folded."""

    every_events: int = 10_000
    every_s: float = 300.0

    def __post_init__(self) -> None:
        if type(self.every_events) is not int or self.every_events < 1:
            raise ValueError(f"every_events must be an integer >= 1, got {self.every_events!r}")
        if not self.every_s > 0:
            raise ValueError(f"every_s must be > 0, got {self.every_s!r}")

    def due(self, events: int, seconds: float) -> bool:
        return events >= self.every_events or (events > 0 and seconds >= self.every_s)


class SnapshotKeeper:
    """One follower's snapshots: the newest usable one at start, and a new one when due.

    Never raises for a snapshot: a store that does not answer, or nothing usable, is logged
    and the follower replays the log, as it did before snapshots. The bytes are the caller's
    (its codec checks them); ``last_error`` keeps the latest failure for health.
    """

    def __init__(
        self,
        store: SnapshotStore,
        name: str,
        schema_version: int,
        cadence: SnapshotCadence | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        check_name(name)
        _check_version(schema_version)
        self.store, self.name, self.schema_version = store, name, schema_version
        self.cadence = cadence or SnapshotCadence()
        self._monotonic = monotonic
        self._saved_at = monotonic()
        self._saved_position: int | None = None
        self.loaded: int | None = None
        """The position of the snapshot the follower started from, if any."""
        self.saved = 0
        self.last_error: str | None = None

    def newest(self, at_most: int) -> Snapshot | None:
        """The newest snapshot of our version at or before ``at_most`` (what the follower may
        start from), None (logged) when there is none."""
        try:
            found = self.store.latest(self.name, self.schema_version)
        except Exception as error:  # the log is still there: replay it
            self.last_error = f"loading failed: {error!r}"
            log.warning("%s: loading its snapshot failed (%r): replaying the log", self.name, error)
            return None
        if found is None:
            log.info("%s: no snapshot of format %d: replaying the log", self.name,
                     self.schema_version)  # fmt: skip
            return None
        if found.position > at_most:
            log.warning(
                "%s: its snapshot at %d is ahead of the %d it must start from: replaying the log",
                self.name, found.position, at_most,
            )  # fmt: skip
            return None
        return found

    def started_from(self, position: int) -> None:
        """The follower loaded the snapshot at ``position``: count from there."""
        self.loaded = self._saved_position = position
        self._saved_at = self._monotonic()

    def unreadable(self, snapshot: Snapshot, reason: str) -> None:
        self.last_error = f"snapshot at {snapshot.position} unreadable: {reason}"
        log.warning("%s: its snapshot at %d is unreadable (%s): replaying the log",
                    self.name, snapshot.position, reason)  # fmt: skip

    def due(self, position: int) -> bool:
        """Whether the state folded through ``position`` should be saved now."""
        events = position - (self._saved_position or 0)
        return self.cadence.due(events, self._monotonic() - self._saved_at)

    def save(self, position: int, body: bytes) -> bool:
        """Keep ``body`` as the state through ``position``; False (logged) if it failed."""
        self._saved_at = self._monotonic()
        try:
            self.store.save(Snapshot(self.name, position, self.schema_version, body))
        except Exception as error:  # a snapshot saves time, its loss nothing else
            self.last_error = f"saving failed: {error!r}"
            log.warning("%s: saving its snapshot at %d failed: %r", self.name, position, error)
            return False
        self._saved_position = position
        self.saved += 1
        self.last_error = None
        return True
