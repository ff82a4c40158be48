"""The part of an append that every adapter shares: checks, numbering and envelopes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from hero.store.port import (
    ANY_VERSION,
    AppendResult,
    ConcurrencyConflict,
    NewEvent,
    RecordedEvent,
    envelope_json,
)

__all__ = ["plan_append"]


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
