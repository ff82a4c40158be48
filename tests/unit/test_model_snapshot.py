"""The market state's snapshot codec (hero.model.snapshot): a snapshot at any cut of the golden
history plus the tail equals the whole history folded; a corrupt, truncated, foreign or
wrong-shaped body is refused with a reason, never loaded; the state's shape is pinned to the
format version."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import deque
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import cache

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hero.model import LAST_TRANSFERS, MarketState, apply_all
from hero.model.codec import codec_for, describe
from hero.model.snapshot import (
    MODEL_FINGERPRINT,
    MODEL_SCHEMA_VERSION,
    SnapshotUnreadable,
    decode_state,
    encode_state,
    frame,
    state_fingerprint,
)
from hero.readmodels.projections import PROJECTIONS, fold
from tests.unit.test_golden_history import _history

History = tuple


@cache
def _full() -> MarketState:
    return apply_all(_history())


def _restored(cut: int) -> MarketState:
    """The state folded to ``cut``, through a snapshot, then the tail folded on it."""
    history = _history()
    body = encode_state(apply_all(history[:cut]))
    return apply_all(history[cut:], decode_state(body))


def test_the_state_shape_is_pinned_to_the_format_version():
    # A field added to (or changed in) the market state, or in anything it holds, changes
    # the fingerprint: bump MODEL_SCHEMA_VERSION and pin the new fingerprint with it, so old
    # snapshots are ignored (a full replay) instead of loaded into the new shape.
    assert (MODEL_SCHEMA_VERSION, state_fingerprint()) == (MODEL_SCHEMA_VERSION, MODEL_FINGERPRINT)


def test_a_field_added_to_a_dataclass_changes_its_description():
    @dataclasses.dataclass
    class Before:
        a: int

    @dataclasses.dataclass
    class After:
        a: int
        b: str = ""

    After.__qualname__ = Before.__qualname__
    assert describe(Before) != describe(After)


def test_the_golden_state_round_trips_exactly():
    state = _full()
    assert decode_state(encode_state(state)) == state


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=0, max_value=len(_history())))
def test_a_snapshot_at_any_cut_plus_the_tail_equals_the_whole_history(cut):
    assert _restored(cut) == _full()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=0, max_value=len(_history())), name=st.sampled_from(
    sorted(PROJECTIONS)))  # fmt: skip
def test_the_projections_rendered_after_a_snapshot_equal_the_whole_history(cut, name):
    history = _history()
    whole = fold(name, history).docs
    resumed = fold(name, history[:cut])
    _ = resumed.docs  # written before the restart: in Valkey, kept
    resumed.model = decode_state(encode_state(resumed.model))
    for envelope, event in history[cut:]:
        resumed.apply(envelope, event)
    assert resumed.docs == whole


def test_exact_values_round_trip():
    state = MarketState()
    state.position = 7
    at = datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    state.early_cancellations = {
        "c1": ("late", at),
        "c2": ("utc", datetime(2026, 1, 1, tzinfo=UTC)),
    }
    state.unsound_transfers = {"t": "x"}
    golden = _full()
    state.accounts = dict(golden.accounts)
    state.books = dict(golden.books)
    book = next(iter(state.books.values()))
    odd = [Decimal("1.50"), Decimal("-0"), Decimal("1E+3"), Decimal("0.0000001")]
    for i, amount in enumerate(odd):
        account = next(iter(state.accounts.values()))
        state.accounts[f"odd-{i}"] = dataclasses.replace(account, account_id=f"odd-{i}",
                                                         balance=amount)  # fmt: skip
    back = decode_state(encode_state(state))
    assert back == state
    assert [str(back.accounts[f"odd-{i}"].balance) for i in range(4)] == [str(d) for d in odd]
    assert back.early_cancellations["c1"][1].utcoffset() == timedelta(hours=2)
    assert back.early_cancellations["c1"][1].microsecond == 123456
    restored_book = back.books[next(iter(state.books))]
    assert restored_book.lines.maxlen == book.lines.maxlen == LAST_TRANSFERS
    assert isinstance(restored_book.lines, deque)
    nego = next(iter(golden.negotiations.values()))
    copy = decode_state(encode_state(golden)).negotiations[nego.negotiation_id]
    assert type(copy.invited) is frozenset
    assert type(copy.farms) is set
    assert type(copy.grids) is tuple
    assert copy == nego


# -- bodies that must not load ------------------------------------------------------------


@cache
def _body() -> bytes:
    return encode_state(_full())


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_a_flipped_byte_anywhere_is_refused(data):
    body = bytearray(_body())
    at = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    body[at] ^= data.draw(st.integers(min_value=1, max_value=255))
    with pytest.raises(SnapshotUnreadable):
        decode_state(bytes(body))


@pytest.mark.parametrize("keep", [0, 3, 8, 40, 1000, -1])
def test_a_truncated_body_is_refused(keep):
    with pytest.raises(SnapshotUnreadable, match="truncated"):
        decode_state(_body()[:keep])


@pytest.mark.parametrize("garbage", [b"", b"\x00" * 100, b"{}", b"HMS1" + b"\xff" * 60,
                                     orjson.dumps({"position": 1})])  # fmt: skip
def test_garbage_is_refused(garbage):
    with pytest.raises(SnapshotUnreadable):
        decode_state(garbage)


def test_another_format_version_is_refused_naming_both():
    body = encode_state(MarketState())
    other = body[:4] + (MODEL_SCHEMA_VERSION + 1).to_bytes(4, "big") + body[8:]
    with pytest.raises(SnapshotUnreadable, match=f"version {MODEL_SCHEMA_VERSION + 1}"):
        decode_state(other)


@pytest.mark.parametrize(
    "tree",
    [[], [1], "state", None, {"position": 1}, [1, {"f": "not a farm"}] + [{}] * 21],
)
def test_a_well_framed_body_of_the_wrong_shape_is_refused(tree):
    with pytest.raises(SnapshotUnreadable, match="does not decode"):
        decode_state(frame(orjson.dumps(tree), MODEL_SCHEMA_VERSION))


def test_a_wrong_scalar_deep_inside_is_refused():
    tree = orjson.loads(_body()[40:])
    fields = [f.name for f in dataclasses.fields(MarketState)]
    contracts = tree[fields.index("contracts")]
    first = next(iter(contracts))
    contracts[first][0] = 12  # a contract id that is a number
    with pytest.raises(SnapshotUnreadable, match="expected str"):
        decode_state(frame(orjson.dumps(tree), MODEL_SCHEMA_VERSION))


def test_the_payload_is_the_standard_librarys_compact_json_of_the_tree():
    # The encoder writes JSON in Rust: the bytes must stay what json.dumps wrote before.
    state = _full()
    tree = codec_for(MarketState).encode(state)
    expected = json.dumps(tree, separators=(",", ":"), ensure_ascii=False).encode()
    assert encode_state(state)[40:] == expected


def test_a_type_the_codec_has_no_rule_for_is_refused_when_compiled():
    @dataclasses.dataclass
    class Odd:
        value: complex

    with pytest.raises(TypeError, match="no rule for <class 'complex'>"):
        codec_for(Odd)


def test_encoding_and_decoding_the_golden_state_is_fast(capsys):
    state, body = _full(), _body()
    started = time.perf_counter()
    encode_state(state)
    encoded = time.perf_counter() - started
    started = time.perf_counter()
    decode_state(body)
    decoded = time.perf_counter() - started
    started = time.perf_counter()
    apply_all(_history())
    folded = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nsnapshot of the golden state ({len(_history())} events, {len(body)} bytes): "
              f"encode {encoded * 1000:.1f} ms, decode {decoded * 1000:.1f} ms; "
              f"folding its decoded events {folded * 1000:.1f} ms")  # fmt: skip
    assert decoded < 1.0
    assert encoded < 1.0
