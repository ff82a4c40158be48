"""An in-process event store, for the pure core's tests and for tools that need no disk."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

from hero.domain.clock import Clock, SystemClock
from hero.store._planning import plan_append
from hero.store.port import (
    AppendResult,
    DuplicateEventId,
    EventStore,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    check_command_id,
    check_many_arguments,
)

__all__ = ["MemoryEventStore"]


class MemoryEventStore(EventStore):
    def __init__(self, clock: Clock | None = None):
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._log: list[RecordedEvent] = []
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._commands: dict[tuple[str, str], AppendResult] = {}
        self._ids: dict[str, RecordedEvent] = {}

    def append(
        self, stream: str, expected_version: int, events: Sequence[NewEvent], command_id: str
    ) -> AppendResult:
        # append_many checks the arguments (the same checks, in the same order): once is enough
        return self.append_many([StreamAppend(stream, expected_version, events)], command_id)[0]

    def append_many(self, appends: Sequence[StreamAppend], command_id: str) -> list[AppendResult]:
        check_many_arguments(appends)
        check_command_id(command_id)
        with self._lock:
            applied = [self._commands.get((a.stream, command_id)) for a in appends]
            if any(result is not None for result in applied):
                return [dataclasses.replace(r, duplicate=True) for r in applied if r is not None]
            known = [e.id for a in appends for e in a.events if e.id in self._ids]
            if known:
                raise DuplicateEventId(f"event ids already stored: {known}; nothing was written")
            planned = []
            position = len(self._log) + 1
            for append in appends:  # plan every stream first: a conflict writes nothing
                current = len(self._streams.get(append.stream, []))
                rows, result = plan_append(
                    append.stream,
                    append.expected_version,
                    current,
                    position,
                    append.events,
                    self._clock.now(),
                )
                planned.append((append, rows, result))
                position += len(rows)
            for append, rows, result in planned:
                self._streams.setdefault(append.stream, []).extend(rows)
                self._log.extend(rows)
                self._commands[(append.stream, command_id)] = result
                self._ids.update(
                    (event.id, row) for event, row in zip(append.events, rows, strict=True)
                )
            return [result for _, _, result in planned]

    def command_result(self, stream: str, command_id: str) -> AppendResult | None:
        with self._lock:
            applied = self._commands.get((stream, command_id))
        return None if applied is None else dataclasses.replace(applied, duplicate=True)

    def read_stream(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        with self._lock:
            return list(self._streams.get(stream, [])[max(from_version, 1) - 1 :])

    def read_all(self, from_position: int = 1, limit: int = 1000) -> list[RecordedEvent]:
        start = max(from_position, 1) - 1
        with self._lock:
            return self._log[start : start + limit]

    def read_event(self, event_id: str) -> RecordedEvent | None:
        with self._lock:
            return self._ids.get(event_id)

    def stream_version(self, stream: str) -> int:
        with self._lock:
            return len(self._streams.get(stream, []))

    def current_position(self) -> int:
        with self._lock:
            return len(self._log)
