"""The embedded event store: one SQLite file in WAL mode.

Positions are gap-free and follow commit order because every append takes SQLite's single
write lock first (``BEGIN IMMEDIATE``) and numbers its events after the last committed one.
That is what lets the relay and every consumer resume from a plain position number.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

from hero.domain.clock import Clock, SystemClock
from hero.store._planning import (
    SELECT_SKIPPED,
    command_values,
    duplicate_event_ids,
    event_values,
    plan_append,
    skipped_values,
)
from hero.store.port import (
    READ_BATCH,
    AppendResult,
    EventStore,
    NewEvent,
    RecordedEvent,
    SkippedRow,
    StoreError,
    StreamAppend,
    check_append_arguments,
    check_command_id,
    check_many_arguments,
    recorded_event,
    typed_batches,
)

__all__ = ["SqliteEventStore", "sqlite_path_from_url"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    stream   TEXT NOT NULL,
    version  INTEGER NOT NULL,
    id       TEXT NOT NULL UNIQUE,
    type     TEXT NOT NULL,
    topic    TEXT NOT NULL,
    envelope TEXT NOT NULL,
    UNIQUE (stream, version)
);
CREATE TABLE IF NOT EXISTS streams (
    stream  TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    stream         TEXT NOT NULL,
    command_id     TEXT NOT NULL,
    first_version  INTEGER NOT NULL,
    last_version   INTEGER NOT NULL,
    first_position INTEGER NOT NULL,
    last_position  INTEGER NOT NULL,
    event_ids      TEXT NOT NULL,
    PRIMARY KEY (stream, command_id)
);
CREATE TABLE IF NOT EXISTS skipped (
    source     TEXT NOT NULL,
    position   INTEGER NOT NULL,
    stream     TEXT NOT NULL,
    type       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    detail     TEXT NOT NULL,
    skipped_at TEXT NOT NULL,
    PRIMARY KEY (source, position)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    name           TEXT NOT NULL,
    position       INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    body           BLOB NOT NULL,
    PRIMARY KEY (name, position)
);
"""

_SELECT = "SELECT position, stream, version, type, topic, envelope FROM events"


_SYNC_MODES = ("FULL", "NORMAL")


def sqlite_path_from_url(url: str) -> Path:
    return _parse_url(url)[0]


