"""The part of an append that every adapter shares: checks, numbering and envelopes; and the
skipped rows' columns."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import astuple
from datetime import datetime

from hero.store.port import (
    ANY_VERSION,
    AppendResult,
    ConcurrencyConflict,
    DuplicateEventId,
    NewEvent,
    RecordedEvent,
    SkippedRow,
    envelope_json,
)

__all__ = [
    "SELECT_SKIPPED",
    "command_values",
    "duplicate_event_ids",
    "event_values",
    "plan_append",
    "skipped_values",
]

#: The columns of ``events`` and ``commands`` the values below fill, in this order (every SQL
#: adapter's schema has them so; only the placeholders differ).
EventValues = tuple[int, str, int, str, str, str, str]
CommandValues = tuple[str, str, int, int, int, int, str]

#: Every skipped row, in the order of SkippedRow's fields (the ``skipped`` table's columns).
SELECT_SKIPPED = (
    "SELECT source, position, stream, type, reason, detail, skipped_at FROM skipped"
    " ORDER BY position, source"
)


def skipped_values(skip: SkippedRow) -> tuple[str, int, str, str, str, str, str]:
    """A skipped row's values in the ``skipped`` table's column order."""
    return astuple(skip)


def plan_append(
    stream: str,
    expected_version: int,
    current_version: int,
    next_position: int,
    events: Sequence[NewEvent],
    recorded_at: datetime,
) -> tuple[list[RecordedEvent], AppendResult]:
    """Number the events after the stream's current version and the store's last position."""
    if expected_version != ANY_VERSION and expected_version != current_version:
        raise ConcurrencyConflict(stream, expected_version, current_version)
    rows = [
        RecordedEvent(
            position=next_position + offset,
            stream=stream,
            version=current_version + 1 + offset,
            type=event.type,
            topic=event.topic,
            envelope_json=envelope_json(
                event,
                stream=stream,
                version=current_version + 1 + offset,
                position=next_position + offset,
                recorded_at=recorded_at,
            ),
        )
        for offset, event in enumerate(events)
    ]
    result = AppendResult(
        stream=stream,
        first_version=rows[0].version,
        last_version=rows[-1].version,
        first_position=rows[0].position,
        last_position=rows[-1].position,
        event_ids=tuple(event.id for event in events),
    )
    return rows, result


def event_values(rows: list[RecordedEvent], events: Sequence[NewEvent]) -> list[EventValues]:
    """One ``events`` row per planned event: position, stream, version, id, type, topic,
    envelope."""
    return [
        (r.position, r.stream, r.version, event.id, r.type, r.topic, r.envelope_json)
        for r, event in zip(rows, events, strict=True)
    ]


def command_values(stream: str, command_id: str, result: AppendResult) -> CommandValues:
    """The ``commands`` row that makes a repeated command id return ``result``."""
    return (
        stream,
        command_id,
        result.first_version,
        result.last_version,
        result.first_position,
        result.last_position,
        json.dumps(result.event_ids),
    )


def duplicate_event_ids(events: Sequence[NewEvent]) -> DuplicateEventId:
    """What an adapter raises when the database refuses the events' ids as already stored."""
    ids = [event.id for event in events]
    return DuplicateEventId(f"event ids already stored among {ids}; nothing was written")
