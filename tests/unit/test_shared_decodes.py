"""``sharing_decodes``: within it every follower in the process gets the same decode of a row
(what the market twin's agents, billing and report share); outside it each decodes its own;
a poison row is poison either way."""

from __future__ import annotations

import dataclasses

import pytest

from hero.domain.clock import ManualClock
from hero.store import (
    MemoryEventStore,
    PoisonRow,
    RecordedEvent,
    decode_event,
    decode_trusted,
    recorded_after,
    sharing_decodes,
)
from tests.unit.store_contract import new_event


def _rows(count: int = 3) -> list[RecordedEvent]:
    clock = ManualClock()
    store = MemoryEventStore(clock)
    store.append("node-n1", 0, [new_event(clock, reason=f"r{i}") for i in range(count)], "c1")
    return list(recorded_after(store, 0, 100))


def test_within_it_followers_share_one_decode_and_outside_each_decodes_its_own() -> None:
    rows = _rows()
    apart = decode_event(rows[0])
    assert decode_event(rows[0])[1] is not apart[1]
    with sharing_decodes(10):
        first = decode_event(rows[0])
        assert decode_trusted(rows[0]) is first
        assert decode_event(rows[0]) is first
        assert first == apart
        assert decode_trusted(rows[1]) is decode_event(rows[1])
    assert decode_event(rows[0])[1] is not first[1]


def test_it_keeps_at_most_its_limit_and_the_decodes_stay_right() -> None:
    rows = _rows(5)
    with sharing_decodes(2):
        decoded = [decode_event(row) for row in rows]
        assert [e.reason for _, e in decoded] == [f"r{i}" for i in range(5)]  # type: ignore[attr-defined]
        assert decode_event(rows[0]) is not decoded[0]  # started afresh after the second


def test_a_poison_row_still_raises_and_a_bad_limit_is_refused() -> None:
    row = _rows(1)[0]
    bad = dataclasses.replace(row, envelope_json=row.envelope_json.replace('"up"', '"sideways"'))
    with sharing_decodes(10):
        decode_event(row)
        with pytest.raises(PoisonRow):
            decode_event(bad)
    for limit in (0, -1, 10_000_001):
        with pytest.raises(ValueError, match="limit"), sharing_decodes(limit):
            pass