def _parse_url(url: str) -> tuple[Path, str]:
    """``sqlite:///PATH[?synchronous=full|normal]``; FULL unless told otherwise."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise StoreError(f"not a sqlite URL (expected sqlite:///PATH): {url!r}")
    path, _, query = url[len(prefix) :].partition("?")
    options = dict(part.partition("=")[::2] for part in query.split("&") if part)
    unknown = set(options) - {"synchronous"}
    if unknown:
        raise StoreError(f"unknown sqlite URL option(s) {sorted(unknown)}; known: synchronous")
    sync = options.get("synchronous", "full").upper()
    if sync not in _SYNC_MODES:
        raise StoreError(f"synchronous must be one of {_SYNC_MODES}, got {sync!r}")
    return Path(path), sync


def connect(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection tuned for a shared WAL database (used by the store and its checkpoints)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 whatever the umask: the store holds every balance and payment. SQLite
    # gives its -wal and -shm files the database's mode.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit survives power loss; NORMAL (WAL): it survives a crash of the process.
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.executescript(_SCHEMA)
    return conn


class WriteLock:
    """Writers queue on an ``flock`` of ``<db>.lock`` before taking SQLite's write lock.

    SQLite's own busy handler makes a waiting writer sleep and poll (up to 100 ms a time), so
    several agent hosts writing at once spend most of their time asleep; the kernel wakes an
    ``flock`` waiter the moment the lock is free. One file descriptor per thread, because
    ``flock`` serialises open file descriptions, not threads.
    """

    def __init__(self, db_path: Path):
        self._path = db_path.with_name(db_path.name + ".lock")
        self._local = threading.local()

    def _fd(self) -> int:
        fd: int | None = getattr(self._local, "fd", None)
        if fd is None:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            self._local.fd = fd
        return fd

    @contextmanager
    def held(self) -> Iterator[None]:
        fd = self._fd()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


@contextmanager
def write_transaction(
    conn: sqlite3.Connection, lock: WriteLock | None = None
) -> Iterator[sqlite3.Connection]:
    with lock.held() if lock is not None else nullcontext():
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def _row(row: tuple[int, str, int, str, str, str]) -> RecordedEvent:
    return recorded_event(row)


def _command_result(conn: sqlite3.Connection, stream: str, command_id: str) -> AppendResult | None:
    row = conn.execute(
        "SELECT first_version, last_version, first_position, last_position, event_ids"
        " FROM commands WHERE stream = ? AND command_id = ?",
        (stream, command_id),
    ).fetchone()
    if row is None:
        return None
    first_version, last_version, first_position, last_position, ids = row
    return AppendResult(
        stream, first_version, last_version, first_position, last_position,
        tuple(json.loads(ids)), duplicate=True,
    )  # fmt: skip


def _insert_events(
    conn: sqlite3.Connection, rows: list[RecordedEvent], events: Sequence[NewEvent]
) -> None:
    try:
        conn.executemany(
            "INSERT INTO events (position, stream, version, id, type, topic, envelope)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            event_values(rows, events),
        )
    except sqlite3.IntegrityError as error:
        raise duplicate_event_ids(events) from error


class SqliteEventStore(EventStore):
    """Thread-safe: each thread gets its own connection to the same file."""

    def __init__(self, path: Path | str, clock: Clock | None = None, synchronous: str = "FULL"):
        self.path = Path(path)
        self._synchronous = synchronous
        self._write_lock = WriteLock(self.path)
        self._clock = clock or SystemClock()
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._conn()

    @classmethod
    def from_url(cls, url: str, clock: Clock | None = None) -> SqliteEventStore:
        path, synchronous = _parse_url(url)
        return cls(path, clock, synchronous)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, self._synchronous)
            self._local.conn = conn
            with self._guard:
                self._all.append(conn)
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A transaction of its own, or a savepoint inside this thread's group commit."""
        conn = self._conn()
        if not getattr(self._local, "grouped", False):
            with write_transaction(conn, self._write_lock):
                yield conn
            return
        conn.execute("SAVEPOINT hero_append")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK TO hero_append")
            conn.execute("RELEASE hero_append")
            raise
        conn.execute("RELEASE hero_append")

    @contextmanager
    def group_commit(self) -> Iterator[None]:
        if getattr(self._local, "grouped", False):
            yield  # already inside one: the outer block commits
            return
        with write_transaction(self._conn(), self._write_lock):
            self._local.grouped = True
            try:
                yield
            finally:
                self._local.grouped = False

    def append(
        self, stream: str, expected_version: int, events: Sequence[NewEvent], command_id: str
    ) -> AppendResult:
        check_append_arguments(stream, expected_version, events)
        check_command_id(command_id)
        with self._transaction() as conn:
            applied = _command_result(conn, stream, command_id)
            if applied is not None:
                return applied
            return self._write(conn, StreamAppend(stream, expected_version, events), command_id)

    def append_many(self, appends: Sequence[StreamAppend], command_id: str) -> list[AppendResult]:
        check_many_arguments(appends)
        check_command_id(command_id)
        with self._transaction() as conn:
            applied = [_command_result(conn, a.stream, command_id) for a in appends]
            if any(result is not None for result in applied):
                return [result for result in applied if result is not None]
            # A conflict on a later stream raises inside the transaction: all is rolled back.
            return [self._write(conn, append, command_id) for append in appends]

    def _write(
        self, conn: sqlite3.Connection, append: StreamAppend, command_id: str
    ) -> AppendResult:
        stream = append.stream
        found = conn.execute("SELECT version FROM streams WHERE stream = ?", (stream,))
        current = found.fetchone()
        last = conn.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()[0]
        rows, result = plan_append(
            stream,
            append.expected_version,
            current[0] if current else 0,
            last + 1,
            append.events,
            self._clock.now(),
        )
        _insert_events(conn, rows, append.events)
        conn.execute(
            "INSERT INTO streams (stream, version) VALUES (?, ?)"
            " ON CONFLICT (stream) DO UPDATE SET version = excluded.version",
            (stream, result.last_version),
        )
        conn.execute(
            "INSERT INTO commands VALUES (?, ?, ?, ?, ?, ?, ?)",
            command_values(stream, command_id, result),
        )
        return result

    def command_result(self, stream: str, command_id: str) -> AppendResult | None:
        return _command_result(self._conn(), stream, command_id)

    def read_stream(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        cursor = self._conn().execute(
            f"{_SELECT} WHERE stream = ? AND version >= ? ORDER BY version", (stream, from_version)
        )
        return [_row(row) for row in cursor]

    def read_all(self, from_position: int = 1, limit: int = 1000) -> list[RecordedEvent]:
        cursor = self._conn().execute(
            f"{_SELECT} WHERE position >= ? ORDER BY position LIMIT ?", (from_position, limit)
        )
        return list(map(recorded_event, cursor))

    def reader_url(self) -> str | None:
        return f"sqlite:///{self.path.resolve()}"

    def read_typed_batches(
        self,
        types: frozenset[str],
        *,
        exclude: bool = False,
        batch: int = READ_BATCH,
        through: int,
    ) -> Iterator[list[RecordedEvent]]:
        chosen = sorted(types)
        query = (
            f"{_SELECT} WHERE position >= ? AND position <= ?"
            f" AND type {'NOT IN' if exclude else 'IN'} ({', '.join('?' * len(chosen))})"
            " ORDER BY position LIMIT ?"
        )

        def read(start: int, limit: int) -> list[RecordedEvent]:
            cursor = self._conn().execute(query, (start, through, *chosen, limit))
            return list(map(recorded_event, cursor))

        return typed_batches(read, batch, through)

    def read_event(self, event_id: str) -> RecordedEvent | None:
        found = self._conn().execute(f"{_SELECT} WHERE id = ?", (event_id,)).fetchone()
        return None if found is None else _row(found)

    def record_skip(self, skip: SkippedRow) -> bool:
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO skipped VALUES (?, ?, ?, ?, ?, ?, ?)",
                skipped_values(skip),
            )
            return cursor.rowcount == 1

    def skipped(self) -> list[SkippedRow]:
        cursor = self._conn().execute(SELECT_SKIPPED)
        return [SkippedRow(*row) for row in cursor]

    def stream_version(self, stream: str) -> int:
        row = self._conn().execute("SELECT version FROM streams WHERE stream = ?", (stream,))
        found = row.fetchone()
        return int(found[0]) if found else 0

    def current_position(self) -> int:
        row = self._conn().execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._guard:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
