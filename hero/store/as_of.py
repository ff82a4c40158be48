"""Time travel: the store as it was at a position or a moment (``--as-of``, ``?as_of=``).

:class:`LogCut` is a read-only store that ends at a position: whatever folds the log (the
market model's views, the ledger's book, the read-model projections) reads it unchanged and
answers as it would have then. :func:`resolve_as_of` turns what a user typed, a position or an
ISO-8601 time with its zone, into that position. See docs/architecture.md ("Time travel").
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from hero.store.port import (
    AppendResult,
    EventStore,
    NewEvent,
    RecordedEvent,
    SkippedRow,
    StoreError,
    StreamAppend,
)

__all__ = [
    "MAX_AS_OF_CHARS",
    "AsOf",
    "AsOfError",
    "AsOfPastHead",
    "LogCut",
    "parse_as_of",
    "position_at",
    "resolve_as_of",
]

_POSITION = re.compile(r"[0-9]{1,19}")
_RECORDED_AT = '"recorded_at":"'
#: The longest text an as-of can be: a 19-digit position or an ISO time with microseconds.
MAX_AS_OF_CHARS = 40


class AsOfError(ValueError):
    """An as-of that names no moment of this log; the message says what is wrong."""


class AsOfPastHead(AsOfError):
    """A well-formed position this log has not reached (yet)."""


@dataclass(frozen=True, slots=True)
class AsOf:
    """A resolved as-of: the last position folded, and what the user asked for."""

    position: int
    asked: str
    moment: datetime | None = None
    """The time asked for, when the as-of was a time (None for a position)."""

    def describe(self) -> str:
        if self.moment is None:
            return f"as of position {self.position}"
        return f"as of {self.moment.isoformat()} (position {self.position})"


def parse_as_of(text: str) -> int | datetime:
    """A position (digits) or an aware time (ISO 8601 with its zone); else :class:`AsOfError`."""
    if len(text) > MAX_AS_OF_CHARS:
        raise AsOfError(f"as_of must be at most {MAX_AS_OF_CHARS} characters, got {len(text)}")
    if _POSITION.fullmatch(text):
        return int(text)
    try:  # RFC 3339 allows a lower-case t and z
        moment = datetime.fromisoformat(text.upper())
    except ValueError:
        moment = None
    if moment is None or "T" not in text.upper():
        raise AsOfError(
            f"as_of must be a log position (digits) or an ISO-8601 time with its zone, "
            f"e.g. 2026-11-30T23:59:59Z, got {text!r}"
        )
    if moment.tzinfo is None:
        raise AsOfError(f"as_of {text!r} has no time zone: add Z or an offset such as +01:00")
    return moment


def _recorded_at(row: RecordedEvent) -> datetime:
    text = row.envelope_json
    start = text.find(_RECORDED_AT)
    if start < 0:  # not the store's compact form: read the envelope properly
        return row.envelope().recorded_at
    start += len(_RECORDED_AT)
    return datetime.fromisoformat(text[start : text.index('"', start)])


def position_at(store: EventStore, moment: datetime) -> int:
    """The last position recorded at or before ``moment`` (0 before the first event).

    A bisection over positions, a row read per step: every store stamps ``recorded_at`` while
    it holds the lock that orders its positions (SQLite's write lock, PostgreSQL's
    ``log_head`` row, the memory store's lock), so the stamps never decrease along the log
    while the clock does not step back. A clock stepped back (a wall clock corrected by NTP)
    leaves the cut at a position stamped at or before ``moment`` whose next one is stamped
    after it, not necessarily the last such.
    """
    low, high = 0, store.current_position()  # low is at or before moment, past high is after
    while low < high:
        middle = (low + high + 1) // 2
        rows = store.read_all(middle, 1)  # the first row at or after middle: positions may skip
        if rows and rows[0].position <= high and _recorded_at(rows[0]) <= moment:
            low = rows[0].position
        else:
            high = middle - 1
    return low


def resolve_as_of(store: EventStore, text: str) -> AsOf:
    """What ``text`` names in ``store``; a position past the log's head is refused."""
    asked = parse_as_of(text)
    if isinstance(asked, datetime):
        return AsOf(position_at(store, asked), text, asked)
    head = store.current_position()
    if asked > head:
        raise AsOfPastHead(f"as_of position {asked} is past the log's head ({head})")
    return AsOf(asked, text)


class LogCut(EventStore):
    """``store`` as it was at ``position``: reads stop there, and nothing can be written."""

    def __init__(self, store: EventStore, position: int):
        self.store, self.position = store, position

    def _refuse(self) -> StoreError:
        return StoreError(f"the store as of position {self.position} is read-only")

    def append(
        self, stream: str, expected_version: int, events: Sequence[NewEvent], command_id: str
    ) -> AppendResult:
        raise self._refuse()

    def append_many(self, appends: Sequence[StreamAppend], command_id: str) -> list[AppendResult]:
        raise self._refuse()

    @contextmanager
    def group_commit(self) -> Iterator[None]:
        raise self._refuse()
        yield  # pragma: no cover - a generator for contextmanager

    def command_result(self, stream: str, command_id: str) -> AppendResult | None:
        result = self.store.command_result(stream, command_id)
        return result if result is not None and result.last_position <= self.position else None

    def read_stream(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        return [
            r for r in self.store.read_stream(stream, from_version) if r.position <= self.position
        ]

    def read_all(self, from_position: int = 1, limit: int = 1000) -> list[RecordedEvent]:
        if from_position > self.position:
            return []
        rows = self.store.read_all(from_position, limit)
        return [r for r in rows if r.position <= self.position]

    def read_event(self, event_id: str) -> RecordedEvent | None:
        row = self.store.read_event(event_id)
        return row if row is not None and row.position <= self.position else None

    def stream_version(self, stream: str) -> int:
        rows = self.read_stream(stream)
        return rows[-1].version if rows else 0

    def current_position(self) -> int:
        return min(self.position, self.store.current_position())

    def wait_for_new(self, after: int, timeout: float) -> bool:
        return False  # the past does not grow

    def record_skip(self, skip: SkippedRow) -> bool:
        return self.store.record_skip(skip)

    def skipped(self) -> list[SkippedRow]:
        return [s for s in self.store.skipped() if s.position <= self.position]

    def close(self) -> None:
        self.store.close()
