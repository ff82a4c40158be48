"""The event store on PostgreSQL (psycopg 3 and its pool), for ``postgresql://`` URLs.

The hard part is the order of positions. A position taken from a sequence (``bigserial``) is
handed out when the INSERT runs, not when its transaction commits: writer A takes 7, writer B
takes 8, B commits first. A follower reading ``position > 6`` then sees 8, moves its cursor to
8, and never reads 7 once A commits. A rolled-back transaction also burns its numbers, and the
README promises a gap-free position.

The cure chosen here: every append transaction first locks the one row of ``log_head`` (the
last position handed out), numbers its events after it, moves it on and commits. The next
writer waits on the row lock until that commit is visible, so positions are handed out in
commit order and a rollback gives its numbers back: gap-free, and ``position > N`` never
skips a late commit. It serialises writers, as SQLite's single write lock does; a group commit
holds the lock for all its appends and pays one commit for them, which keeps it cheap. As the
lock is held from a group's first append to its commit, every round trip the group makes in
between lengthens the other writers' wait: inside a group an append takes two (one read, one
write), the lock is taken once, and no savepoint is set (everything that could refuse the
append is read and checked before its one write). The other cure (followers read only below
``pg_snapshot_xmin`` of the oldest open transaction) keeps writers parallel but leaves gaps and
makes every reader reason about snapshots.

Each append NOTIFYs ``hero_events`` with its last position; :meth:`wait_for_new` LISTENs, so
followers wake at the commit instead of at their next poll (the poll stays as the fallback).
The schema comes from the versioned files in ``hero/store/migrations``
(:mod:`hero.store.postgres_schema`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool

from hero.domain.clock import Clock, SystemClock
from hero.store._planning import (
    SELECT_SKIPPED,
    command_values,
    duplicate_event_ids,
    event_values,
    plan_append,
    skipped_values,
)
from hero.store.checkpoints import CheckpointStore
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
    typed_batches,
)
from hero.store.postgres_schema import Conn, connect, migrate_connection

__all__ = ["CHANNEL", "PostgresCheckpointStore", "PostgresEventStore"]

CHANNEL = "hero_events"
_SELECT = "SELECT position, stream, version, type, topic, envelope FROM events"
_POOL_SIZE = 8
# An append is a round trip per statement, and those are most of its cost on a loopback
# server: the stream's version and the head come in one query, and the events, the head, the
# stream's version and the command's record are written by one statement (the events as
# column arrays, unnested), which also NOTIFYs: delivered at commit, and only if it commits,
# so a listener never wakes for a rollback.
# The command's earlier result, the stream's version, the head and whether one of the event ids
# is stored already, in one query. Read under the log head lock, so nothing changes them before
# the write; a write that cannot fail needs no savepoint inside a group.
_READ = """
SELECT c.first_version, c.last_version, c.first_position, c.last_position, c.event_ids,
       (SELECT version FROM streams WHERE stream = %s), h.position,
       EXISTS (SELECT 1 FROM events WHERE id = ANY(%s::text[]))
