"""The EventStore contract, reusable by every adapter.

Subclass :class:`EventStoreContract` in a ``Test*`` class and override the ``store`` fixture
(it may use the ``clock`` fixture, which the store must read for ``recorded_at``)::

    class TestMyStore(EventStoreContract):
        @pytest.fixture
        def store(self, clock):
            return MyStore(clock=clock)
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest

import schemas
from hero.domain.clock import ManualClock
from hero.store.port import (
    ANY_VERSION,
    NO_STREAM,
    AppendResult,
    ConcurrencyConflict,
    DuplicateEventId,
    EventStore,
    NewEvent,
    StoreError,
    StreamAppend,
)

__all__ = [
    "CLOCK_START",
    "EventStoreContract",
    "assert_gap_free",
    "new_event",
    "race_same_expected_version",
    "race_with_retries",
    "run_threads",
]

CLOCK_START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
THREAD_TIMEOUT_S = 60.0


def new_event(
    clock: ManualClock,
    node_id: str = "n1",
    *,
    status: str = "up",
    reason: str = "",
    actor: str = "test",
    occurred_at: datetime | None = None,
    **envelope_fields: str | None,
) -> NewEvent:
    return NewEvent.of(
        schemas.NodeStatusChanged(node_id=node_id, status=status, reason=reason),
        actor=actor,
        occurred_at=occurred_at or clock.now(),
        **envelope_fields,
    )


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run ``target(i)`` in ``count`` threads; re-raise the first error any of them hit.

    The interpreter's switch interval is shortened meanwhile, so threads interleave between
    a read and an append even in the in-memory store.
    """
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as error:  # reported to the test below
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(i,), daemon=True) for i in range(count)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(THREAD_TIMEOUT_S)
    finally:
        sys.setswitchinterval(interval)
    assert not any(thread.is_alive() for thread in threads), "a writer thread hung"
    if errors:
        raise errors[0]


def race_same_expected_version(
    stores: Sequence[EventStore], clock: ManualClock, stream: str, threads: int = 20
) -> tuple[list[AppendResult], list[ConcurrencyConflict]]:
    """``threads`` writers append to ``stream`` at once, all expecting its current version."""
    expected = stores[0].stream_version(stream)
    barrier = threading.Barrier(threads)
    lock = threading.Lock()
    won: list[AppendResult] = []
    lost: list[ConcurrencyConflict] = []

    def writer(index: int) -> None:
        store = stores[index % len(stores)]
        event = new_event(clock, f"n{index}")
        barrier.wait(THREAD_TIMEOUT_S)
        try:
            result = store.append(stream, expected, [event], f"cmd-race-{index}")
        except ConcurrencyConflict as conflict:
            with lock:
                lost.append(conflict)
        else:
            with lock:
                won.append(result)

    run_threads(threads, writer)
    return won, lost


def race_with_retries(
    stores: Sequence[EventStore],
    clock: ManualClock,
    stream: str,
    threads: int = 20,
    appends: int = 10,
) -> int:
    """Each writer appends ``appends`` times: read the version, append, on conflict retry.

    Returns how many conflicts the writers saw (and retried).
    """
    barrier = threading.Barrier(threads)
    conflicts = [0] * threads

    def writer(index: int) -> None:
        store = stores[index % len(stores)]
        barrier.wait(THREAD_TIMEOUT_S)
        for n in range(appends):
            event = new_event(clock, f"n{index}", reason=f"{index}/{n}")
            while True:
                version = store.stream_version(stream)
                try:
                    store.append(stream, version, [event], f"cmd-{index}-{n}")
                    break
                except ConcurrencyConflict:
                    conflicts[index] += 1

    run_threads(threads, writer)
    return sum(conflicts)


