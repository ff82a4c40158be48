"""Time travel's parts: what an as-of may be, where a time cuts the log, and a cut of the store
that reads as the store did then and writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hero.domain.clock import ManualClock
from hero.store import (
    ANY_VERSION,
    MemoryEventStore,
    NewEvent,
    RecordedEvent,
    StoreError,
    recorded_after,
)
from hero.store.as_of import (
    AsOfError,
    AsOfPastHead,
    LogCut,
    parse_as_of,
    position_at,
    resolve_as_of,
)

START = datetime(2026, 11, 1, tzinfo=UTC)


def _event(n: int) -> NewEvent:
    return NewEvent(
        id=f"evt-{n}",
        type="Noted",
        schema_version=1,
        topic="hero.test",
        payload={"n": n},
        occurred_at=START,
        actor="test",
    )


def _store(events: int) -> tuple[MemoryEventStore, list[datetime]]:
    """``events`` events, one a minute from START, over three streams."""
    clock = ManualClock(START)
    store = MemoryEventStore(clock)
    stamps = []
    for n in range(events):
        clock.advance(timedelta(minutes=1))
        stamps.append(clock.now())
        store.append(f"s-{n % 3}", ANY_VERSION, [_event(n)], f"cmd-{n}")
    return store, stamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("42", 42),
        ("2026-11-30T23:59:59Z", datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)),
        ("2026-11-30t23:59:59z", datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)),
        (
            "2026-11-30T23:59:59.5+01:00",
            datetime(2026, 11, 30, 22, 59, 59, 500000, tzinfo=UTC),
        ),
    ],
)
def test_an_as_of_is_a_position_or_an_aware_time(text: str, expected: int | datetime) -> None:
    assert parse_as_of(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "log position"),
        ("-1", "log position"),
        ("12\n", "log position"),
        (" 12", "log position"),
        ("yesterday", "log position"),
        ("2026-11-30", "log position"),
        ("2026-11-30T23:59:59", "no time zone"),
        ("1" * 20, "log position"),
        ("2026-11-30T23:59:59Z" + " " * 30, "at most 40"),
    ],
)
def test_anything_else_is_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(AsOfError, match=says):
        parse_as_of(text)


def test_a_time_cuts_after_the_last_event_recorded_by_then() -> None:
    store, stamps = _store(10)
    assert position_at(store, START) == 0
    assert position_at(store, stamps[3]) == 4
    assert position_at(store, stamps[3] + timedelta(seconds=59)) == 4
    assert position_at(store, stamps[-1] + timedelta(days=1)) == 10
    assert resolve_as_of(store, stamps[3].isoformat()).position == 4


class _CountingStore(MemoryEventStore):
    """Counts the rows read: a time is found by bisection, not by reading the log."""

    reads = 0

    def read_all(self, from_position: int = 1, limit: int = 1000) -> list[RecordedEvent]:
        rows = super().read_all(from_position, limit)
        self.reads += len(rows)
        return rows


@settings(max_examples=30, deadline=None)
@given(steps=st.lists(st.integers(min_value=0, max_value=3), min_size=0, max_size=40))
def test_a_time_cuts_where_a_scan_of_the_log_would_reading_few_rows(steps: list[int]) -> None:
    clock = ManualClock(START)
    store = _CountingStore(clock)
    for n, step in enumerate(steps):  # several events may share a stamp
        clock.advance(timedelta(seconds=step))
        store.append("s", ANY_VERSION, [_event(n)], f"cmd-{n}")
    stamps = [row.envelope().recorded_at for row in recorded_after(store, 0)]
    for moment in [START, *stamps, *(s + timedelta(milliseconds=1) for s in stamps)]:
        store.reads = 0
        scanned = max((i + 1 for i, s in enumerate(stamps) if s <= moment), default=0)
        assert position_at(store, moment) == scanned
        assert store.reads <= max(len(stamps), 1).bit_length() + 1


def test_a_position_past_the_head_is_refused() -> None:
    store, _ = _store(3)
    assert resolve_as_of(store, "3").position == 3
    with pytest.raises(AsOfPastHead, match=r"past the log's head \(3\)"):
        resolve_as_of(store, "4")


@settings(max_examples=60, deadline=None)
@given(events=st.integers(0, 30), data=st.data())
def test_a_cut_reads_as_the_store_did_at_its_position(events: int, data: st.DataObject) -> None:
    store, _ = _store(events)
    cut_at = data.draw(st.integers(0, events))
    shorter, _ = _store(cut_at)  # the same log, as it was when it ended at the cut
    cut = LogCut(store, cut_at)
    assert [r.envelope_json for r in recorded_after(cut, 0, 4)] == [
        r.envelope_json for r in recorded_after(shorter, 0, 4)
    ]
    assert cut.current_position() == shorter.current_position()
    for stream in ("s-0", "s-1", "s-2", "s-9"):
        assert cut.stream_version(stream) == shorter.stream_version(stream)
        assert [r.position for r in cut.read_stream(stream)] == [
            r.position for r in shorter.read_stream(stream)
        ]
    for n in range(events):
        assert (cut.command_result(f"s-{n % 3}", f"cmd-{n}") is None) == (n >= cut_at)
    assert not cut.wait_for_new(cut_at, 0.0)


def test_a_cut_writes_nothing() -> None:
    store, _ = _store(3)
    cut = LogCut(store, 2)
    with pytest.raises(StoreError, match="read-only"):
        cut.append("s-0", ANY_VERSION, [_event(9)], "cmd-9")
    with pytest.raises(StoreError, match="read-only"), cut.group_commit():
        pass
    assert store.current_position() == 3
