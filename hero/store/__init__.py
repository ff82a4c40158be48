"""The write side: the event store port, its adapters, checkpoints and the outbox relay.

The only package that touches SQL.
See docs/architecture.md for the layers and the flow of one command.
"""

from hero.store.checkpoints import CheckpointStore, MemoryCheckpointStore, SqliteCheckpointStore
from hero.store.follow import recorded_after
from hero.store.lease import FileLease, MemoryLease, RelayLease
from hero.store.memory import MemoryEventStore
from hero.store.outbox import LeaseLost, OutboxRelay, Publisher, RelayProgress
from hero.store.poison import (
    PoisonRow,
    SkipHandler,
    decode_event,
    decode_row,
    decode_trusted,
    readable_events,
    skip_counts,
    skip_row,
    trusted_decoder,
)
from hero.store.port import (
    ANY_VERSION,
    NO_STREAM,
    READ_BATCH,
    AppendResult,
    ConcurrencyConflict,
    DuplicateEventId,
    EventStore,
    NewEvent,
    RecordedEvent,
    SkippedRow,
    StoreError,
    StreamAppend,
)
from hero.store.postgres import PostgresCheckpointStore, PostgresEventStore
from hero.store.postgres_lease import PostgresLease
from hero.store.postgres_schema import migrate
from hero.store.snapshots import (
    MemorySnapshotStore,
    PostgresSnapshotStore,
    Snapshot,
    SnapshotCadence,
    SnapshotKeeper,
    SnapshotStore,
    SqliteSnapshotStore,
)
from hero.store.sqlite import SqliteEventStore, sqlite_path_from_url

__all__ = [
    "ANY_VERSION",
    "NO_STREAM",
    "READ_BATCH",
    "AppendResult",
    "CheckpointStore",
    "ConcurrencyConflict",
    "DuplicateEventId",
    "EventStore",
    "FileLease",
    "LeaseLost",
    "MemoryCheckpointStore",
    "MemoryEventStore",
    "MemoryLease",
    "MemorySnapshotStore",
    "NewEvent",
    "OutboxRelay",
    "PoisonRow",
    "PostgresCheckpointStore",
    "PostgresEventStore",
    "PostgresLease",
    "PostgresSnapshotStore",
    "Publisher",
    "RecordedEvent",
    "RelayLease",
    "RelayProgress",
    "SkipHandler",
    "SkippedRow",
    "Snapshot",
    "SnapshotCadence",
    "SnapshotKeeper",
    "SnapshotStore",
    "SqliteCheckpointStore",
    "SqliteEventStore",
    "SqliteSnapshotStore",
    "StoreError",
    "StreamAppend",
    "decode_event",
    "decode_row",
    "decode_trusted",
    "is_postgres_url",
    "migrate",
    "open_checkpoints",
    "open_relay_lease",
    "open_snapshots",
    "open_store",
    "readable_events",
    "recorded_after",
    "skip_counts",
    "skip_row",
    "trusted_decoder",
]


_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str) -> bool:
    return url.startswith(_POSTGRES_SCHEMES)


def open_store(url: str) -> EventStore:
    """The store behind a URL: ``sqlite:///PATH`` or ``postgresql://...``."""
    if url.startswith("sqlite:///"):
        return SqliteEventStore.from_url(url)
    if is_postgres_url(url):
        return PostgresEventStore.from_url(url)
    raise _unsupported(url)


def open_checkpoints(url: str) -> CheckpointStore:
    if url.startswith("sqlite:///"):
        return SqliteCheckpointStore(sqlite_path_from_url(url))
    if is_postgres_url(url):
        return PostgresCheckpointStore(url)
    raise _unsupported(url)


def open_snapshots(url: str) -> SnapshotStore:
    """The snapshots kept beside the store behind ``url``: in its SQLite file or database."""
    if url.startswith("sqlite:///"):
        return SqliteSnapshotStore(sqlite_path_from_url(url))
    if is_postgres_url(url):
        return PostgresSnapshotStore(url)
    raise _unsupported(url)


def open_relay_lease(url: str, name: str = "relay") -> RelayLease:
    """The lease the relays of the store behind ``url`` share: an ``flock`` beside a SQLite
    file, an advisory lock in a PostgreSQL database."""
    if url.startswith("sqlite:///"):
        return FileLease(sqlite_path_from_url(url), name)
    if is_postgres_url(url):
        return PostgresLease(url, name)
    raise _unsupported(url)


def _unsupported(url: str) -> StoreError:
    # Only the scheme: the rest of a URL may carry a password.
    scheme = url.partition("://")[0] if "://" in url else url[:20]
    return StoreError(
        f"unsupported store URL (scheme {scheme!r}): use sqlite:///PATH or postgresql://..."
    )
