"""The usage worker's fast read of a sample record (``streams.usage.sample_row``): every
record it accepts is one the full decode accepts, with the same window row; what it does not
accept goes the general way (None), so nothing the schema refuses slips through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from hero.log.codec import DecodeError, decode_record, encode_envelope
from hero.log.telemetry import sample_envelope
from hero.readmodels.usage import row_of
from schemas import UtilizationSampled
from streams.usage import sample_row

ID_CHARS = "abcXYZ019._:@-"
FIRST = "aZ09"


def ids(limit: int) -> st.SearchStrategy[str]:
    return st.builds(
        lambda head, tail: head + tail,
        st.sampled_from(FIRST),
        st.text(ID_CHARS, max_size=limit - 1),
    )


def ratios() -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=0, max_value=10**6, places=4, allow_nan=False)


moments = st.datetimes(
    min_value=datetime(1970, 1, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)
)

samples = st.builds(
    UtilizationSampled,
    sample_id=ids(190),  # its envelope id is "sample-" and it, within 200
    workload_id=ids(24),
    replica_id=ids(150),
    contract_id=ids(200),
    node_id=ids(64),
    cpu=ratios(),
    memory=ratios(),
    disk=ratios(),
    network_bytes=st.integers(0, 2**63 - 1),
    requests=st.integers(0, 2**40),
    sampled_at=moments,
    interval_s=st.integers(1, 3600),
)


def encoded(sample: UtilizationSampled, sequence: int, actor: str, recorded: datetime) -> bytes:
    return encode_envelope(sample_envelope(sample, sequence, actor=actor, recorded_at=recorded))


def full_row(value: bytes, partition: int) -> tuple[object, ...] | None:
    """The row the general decode gives, or None when it refuses the record."""
    try:
        message = decode_record(value).message
    except DecodeError:
        return None
    assert isinstance(message, UtilizationSampled)
    return row_of(message, partition)


@settings(max_examples=300, deadline=None)
@given(samples, st.integers(1, 10**12), ids(200), moments, st.integers(0, 63))
def test_a_published_sample_reads_fast_as_the_full_decode_reads_it(
    sample: UtilizationSampled, sequence: int, actor: str, recorded: datetime, partition: int
) -> None:
    value = encoded(sample, sequence, actor, recorded)
    fast = sample_row(value, partition)
    assert fast is not None, value
    assert fast == full_row(value, partition) == row_of(sample, partition)


def _mutations(value: bytes) -> st.SearchStrategy[bytes]:
    at = st.integers(0, len(value) - 1)
    byte = st.integers(0, 255)
    return st.one_of(
        st.builds(lambda i, b: value[:i] + bytes([b]) + value[i + 1 :], at, byte),
        st.builds(lambda i, b: value[:i] + bytes([b]) + value[i:], at, byte),
        st.builds(lambda i: value[:i] + value[i + 1 :], at),
    )


GOOD = encoded(
    UtilizationSampled(
        sample_id="w1-r0-7",
        workload_id="w1",
        replica_id="w1-r0",
        contract_id="c1",
        node_id="n1",
        cpu=Decimal("0.25"),
        memory=Decimal("0.5"),
        disk=Decimal("0.1"),
        network_bytes=123_456,
        sampled_at=datetime(2026, 11, 23, 10, 15, 7, 250, tzinfo=UTC),
        interval_s=15,
    ),
    7,
    "usage",
    datetime(2026, 11, 23, 10, 16, tzinfo=UTC),
)


@settings(max_examples=2000, deadline=None)
@given(_mutations(GOOD))
def test_a_changed_byte_is_refused_fast_or_read_as_the_full_decode_reads_it(value: bytes) -> None:
    fast = sample_row(value, 3)
    if fast is not None:
        assert fast == full_row(value, 3), value


def _replaced(old: str, new: str) -> bytes:
    assert old.encode() in GOOD
    return GOOD.replace(old.encode(), new.encode(), 1)


MALFORMED = {
    "id too long": _replaced('"sample_id":"w1-r0-7"', '"sample_id":"' + "a" * 201 + '"'),
    "workload id too long": _replaced('"workload_id":"w1"', '"workload_id":"' + "w" * 25 + '"'),
    "node id too long": _replaced('"node_id":"n1"', '"node_id":"' + "n" * 65 + '"'),
    "id with a space": _replaced('"contract_id":"c1"', '"contract_id":"c 1"'),
    "id with a newline": _replaced('"contract_id":"c1"', '"contract_id":"c1\\n"'),
    "id starting with a dot": _replaced('"contract_id":"c1"', '"contract_id":".c1"'),
    "empty id": _replaced('"contract_id":"c1"', '"contract_id":""'),
    "negative bytes": _replaced('"network_bytes":123456', '"network_bytes":-1'),
    "interval past an hour": _replaced('"interval_s":15', '"interval_s":3601'),
    "interval zero": _replaced('"interval_s":15', '"interval_s":0'),
    "negative cpu": _replaced('"cpu":"0.25"', '"cpu":"-0.25"'),
    "not a real day": _replaced('"sampled_at":"2026-11-23', '"sampled_at":"2026-02-30'),
    "hour 24": _replaced('"sampled_at":"2026-11-23T10', '"sampled_at":"2026-11-23T24'),
    "minute 60": _replaced("T10:15:07", "T10:60:07"),
    "naive time": _replaced(
        '"sampled_at":"2026-11-23T10:15:07.000250Z"', '"sampled_at":"2026-11-23T10:15:07"'
    ),
    "other schema version": _replaced('"schema_version":1', '"schema_version":2'),
    "other type": _replaced('"type":"UtilizationSampled"', '"type":"UsageRecorded"'),
    "extra payload key": _replaced('"interval_s":15}', '"interval_s":15,"x":1}'),
    "extra envelope key": _replaced('"actor":"usage"', '"actor":"usage","x":1'),
    "version zero": _replaced('"version":7', '"version":0'),
    "trailing newline": GOOD + b"\n",
}


def test_malformed_variants_are_left_to_the_full_decode() -> None:
    for name, value in MALFORMED.items():
        assert sample_row(value, 0) is None, name


def test_what_the_fast_read_leaves_is_still_read_right_the_general_way() -> None:
    """Forms it leaves (an offset, a spaced JSON) are valid: the general way reads them."""
    offset = _replaced("10:15:07.000250Z", "11:15:07.000250+01:00")
    spaced = GOOD.replace(b'","', b'", "', 1)
    for value in (offset, spaced):
        assert sample_row(value, 0) is None
        assert full_row(value, 0) == sample_row(GOOD, 0)


def test_an_hour_before_1970_goes_the_general_way() -> None:
    early = _replaced('"sampled_at":"2026-11-23', '"sampled_at":"1969-12-31')
    assert sample_row(early, 0) is None
    row = full_row(early, 0)
    assert row is not None
    assert row[2] == int(datetime(1969, 12, 31, 10, tzinfo=UTC).timestamp())
    assert timedelta(seconds=row[3] - row[2]) < timedelta(hours=1)