FROM log_head h LEFT JOIN commands c ON c.stream = %s AND c.command_id = %s
"""
_VERSION_AND_HEAD = "SELECT (SELECT version FROM streams WHERE stream = %s), position FROM log_head"
_WRITE = """
WITH written AS (
    INSERT INTO events (position, stream, version, id, type, topic, envelope)
    SELECT * FROM unnest(
        %s::bigint[], %s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[]
    )
), head AS (
    UPDATE log_head SET position = %s
), versions AS (
    INSERT INTO streams (stream, version) VALUES (%s, %s)
    ON CONFLICT (stream) DO UPDATE SET version = excluded.version
)
INSERT INTO commands VALUES (%s, %s, %s, %s, %s, %s, %s)
RETURNING pg_notify(%s, %s)
"""


def _command_result(conn: Conn, stream: str, command_id: str) -> AppendResult | None:
    row = conn.execute(
        "SELECT first_version, last_version, first_position, last_position, event_ids"
        " FROM commands WHERE stream = %s AND command_id = %s",
        (stream, command_id),
    ).fetchone()
    if row is None:
        return None
    first_version, last_version, first_position, last_position, ids = row
    return AppendResult(
        stream, int(str(first_version)), int(str(last_version)), int(str(first_position)),
        int(str(last_position)), tuple(json.loads(str(ids))), duplicate=True,
    )  # fmt: skip


def _recorded(row: tuple[object, ...]) -> RecordedEvent:
    position, stream, version, kind, topic, envelope = row
    return RecordedEvent(
        int(str(position)), str(stream), int(str(version)), str(kind), str(topic), str(envelope)
    )


class PostgresEventStore(EventStore):
    """Thread-safe: a pool of connections; a group commit holds one for its thread."""

    def __init__(self, url: str, clock: Clock | None = None, *, pool_size: int = _POOL_SIZE):
        self.url = url
        self._clock = clock or SystemClock()
        self._local = threading.local()
        with connect(url) as conn:
            migrate_connection(conn)  # an external server needs only the URL
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            configure=_read_committed,
            open=True,
        )
        self._listen_lock = threading.Lock()
        self._listener: Conn | None = None

    @classmethod
    def from_url(cls, url: str, clock: Clock | None = None) -> PostgresEventStore:
        return cls(url, clock)

    @contextmanager
    def _conn(self) -> Iterator[Conn]:
        """This thread's group-commit connection, or one from the pool."""
        grouped: Conn | None = getattr(self._local, "conn", None)
        if grouped is not None:
            yield grouped
            return
        with self._pool.connection() as conn:
            yield conn

    @contextmanager
    def _transaction(self) -> Iterator[Conn]:
        """A transaction holding the log head, or a savepoint inside this thread's group."""
        with self._conn() as conn, conn.transaction():
            self._hold_head(conn)
            yield conn

    def _hold_head(self, conn: Conn) -> None:
        """Lock the log head, once per transaction: a group holds it from its first append."""
        grouped = getattr(self._local, "conn", None) is conn
        if grouped and self._local.holds_head:
            return
        conn.execute("SELECT position FROM log_head FOR UPDATE")
        if grouped:
            self._local.holds_head = True

    @contextmanager
    def group_commit(self) -> Iterator[None]:
        if getattr(self._local, "conn", None) is not None:
            yield  # already inside one: the outer block commits
            return
        with self._pool.connection() as conn, conn.transaction():
            self._local.conn, self._local.holds_head, self._local.spoiled = conn, False, None
            try:
                yield
                if self._local.spoiled is not None:  # a write failed with no savepoint
                    raise StoreError(
                        f"the group commit was undone: {self._local.spoiled}"
                    ) from self._local.spoiled
            finally:
                self._local.conn = self._local.spoiled = None

    def append(
        self, stream: str, expected_version: int, events: Sequence[NewEvent], command_id: str
    ) -> AppendResult:
        check_append_arguments(stream, expected_version, events)
        check_command_id(command_id)
        append = StreamAppend(stream, expected_version, events)
        grouped: Conn | None = getattr(self._local, "conn", None)
        if grouped is None:
            with self._transaction() as conn:
                return self._append_checked(conn, append, command_id)
        try:
            self._hold_head(grouped)
            return self._append_checked(grouped, append, command_id)
        except StoreError as refused:
            # Refused by the checks before the write, the group goes on; refused by the
            # server, the transaction is aborted with no savepoint to return to: so is the group.
            if isinstance(refused.__cause__, psycopg.Error):
                self._local.spoiled = refused.__cause__
            raise
        except psycopg.Error as error:
            self._local.spoiled = error
            raise

    def _append_checked(self, conn: Conn, append: StreamAppend, command_id: str) -> AppendResult:
        """One read, the checks, one write: the caller holds the log head."""
        ids = [event.id for event in append.events]
        found = conn.execute(_READ, (append.stream, ids, append.stream, command_id)).fetchone()
        if found is None:
            raise StoreError("the log head row is missing: the schema is not migrated")
        if found[0] is not None:
            first_version, last_version, first_position, last_position, event_ids = found[:5]
            return AppendResult(
                append.stream, int(str(first_version)), int(str(last_version)),
                int(str(first_position)), int(str(last_position)),
                tuple(json.loads(str(event_ids))), duplicate=True,
            )  # fmt: skip
        version = int(str(found[5])) if found[5] is not None else 0
        rows, result = plan_append(
            append.stream,
            append.expected_version,
            version,
            int(str(found[6])) + 1,
            append.events,
            self._clock.now(),
        )
        if found[7]:
            raise duplicate_event_ids(append.events)
        self._insert(conn, rows, append, command_id, result)
        return result

    def append_many(self, appends: Sequence[StreamAppend], command_id: str) -> list[AppendResult]:
        check_many_arguments(appends)
        check_command_id(command_id)
        with self._transaction() as conn:
            applied = [_command_result(conn, a.stream, command_id) for a in appends]
            if any(result is not None for result in applied):
                return [result for result in applied if result is not None]
            # A conflict on a later stream raises inside the transaction: all is rolled back.
            results = [self._write(conn, append, command_id) for append in appends]
            return results

    def _write(self, conn: Conn, append: StreamAppend, command_id: str) -> AppendResult:
        stream = append.stream
        found = conn.execute(_VERSION_AND_HEAD, (stream,)).fetchone()
        rows, result = plan_append(
            stream,
            append.expected_version,
            int(str(found[0])) if found and found[0] is not None else 0,
            int(str(found[1] if found else 0)) + 1,
            append.events,
            self._clock.now(),
        )
        self._insert(conn, rows, append, command_id, result)
        return result

    def _insert(
        self,
        conn: Conn,
        rows: list[RecordedEvent],
        append: StreamAppend,
        command_id: str,
        result: AppendResult,
    ) -> None:
        """The events, the head, the stream's version, the command's record, the NOTIFY."""
        stream = append.stream
        columns = [list(column) for column in zip(*event_values(rows, append.events), strict=True)]
        try:
            conn.execute(
                _WRITE,
                (
                    *columns,
                    result.last_position,
                    stream,
                    result.last_version,
                    *command_values(stream, command_id, result),
                    CHANNEL,
                    str(result.last_position),
                ),
            )
        except errors.UniqueViolation as error:
            raise duplicate_event_ids(append.events) from error

    def command_result(self, stream: str, command_id: str) -> AppendResult | None:
        with self._conn() as conn:
            return _command_result(conn, stream, command_id)

    def read_stream(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        with self._conn() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE stream = %s AND version >= %s ORDER BY version",
                (stream, from_version),
            ).fetchall()
        return [_recorded(row) for row in rows]

    def read_all(self, from_position: int = 1, limit: int = 1000) -> list[RecordedEvent]:
        with self._conn() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE position >= %s ORDER BY position LIMIT %s",
                (from_position, limit),
            ).fetchall()
        return [_recorded(row) for row in rows]

    def reader_url(self) -> str | None:
        return self.url

    def read_typed_batches(
        self,
        types: frozenset[str],
        *,
        exclude: bool = False,
        batch: int = READ_BATCH,
        through: int,
    ) -> Iterator[list[RecordedEvent]]:
        query = (
            f"{_SELECT} WHERE position >= %s AND position <= %s"
            f" AND {'NOT ' if exclude else ''}(type = ANY(%s))"
            " ORDER BY position LIMIT %s"
        )
        chosen = sorted(types)

        def read(start: int, limit: int) -> list[RecordedEvent]:
            with self._conn() as conn:
                rows = conn.execute(query, (start, through, chosen, limit)).fetchall()
            return [_recorded(row) for row in rows]

        return typed_batches(read, batch, through)

    def read_event(self, event_id: str) -> RecordedEvent | None:
        with self._conn() as conn:
            found = conn.execute(f"{_SELECT} WHERE id = %s", (event_id,)).fetchone()
        return None if found is None else _recorded(found)

    def record_skip(self, skip: SkippedRow) -> bool:
        with self._conn() as conn:
            cursor = conn.execute(
                "INSERT INTO skipped VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (source, position) DO NOTHING",
                skipped_values(skip),
            )
            return cursor.rowcount == 1

    def skipped(self) -> list[SkippedRow]:
        with self._conn() as conn:
            rows = conn.execute(SELECT_SKIPPED).fetchall()
        return [
            SkippedRow(str(a), int(str(b)), str(c), str(d), str(e), str(f), str(g))
            for a, b, c, d, e, f, g in rows
        ]

    def stream_version(self, stream: str) -> int:
        with self._conn() as conn:
            found = conn.execute(
                "SELECT version FROM streams WHERE stream = %s", (stream,)
            ).fetchone()
        return int(str(found[0])) if found else 0

    def current_position(self) -> int:
        with self._conn() as conn:
            # The head, not MAX(position): inside a group commit the head includes this
            # thread's appends, and outside it only committed ones, as the port asks.
            row = conn.execute("SELECT position FROM log_head").fetchone()
        return int(str(row[0])) if row else 0

    def wait_for_new(self, after: int, timeout: float) -> bool:
        """LISTEN for an append past ``after``; True once there is one, False at ``timeout``."""
        deadline = time.monotonic() + timeout
        # One listening connection per store object: a second waiter waits its turn, no longer
        # than its own timeout.
        if not self._listen_lock.acquire(timeout=max(timeout, 0)):
            return self.current_position() > after
        try:
            conn = self._listening()
            if self.current_position() > after:  # committed before the LISTEN took hold
                return True
            while (left := deadline - time.monotonic()) > 0:
                for notice in conn.notifies(timeout=left, stop_after=1):
                    if int(notice.payload) > after:
                        return True
        except psycopg.OperationalError as error:
            self._drop_listener()  # the server went away: listen afresh next time
            raise StoreError(f"lost the PostgreSQL store while waiting: {error}") from error
        finally:
            self._listen_lock.release()
        return self.current_position() > after

    def _drop_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _listening(self) -> Conn:
        if self._listener is None or self._listener.closed:
            self._listener = connect(self.url)
            self._listener.execute(f"LISTEN {CHANNEL}")
        return self._listener

    def close(self) -> None:
        self._pool.close()
        with self._listen_lock:
            self._drop_listener()


def _read_committed(conn: Conn) -> None:
    # Whatever the server's default: a writer waiting on the log head must read the head its
    # predecessor committed (under REPEATABLE READ the wait would end in a serialization error).
    conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED


class PostgresCheckpointStore(CheckpointStore):
    """Kept in the event store's own database, so a store and its relay move together."""

    def __init__(self, url: str):
        self._conn = connect(url)
        migrate_connection(self._conn)
        self._lock = threading.Lock()

    def load(self, name: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT position FROM checkpoints WHERE name = %s", (name,)
            ).fetchone()
        return int(str(row[0])) if row else 0

    def save(self, name: str, position: int) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO checkpoints (name, position) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (name, position),
            )

    def close(self) -> None:
        self._conn.close()
