"""The write side: the event store port, its adapters, checkpoints and the outbox relay."""

from hero.store.checkpoints import CheckpointStore, MemoryCheckpointStore, SqliteCheckpointStore
from hero.store.follow import recorded_after
from hero.store.memory import MemoryEventStore
from hero.store.outbox import OutboxRelay, Publisher, RelayProgress
from hero.store.poison import (
    PoisonRow,
    SkipHandler,
    decode_event,
    decode_row,
    readable_events,
    skip_counts,
    skip_row,
)
from hero.store.port import (
    ANY_VERSION,
    NO_STREAM,
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
from hero.store.sqlite import SqliteEventStore, sqlite_path_from_url

__all__ = [
    "ANY_VERSION",
    "NO_STREAM",
    "AppendResult",
    "CheckpointStore",
    "ConcurrencyConflict",
    "DuplicateEventId",
    "EventStore",
    "MemoryCheckpointStore",
    "MemoryEventStore",
    "NewEvent",
    "OutboxRelay",
    "PoisonRow",
    "Publisher",
    "RecordedEvent",
    "RelayProgress",
    "SkipHandler",
    "SkippedRow",
    "SqliteCheckpointStore",
    "SqliteEventStore",
    "StoreError",
    "StreamAppend",
    "decode_event",
    "decode_row",
    "open_checkpoints",
    "open_store",
    "readable_events",
    "recorded_after",
    "skip_counts",
    "skip_row",
]


def open_store(url: str) -> EventStore:
    """The store behind a URL: ``sqlite:///PATH`` (PostgreSQL comes with its adapter)."""
    if url.startswith("sqlite:///"):
        return SqliteEventStore.from_url(url)
    raise StoreError(f"unsupported store URL {url!r}: use sqlite:///PATH")


def open_checkpoints(url: str) -> CheckpointStore:
    if url.startswith("sqlite:///"):
        return SqliteCheckpointStore(sqlite_path_from_url(url))
    raise StoreError(f"unsupported store URL {url!r}: use sqlite:///PATH")
