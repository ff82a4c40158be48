"""The event store port: append with optimistic concurrency and command idempotency."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from schemas import REGISTRY, Envelope, Event, SchemaRegistry, new_id
from schemas.ids import ID_PATTERN, NAME_PATTERN, is_id, is_name

__all__ = [
    "ANY_VERSION",
    "NO_STREAM",
    "READ_BATCH",
    "AppendResult",
    "ConcurrencyConflict",
    "DuplicateEventId",
    "EventStore",
    "NewEvent",
    "RecordedEvent",
    "SkippedRow",
    "StoreError",
    "StreamAppend",
    "recorded_event",
    "typed_batches",
]

#: Expect the stream not to exist yet.
NO_STREAM = 0
#: Skip the version check (for facts that cannot conflict, such as telemetry).
ANY_VERSION = -1
#: Rows per read of :meth:`EventStore.read_batches` unless told otherwise: large enough that
#: the query's cost is spread thin, small enough that a batch is a few MB.
READ_BATCH = 10_000
#: How often the default :meth:`EventStore.wait_for_new` looks at the log's head.
_POLL_S = 0.05


class StoreError(Exception):
    """A request the store refuses (bad arguments, not a concurrency conflict)."""


class DuplicateEventId(StoreError):
    """An event id that the store already holds, under another command."""


class ConcurrencyConflict(StoreError):
    """The stream moved on since the caller read it: re-read and decide again."""

    def __init__(self, stream: str, expected: int, actual: int):
        self.stream, self.expected, self.actual = stream, expected, actual
        super().__init__(
            f"stream {stream!r} is at version {actual}, the append expected {expected}: "
            "nothing was written; re-read the stream and retry"
        )


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended; the store gives it a version and a position."""

    type: str
    schema_version: int
    topic: str
    payload: dict[str, Any]
    occurred_at: datetime
    actor: str
    id: str = field(default_factory=lambda: new_id("evt"))
    causation_id: str | None = None
    correlation_id: str | None = None

    @classmethod
    def of(
        cls,
        event: Event,
        *,
        actor: str,
        occurred_at: datetime,
        causation_id: str | None = None,
        correlation_id: str | None = None,
        registry: SchemaRegistry = REGISTRY,
    ) -> NewEvent:
        entry = registry.entry(type(event).__name__)
        return cls(
            type=entry.type,
            schema_version=entry.version,
            topic=entry.topic.value,
            payload=event.model_dump(mode="json"),
            occurred_at=occurred_at,
            actor=actor,
            causation_id=causation_id,
            correlation_id=correlation_id,
        )


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """A stored event: its place, its topic and its envelope as JSON text (what goes to Kafka)."""

    position: int
    stream: str
    version: int
    type: str
    topic: str
    envelope_json: str

    def envelope(self) -> Envelope:
        return Envelope.model_validate_json(self.envelope_json)


_FIELDS = ("position", "stream", "version", "type", "topic", "envelope_json")
assert RecordedEvent.__slots__ == _FIELDS, "recorded_event sets every field, in order"
_SET = tuple(getattr(RecordedEvent, name).__set__ for name in _FIELDS)
_new = object.__new__


def recorded_event(row: tuple[int, str, int, str, str, str]) -> RecordedEvent:
    """``RecordedEvent(*row)``, its slots set directly: the frozen dataclass's ``__init__``
    (a generic setattr per field) costs 0.8 us more per row, and a replay reads millions."""
    position, stream, version, type_, topic, envelope_json = _SET
    event: RecordedEvent = _new(RecordedEvent)
    position(event, row[0])
    stream(event, row[1])
    version(event, row[2])
    type_(event, row[3])
    topic(event, row[4])
    envelope_json(event, row[5])
    return event


@dataclass(frozen=True, slots=True)
class SkippedRow:
    """A row a follower could not read and stepped over: the store's dead letter.

    The same fields as a ``hero.dlq`` record where they apply: who skipped it (``source``),
    where it is (``position``), the ``reason`` code and the ``detail`` for the operator.
    """

    source: str
    position: int
    stream: str
    type: str
    reason: str
    detail: str
    skipped_at: str


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """One stream's part of an :meth:`EventStore.append_many`."""

    stream: str
    expected_version: int
    events: Sequence[NewEvent]


@dataclass(frozen=True, slots=True)
class AppendResult:
    stream: str
    first_version: int
    last_version: int
    first_position: int
    last_position: int
    event_ids: tuple[str, ...]
    duplicate: bool = False
    """True when the command id was applied before: nothing was written this time."""