class EventStoreContract:
    """What every EventStore adapter promises (hero/store/port.py)."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock(CLOCK_START)

    @pytest.fixture
    def store(self, clock: ManualClock) -> EventStore:
        raise NotImplementedError("a contract subclass provides the store under test")

    # --- appending and numbering ----------------------------------------------------------

    def test_a_new_store_is_empty(self, store):
        assert store.current_position() == 0
        assert store.stream_version("s1") == 0
        assert store.read_stream("s1") == []
        assert store.read_all() == []

    def test_append_to_a_new_stream_numbers_versions_from_one(self, store, clock):
        events = [new_event(clock, f"n{i}") for i in range(3)]
        result = store.append("s1", NO_STREAM, events, "cmd-1")
        assert (result.first_version, result.last_version) == (1, 3)
        assert (result.first_position, result.last_position) == (1, 3)
        assert result.event_ids == tuple(e.id for e in events)
        assert result.stream == "s1"
        assert result.duplicate is False
        assert [r.version for r in store.read_stream("s1")] == [1, 2, 3]

    def test_positions_continue_from_the_current_position_across_streams(self, store, clock):
        store.append("s1", NO_STREAM, [new_event(clock), new_event(clock)], "cmd-1")
        start = store.current_position()
        result = store.append("s2", NO_STREAM, [new_event(clock) for _ in range(3)], "cmd-2")
        assert (result.first_position, result.last_position) == (start + 1, start + 3)
        assert (result.first_version, result.last_version) == (1, 3)
        assert [r.position for r in store.read_stream("s2")] == [start + 1, start + 2, start + 3]
        assert store.current_position() == start + 3

    def test_append_with_the_current_version_extends_the_stream(self, store, clock):
        store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
        result = store.append("s1", 1, [new_event(clock), new_event(clock)], "cmd-2")
        assert (result.first_version, result.last_version) == (2, 3)
        assert store.stream_version("s1") == 3

    def test_read_stream_from_a_version(self, store, clock):
        events = [new_event(clock, f"n{i}") for i in range(5)]
        store.append("s1", NO_STREAM, events, "cmd-1")
        tail = store.read_stream("s1", from_version=3)
        assert [r.version for r in tail] == [3, 4, 5]
        assert [r.envelope().id for r in tail] == [e.id for e in events[2:]]
        assert store.read_stream("s1", from_version=6) == []
        assert [r.version for r in store.read_stream("s1", from_version=1)] == [1, 2, 3, 4, 5]

    def test_read_stream_only_returns_its_own_stream(self, store, clock):
        store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
        store.append("s2", NO_STREAM, [new_event(clock)], "cmd-2")
        store.append("s1", 1, [new_event(clock)], "cmd-3")
        assert [(r.stream, r.version, r.position) for r in store.read_stream("s1")] == [
            ("s1", 1, 1),
            ("s1", 2, 3),
        ]

    def test_read_all_is_in_position_order_across_streams(self, store, clock):
        store.append("a", NO_STREAM, [new_event(clock)], "cmd-1")
        store.append("b", NO_STREAM, [new_event(clock)], "cmd-2")
        store.append("a", 1, [new_event(clock)], "cmd-3")
        store.append("b", 1, [new_event(clock)], "cmd-4")
        everything = store.read_all()
        assert [(r.position, r.stream, r.version) for r in everything] == [
            (1, "a", 1),
            (2, "b", 1),
            (3, "a", 2),
            (4, "b", 2),
        ]

    def test_read_all_from_a_position_with_a_limit(self, store, clock):
        for i in range(6):
            store.append(f"s{i % 2}", ANY_VERSION, [new_event(clock)], f"cmd-{i}")
        assert [r.position for r in store.read_all(from_position=2, limit=3)] == [2, 3, 4]
        assert [r.position for r in store.read_all(from_position=5, limit=100)] == [5, 6]
        assert store.read_all(from_position=7) == []
        assert store.read_all(from_position=1, limit=0) == []

    def test_read_batches_returns_exactly_the_rows_read_one_by_one(self, store, clock):
        for i in range(23):
            events = [new_event(clock, f"n{i}.{j}") for j in range(1 + i % 3)]
            store.append(f"s{i % 4}", ANY_VERSION, events, f"cmd-{i}")
        last = store.current_position()
        one_by_one = [store.read_all(p, 1)[0] for p in range(1, last + 1)]
        for batch in (1, 7, last, 10_000):
            batches = list(store.read_batches(1, batch))
            assert [row for rows in batches for row in rows] == one_by_one
            assert all(1 <= len(rows) <= batch for rows in batches)
        # From a position, through a position: the same rows as one by one, no more.
        middle = list(store.read_batches(5, 4, through=last - 3))
        assert [row for rows in middle for row in rows] == one_by_one[4 : last - 3]
        assert list(store.read_batches(last + 1, 10)) == []
        assert list(store.read_batches(1, 10, through=0)) == []
        with pytest.raises(StoreError, match="batch must be >= 1"):
            list(store.read_batches(1, 0))

    def test_stream_version_and_current_position(self, store, clock):
        store.append("s1", NO_STREAM, [new_event(clock), new_event(clock)], "cmd-1")
        store.append("s2", NO_STREAM, [new_event(clock)], "cmd-2")
        assert store.stream_version("s1") == 2
        assert store.stream_version("s2") == 1
        assert store.stream_version("nope") == 0
        assert store.current_position() == 3

    def test_recorded_event_carries_type_and_topic(self, store, clock):
        store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
        [recorded] = store.read_all()
        assert recorded.type == "NodeStatusChanged"
        assert recorded.topic == schemas.Topic.UTILIZATION.value

    # --- optimistic concurrency -----------------------------------------------------------

    def test_stale_expected_version_raises_and_writes_nothing(self, store, clock):
        store.append("s1", NO_STREAM, [new_event(clock), new_event(clock)], "cmd-1")
        store.append("other", NO_STREAM, [new_event(clock)], "cmd-2")
        before_all, before_stream = store.read_all(), store.read_stream("s1")
        with pytest.raises(ConcurrencyConflict) as raised:
            store.append("s1", 1, [new_event(clock)], "cmd-3")
        conflict = raised.value
        assert (conflict.stream, conflict.expected, conflict.actual) == ("s1", 1, 2)
        message = str(conflict)
        assert "'s1'" in message
        assert "expected 1" in message
        assert "version 2" in message
        assert store.read_all() == before_all
        assert store.read_stream("s1") == before_stream
        assert store.current_position() == 3
        assert store.stream_version("s1") == 2

    def test_no_stream_on_an_existing_stream_conflicts(self, store, clock):
        store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
        with pytest.raises(ConcurrencyConflict):
            store.append("s1", NO_STREAM, [new_event(clock)], "cmd-2")
        assert store.stream_version("s1") == 1

    def test_expecting_a_version_ahead_of_the_stream_conflicts(self, store, clock):
        with pytest.raises(ConcurrencyConflict) as raised:
            store.append("s1", 3, [new_event(clock)], "cmd-1")
        assert (raised.value.expected, raised.value.actual) == (3, 0)
        assert store.current_position() == 0
        assert store.stream_version("s1") == 0

    def test_a_conflict_is_a_store_error(self):
        assert issubclass(ConcurrencyConflict, StoreError)

    def test_any_version_skips_the_check(self, store, clock):
        first = store.append("s1", ANY_VERSION, [new_event(clock)], "cmd-1")
        second = store.append("s1", ANY_VERSION, [new_event(clock)], "cmd-2")
        assert (first.first_version, second.first_version) == (1, 2)
        assert store.stream_version("s1") == 2

    def test_a_command_that_conflicted_can_be_retried_with_the_same_id(self, store, clock):
        store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
        with pytest.raises(ConcurrencyConflict):
            store.append("s1", NO_STREAM, [new_event(clock)], "cmd-2")
        retried = store.append("s1", 1, [new_event(clock)], "cmd-2")
        assert retried.duplicate is False
        assert retried.first_version == 2

    # --- command idempotency --------------------------------------------------------------

    def test_same_command_on_same_stream_returns_the_original_result(self, store, clock):
        original_events = [new_event(clock, "n1"), new_event(clock, "n2")]
        original = store.append("s1", NO_STREAM, original_events, "cmd-1")
        before = store.read_all()
        again = store.append("s1", NO_STREAM, [new_event(clock, "other")], "cmd-1")
        assert again == dataclasses.replace(original, duplicate=True)
        assert again.event_ids == tuple(e.id for e in original_events)
        assert store.read_all() == before
        assert store.stream_version("s1") == 2
        assert store.current_position() == 2

    def test_a_duplicate_wins_over_a_stale_expected_version(self, store, clock):
        original = store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
        store.append("s1", 1, [new_event(clock)], "cmd-2")
        again = store.append("s1", 1, [new_event(clock)], "cmd-1")  # stale: stream is at 2
        assert again.duplicate is True
        assert (again.first_version, again.first_position) == (
            original.first_version,
            original.first_position,
        )
        assert store.stream_version("s1") == 2

    def test_same_command_on_another_stream_is_a_separate_command(self, store, clock):
        store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
        other = store.append("s2", NO_STREAM, [new_event(clock)], "cmd-1")
        assert other.duplicate is False
        assert (other.stream, other.first_version, other.first_position) == ("s2", 1, 2)
        assert store.current_position() == 2

    # --- several streams at once ----------------------------------------------------------

    def test_append_many_writes_every_stream_with_consecutive_positions(self, store, clock):
        store.append("s1", NO_STREAM, [new_event(clock)], "cmd-0")
        results = store.append_many(
            [
                StreamAppend("s1", 1, [new_event(clock), new_event(clock)]),
                StreamAppend("s2", NO_STREAM, [new_event(clock)]),
            ],
            "cmd-1",
        )
        assert [(r.stream, r.first_version, r.last_version) for r in results] == [
            ("s1", 2, 3),
            ("s2", 1, 1),
        ]
        assert [(r.first_position, r.last_position) for r in results] == [(2, 3), (4, 4)]
        assert [row.stream for row in store.read_all()] == ["s1", "s1", "s1", "s2"]

    def test_append_many_with_one_stale_stream_writes_nothing(self, store, clock):
        store.append("s2", NO_STREAM, [new_event(clock)], "cmd-0")
        with pytest.raises(ConcurrencyConflict) as conflict:
            store.append_many(
                [
                    StreamAppend("s1", NO_STREAM, [new_event(clock)]),
                    StreamAppend("s2", NO_STREAM, [new_event(clock)]),
                ],
                "cmd-1",
            )
        assert (conflict.value.stream, conflict.value.actual) == ("s2", 1)
        assert store.stream_version("s1") == 0
        assert store.current_position() == 1
        assert store.command_result("s1", "cmd-1") is None

    def test_append_many_repeated_returns_the_original_results(self, store, clock):
        appends = [
            StreamAppend("s1", NO_STREAM, [new_event(clock)]),
            StreamAppend("s2", NO_STREAM, [new_event(clock)]),
        ]
        original = store.append_many(appends, "cmd-1")
        again = store.append_many(
            [
                StreamAppend("s1", NO_STREAM, [new_event(clock)]),
                StreamAppend("s2", NO_STREAM, [new_event(clock)]),
            ],
            "cmd-1",
        )
        assert again == [dataclasses.replace(r, duplicate=True) for r in original]
        assert store.current_position() == 2
        assert store.command_result("s2", "cmd-1") == again[1]

    def test_append_many_refuses_a_stream_named_twice_and_writes_nothing(self, store, clock):
        with pytest.raises(StoreError, match="twice"):
            store.append_many(
                [
                    StreamAppend("s1", NO_STREAM, [new_event(clock)]),
                    StreamAppend("s1", NO_STREAM, [new_event(clock)]),
                ],
                "cmd-1",
            )
        with pytest.raises(StoreError, match="at least one stream"):
            store.append_many([], "cmd-2")
        assert store.current_position() == 0

    def test_append_many_refuses_a_bad_stream_id_before_writing(self, store, clock):
        with pytest.raises(StoreError, match="stream"):
            store.append_many(
                [
                    StreamAppend("s1", NO_STREAM, [new_event(clock)]),
                    StreamAppend("", NO_STREAM, [new_event(clock)]),
                ],
                "cmd-1",
            )
        assert store.current_position() == 0

    # --- group commit ----------------------------------------------------------------------

    def test_appends_inside_a_group_commit_are_read_back_by_their_thread(self, store, clock):
        with store.group_commit():
            store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
            store.append("s1", 1, [new_event(clock)], "cmd-2")
            assert store.stream_version("s1") == 2
            assert [r.version for r in store.read_stream("s1")] == [1, 2]
        assert store.current_position() == 2

    def test_a_conflict_inside_a_group_commit_spoils_only_its_own_append(self, store, clock):
        with store.group_commit():
            store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
            with pytest.raises(ConcurrencyConflict):
                store.append("s1", NO_STREAM, [new_event(clock)], "cmd-2")
            store.append("s2", NO_STREAM, [new_event(clock)], "cmd-3")
        assert [(r.stream, r.version) for r in store.read_all()] == [("s1", 1), ("s2", 1)]
        assert store.command_result("s1", "cmd-2") is None

    def test_a_stored_event_id_inside_a_group_spoils_only_its_own_append(self, store, clock):
        stored = new_event(clock)
        store.append("s0", NO_STREAM, [stored], "cmd-0")
        with store.group_commit():
            fresh = new_event(clock)
            store.append("s1", NO_STREAM, [fresh], "cmd-1")
            for again in (stored, fresh):  # committed before the group, and written in it
                with pytest.raises(DuplicateEventId):
                    store.append("s2", NO_STREAM, [again], "cmd-2")
            store.append("s3", NO_STREAM, [new_event(clock)], "cmd-3")
        assert [(r.position, r.stream) for r in store.read_all()] == [
            (1, "s0"),
            (2, "s1"),
            (3, "s3"),
        ]
        assert store.command_result("s2", "cmd-2") is None

    def test_a_command_repeated_inside_a_group_returns_its_first_result(self, store, clock):
        with store.group_commit():
            first = store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
            store.append("s2", NO_STREAM, [new_event(clock)], "cmd-2")
            again = store.append("s1", 1, [new_event(clock)], "cmd-1")
        assert again.duplicate
        assert (again.first_position, again.last_version, again.event_ids) == (
            first.first_position,
            first.last_version,
            first.event_ids,
        )
        assert store.current_position() == 2

    # --- refused arguments ----------------------------------------------------------------

    def test_an_empty_event_list_is_refused(self, store):
        with pytest.raises(StoreError, match="at least one event"):
            store.append("s1", NO_STREAM, [], "cmd-1")
        assert store.current_position() == 0

    def test_a_naive_occurred_at_is_refused_and_nothing_is_written(self, store, clock):
        naive = new_event(clock, occurred_at=datetime(2026, 3, 1, 9, 0))
        with pytest.raises(StoreError, match="timezone-aware"):
            store.append("s1", NO_STREAM, [new_event(clock), naive], "cmd-1")
        assert store.current_position() == 0
        assert store.stream_version("s1") == 0
        # The refused command id was not remembered.
        assert store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1").duplicate is False

    def test_an_empty_stream_id_is_refused(self, store, clock):
        with pytest.raises(StoreError, match="stream"):
            store.append("", NO_STREAM, [new_event(clock)], "cmd-1")

    def test_an_expected_version_below_any_version_is_refused(self, store, clock):
        with pytest.raises(StoreError, match="expected_version"):
            store.append("s1", ANY_VERSION - 1, [new_event(clock)], "cmd-1")
        assert store.current_position() == 0

    @pytest.mark.parametrize(
        ("stream", "fields"),
        [("farm 1", {}), ("s1", {"actor": ""}), ("s1", {"causation_id": "not an id!"})],
        ids=["stream-with-space", "empty-actor", "bad-causation-id"],
    )
    def test_an_append_whose_envelope_would_be_invalid_is_refused(
        self, store, clock, stream, fields
    ):
        with pytest.raises(StoreError):
            store.append(stream, NO_STREAM, [new_event(clock, **fields)], "cmd-1")
        assert store.current_position() == 0

    def test_an_event_id_already_stored_is_refused_with_a_store_error(self, store, clock):
        event = new_event(clock)
        store.append("s1", NO_STREAM, [event], "cmd-1")
        with pytest.raises(StoreError):
            store.append("s2", NO_STREAM, [event], "cmd-2")
        assert store.current_position() == 1

    # --- the recorded envelope ------------------------------------------------------------

    def test_recorded_envelope_parses_with_every_field_right(self, store, clock):
        occurred = CLOCK_START - timedelta(seconds=30)
        event = new_event(
            clock,
            "n7",
            status="down",
            reason="maintenance",
            actor="farmer-agent",
            occurred_at=occurred,
            causation_id="cmd-42",
            correlation_id="corr-1",
        )
        store.append("other", NO_STREAM, [new_event(clock)], "cmd-0")
        store.append("node-n7", NO_STREAM, [event], "cmd-42")
        [recorded] = store.read_stream("node-n7")
        envelope = schemas.Envelope.model_validate_json(recorded.envelope_json)
        assert envelope == recorded.envelope()
        assert envelope.id == event.id
        assert envelope.type == "NodeStatusChanged"
        assert envelope.schema_version == 1
        assert (envelope.stream, envelope.version, envelope.position) == ("node-n7", 1, 2)
        assert envelope.occurred_at == occurred
        assert envelope.recorded_at == clock.now()
        assert envelope.causation_id == "cmd-42"
        assert envelope.correlation_id == "corr-1"
        assert envelope.actor == "farmer-agent"
        assert envelope.payload == {
            "node_id": "n7",
            "status": "down",
            "previous": None,
            "reason": "maintenance",
            "changed_at": None,
        }
        assert envelope.decode() == schemas.NodeStatusChanged(
            node_id="n7", status="down", reason="maintenance"
        )

    def test_recorded_at_is_the_clock_time_of_the_append(self, store, clock):
        store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
        later = clock.advance(timedelta(minutes=5))
        store.append("s1", 1, [new_event(clock, occurred_at=CLOCK_START)], "cmd-2")
        first, second = (r.envelope() for r in store.read_stream("s1"))
        assert first.recorded_at == CLOCK_START
        assert second.recorded_at == later
        assert second.occurred_at == CLOCK_START

    def test_occurred_at_in_another_zone_keeps_its_instant(self, store, clock):
        plus_two = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
        store.append("s1", NO_STREAM, [new_event(clock, occurred_at=plus_two)], "cmd-1")
        assert store.read_stream("s1")[0].envelope().occurred_at == CLOCK_START

    def test_envelope_of_a_versioned_event_decodes_to_its_class(self, store, clock):
        payment = schemas.FiatPaymentReceived(
            payment_id="pay_1",
            provider="stripe",
            provider_event_id="evt_1",
            offtaker_id="off_1",
            account_id="acc_1",
            amount=schemas.Money.of("12.50", "USD"),
        )
        new = NewEvent.of(payment, actor="test", occurred_at=clock.now())
        assert (new.schema_version, new.topic) == (2, "hero.payments")
        store.append("payment-pay_1", NO_STREAM, [new], "cmd-1")
        envelope = store.read_stream("payment-pay_1")[0].envelope()
        assert envelope.schema_version == 2
        assert envelope.payload["amount"] == {"amount": "12.50", "currency": "USD"}
        assert envelope.decode() == payment

    # --- concurrent writers ---------------------------------------------------------------

    def test_racing_writers_with_the_same_expected_version_one_wins(self, store, clock):
        won, lost = race_same_expected_version([store], clock, "race", threads=20)
        assert len(won) == 1
        assert len(lost) == 19
        assert all((c.expected, c.actual) == (0, 1) for c in lost)
        assert store.stream_version("race") == 1
        assert store.current_position() == 1
        assert store.read_stream("race")[0].envelope().id == won[0].event_ids[0]

    def test_retrying_writers_leave_a_gap_free_stream(self, store, clock):
        race_with_retries([store], clock, "race", threads=20, appends=10)
        assert_gap_free(store, "race", writers=20, appends=10)


def assert_gap_free(store: EventStore, stream: str, *, writers: int, appends: int) -> None:
    """``stream`` is the whole store and holds each writer's appends once, without gaps."""
    count = writers * appends
    recorded = store.read_stream(stream)
    assert [r.version for r in recorded] == list(range(1, count + 1))
    assert [r.position for r in store.read_all(limit=count + 1)] == list(range(1, count + 1))
    assert store.current_position() == count
    assert store.stream_version(stream) == count
    envelopes = [r.envelope() for r in recorded]
    assert len({e.id for e in envelopes}) == count
    # every writer's every append landed exactly once
    reasons = sorted(e.payload["reason"] for e in envelopes)
    expected = sorted(f"{i}/{n}" for i in range(writers) for n in range(appends))
    assert reasons == expected