def envelope_json(
    event: NewEvent, *, stream: str, version: int, position: int, recorded_at: datetime
) -> str:
    """The envelope of DESIGN.md as compact JSON, built once at append time.

    orjson writes what ``json.dumps`` (compact, non-ASCII kept) writes, byte for byte, for
    what payloads hold (strings, integers, booleans, nulls, lists, string-keyed objects), in
    a fifth of the time; anything it refuses (an integer past 64 bits) goes the json way."""
    envelope = {
        "id": event.id,
        "type": event.type,
        "schema_version": event.schema_version,
        "stream": stream,
        "version": version,
        "position": position,
        "occurred_at": event.occurred_at.isoformat(),
        "recorded_at": recorded_at.isoformat(),
        "causation_id": event.causation_id,
        "correlation_id": event.correlation_id,
        "actor": event.actor,
        "payload": event.payload,
    }
    try:
        return orjson.dumps(envelope).decode()
    except orjson.JSONEncodeError:
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)


def _check_id(what: str, value: str | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not is_id(value):  # the whole string: a trailing newline is not an id
        raise StoreError(f"{what} must be an id matching {ID_PATTERN} (1-200 chars), got {value!r}")


def _check_name(what: str, value: str) -> None:
    if not is_name(value):
        raise StoreError(
            f"{what} must be 1-200 characters without whitespace or control characters"
            f" ({NAME_PATTERN}), got {value!r}"
        )


def check_command_id(command_id: str) -> None:
    """A command id is an id like any other: it names the command in logs and replies."""
    _check_id("command id", command_id)


def check_many_arguments(appends: Sequence[StreamAppend]) -> None:
    if not appends:
        raise StoreError("append_many needs at least one stream")
    streams = [append.stream for append in appends]
    if len(set(streams)) != len(streams):
        raise StoreError(f"append_many names a stream twice: {streams}")
    ids = [event.id for append in appends for event in append.events]
    if len(set(ids)) != len(ids):
        raise StoreError("event ids must be unique within an append")
    for append in appends:
        check_append_arguments(append.stream, append.expected_version, append.events)


def check_append_arguments(stream: str, expected_version: int, events: Sequence[NewEvent]) -> None:
    """Refuse, before anything is written, what the envelope schema would refuse on read."""
    _check_id("stream", stream)
    if expected_version < ANY_VERSION:
        raise StoreError(f"expected_version must be >= {ANY_VERSION}, got {expected_version}")
    if not events:
        raise StoreError("an append needs at least one event")
    ids = [event.id for event in events]
    if len(set(ids)) != len(ids):
        raise StoreError("event ids must be unique within an append")
    for event in events:
        _check_id("event id", event.id)
        _check_id(f"event {event.id}: causation_id", event.causation_id, optional=True)
        _check_id(f"event {event.id}: correlation_id", event.correlation_id, optional=True)
        _check_name(f"event {event.id}: type", event.type)
        _check_name(f"event {event.id}: actor", event.actor)
        if event.occurred_at.tzinfo is None:
            raise StoreError(f"event {event.id}: occurred_at must be timezone-aware")


class EventStore(ABC):
    """Streams of events with versions, and one global order of positions."""

    @abstractmethod
    def append(
        self, stream: str, expected_version: int, events: Sequence[NewEvent], command_id: str
    ) -> AppendResult:
        """Append atomically if the stream is at ``expected_version``.

        ``command_id`` already applied to ``stream``: the original result, nothing written.
        Otherwise a stale ``expected_version`` raises :class:`ConcurrencyConflict`.
        """

    @abstractmethod
    def append_many(self, appends: Sequence[StreamAppend], command_id: str) -> list[AppendResult]:
        """Append to several streams atomically: all of them, or none.

        Every stream must be at its expected version, or :class:`ConcurrencyConflict` names the
        first that is not and nothing is written. ``command_id`` is recorded on each stream; if
        it was applied to any of them, the original results come back and nothing is written.
        A double-entry transfer touches two accounts: this is how both legs land together.
        """

    @abstractmethod
    def command_result(self, stream: str, command_id: str) -> AppendResult | None:
        """The result of ``command_id`` on ``stream`` if it was applied there, else None."""

    @abstractmethod
    def read_stream(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        """The stream's events from ``from_version`` on, in version order."""

    @abstractmethod
    def read_all(self, from_position: int = 1, limit: int = 1000) -> list[RecordedEvent]:
        """Up to ``limit`` events from ``from_position`` on, in position order."""

    def read_batches(
        self, from_position: int = 1, batch: int = READ_BATCH, through: int | None = None
    ) -> Iterator[list[RecordedEvent]]:
        """The log from ``from_position`` on (through position ``through`` when given), in
        position order, as lists of up to ``batch`` rows: what a replay reads, one query per
        list rather than per row. Each list is read when the previous one is consumed, so a
        long log is never held at once."""
        if batch < 1:
            raise StoreError(f"batch must be >= 1, got {batch}")
        start = max(from_position, 1)
        while through is None or start <= through:
            limit = batch if through is None else min(batch, through - start + 1)
            rows = self.read_all(start, limit)
            if through is not None and rows and rows[-1].position > through:
                rows = [row for row in rows if row.position <= through]
            if not rows:
                return
            yield rows
            start = rows[-1].position + 1

    def reader_url(self) -> str | None:
        """The URL another process opens this same store by (:func:`hero.store.open_store`),
        or None when the store lives in this process only."""
        return None

    def read_typed_batches(
        self,
        types: frozenset[str],
        *,
        exclude: bool = False,
        batch: int = READ_BATCH,
        through: int,
    ) -> Iterator[list[RecordedEvent]]:
        """As :meth:`read_batches` from the start through ``through``, only the rows whose
        type is in ``types`` (or, with ``exclude``, is not): one process's share of a
        partitioned rebuild. Here the rows are filtered once read; the SQL stores filter in
        the query, so a process never builds the rows it skips."""
        for rows in self.read_batches(1, batch, through):
            chosen = [row for row in rows if (row.type in types) is not exclude]
            if chosen:
                yield chosen

    def read_event(self, event_id: str) -> RecordedEvent | None:
        """The event with this id, or None. Adapters answer from an index; this fallback scans."""
        position = 0
        while rows := self.read_all(position + 1, 5000):
            for row in rows:
                if row.envelope().id == event_id:
                    return row
            position = rows[-1].position
        return None

    @abstractmethod
    def stream_version(self, stream: str) -> int:
        """The stream's last version; 0 when it has no events."""

    @abstractmethod
    def current_position(self) -> int:
        """The position of the last committed event; 0 when the store is empty."""

    def wait_for_new(self, after: int, timeout: float) -> bool:
        """Block until an event past position ``after`` is committed, or ``timeout`` seconds.

        True when there is one to read. This default polls :meth:`current_position`; an
        adapter that can be told of commits (PostgreSQL's LISTEN/NOTIFY) wakes at once.
        """
        deadline = time.monotonic() + timeout
        while self.current_position() <= after:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, _POLL_S))
        return True

    def record_skip(self, skip: SkippedRow) -> bool:
        """Keep ``skip`` (once per source and position); True when it was not kept before.

        Adapters override this to make it durable; this default keeps it in memory.
        """
        kept: dict[tuple[str, int], SkippedRow] = self.__dict__.setdefault("_skipped_rows", {})
        if (skip.source, skip.position) in kept:
            return False
        kept[(skip.source, skip.position)] = skip
        return True

    def skipped(self) -> list[SkippedRow]:
        """Every recorded skip, by position then source."""
        kept: dict[tuple[str, int], SkippedRow] = self.__dict__.get("_skipped_rows", {})
        return sorted(kept.values(), key=lambda s: (s.position, s.source))

    @contextmanager
    def group_commit(self) -> Iterator[None]:
        """Appends made by this thread inside the block become durable together at its end.

        Each append still succeeds or fails on its own (a conflict inside writes nothing of
        that append), and reads on this thread see the block's appends; but no append is
        visible to others, or durable, before the block ends, and an error escaping the block
        undoes them all. One commit (one fsync) for many appends: that is the point. Adapters
        without transactions commit each append at once.
        """
        yield

    def close(self) -> None:  # noqa: B027 - optional for adapters without resources
        """Release connections."""


def typed_batches(
    read: Callable[[int, int], list[RecordedEvent]], batch: int, through: int
) -> Iterator[list[RecordedEvent]]:
    """The batches of ``read(start, limit)`` (rows from ``start`` through ``through``, of the
    chosen types, in position order) until none is left: the SQL stores' typed read."""
    if batch < 1:
        raise StoreError(f"batch must be >= 1, got {batch}")
    start = 1
    while start <= through:
        rows = read(start, batch)
        if not rows:
            return
        yield rows
        start = rows[-1].position + 1
