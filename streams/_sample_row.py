"""A sample record read straight into the numbers its window needs, without a model.

The usage worker reads hundreds of thousands of samples a second; validating each with
pydantic costs more than Kafka's own fetch of it. Samples arrive in one canonical form, the
bytes ``encode_envelope(sample_envelope(...))`` writes: keys in the models' order, no
whitespace, UTC times ending in ``Z``, decimals as strings. ``sample_row`` accepts that form
only, with every id, name and limit checked as the schemas check them (whole-field matches
of the id pattern and its length limit, each number's bounds, each time a real UTC moment),
and gives the row the windows need. Anything else (another key order, an escape, a time
with an offset, a field beyond its limit) gives None, and the caller decodes the record the
general way, which accepts or refuses it and names what is wrong. tests/unit/
test_sample_row.py checks that every record this accepts is one the full decode accepts,
with the same values.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hero.readmodels.usage import SampleRow
from schemas import REGISTRY
from schemas.ids import ID_MAX, NODE_ID_MAX, WORKLOAD_ID_MAX

__all__ = ["sample_row"]

_ENTRY = REGISTRY.entry("UtilizationSampled")
_INTERVAL_MAX = 3600  # UtilizationSampled.interval_s: le=3600


def _id(limit: int) -> bytes:
    # The id pattern ^[A-Za-z0-9][A-Za-z0-9._:@-]*$ within its length limit; none of its
    # characters is escaped in JSON, so the bytes are the id. Possessive (``+``) quantifiers
    # everywhere: no field's characters can be the next one's, so backtracking only costs.
    return rb"[A-Za-z0-9][A-Za-z0-9._:@-]{0,%d}+" % (limit - 1)


# A time as pydantic writes a UTC one: its date and hour (checked as a real date below), then
# minutes and seconds (0-59 each) and up to 6 fraction digits, and Z.
_TIME = rb'"(\d{4}-\d{2}-\d{2}T\d{2}):([0-5]\d:[0-5]\d)(?:\.\d{1,6}+)?+Z"'
_HOUR_TIME = rb'"(\d{4}-\d{2}-\d{2}T\d{2}):[0-5]\d:[0-5]\d(?:\.\d{1,6}+)?+Z"'  # its hour checked
_RATIO = rb'"(?:0|[1-9]\d{0,30}+)(?:\.\d{1,30}+)?+"'  # a Decimal >= 0, written as a string
_COUNT = rb"(0|[1-9]\d{0,18}+)"  # an int >= 0 of up to 19 digits (a 64-bit one)
_POSITIVE = rb"[1-9]\d{0,18}+"
_OPTIONAL_ID = rb'(?:null|"' + _id(ID_MAX) + rb'")'

_CANONICAL = re.compile(
    rb'\{"id":"' + _id(ID_MAX) + rb'",'
    rb'"type":"' + re.escape(_ENTRY.type.encode()) + rb'",'
    rb'"schema_version":' + str(_ENTRY.version).encode() + rb","
    rb'"stream":"' + _id(ID_MAX) + rb'",'
    rb'"version":' + _POSITIVE + rb","
    rb'"position":' + _POSITIVE + rb","
    rb'"occurred_at":' + _HOUR_TIME + rb","
    rb'"recorded_at":' + _HOUR_TIME + rb","
    rb'"causation_id":' + _OPTIONAL_ID + rb","
    rb'"correlation_id":' + _OPTIONAL_ID + rb","
    # The actor is a name: the fast path takes the id characters only (no escapes, spaces
    # or control characters to judge), the rest go the general way.
    rb'"actor":"[A-Za-z0-9._:@-]{1,200}+",'
    rb'"payload":\{'
    rb'"sample_id":"(' + _id(ID_MAX) + rb')",'
    rb'"workload_id":"' + _id(WORKLOAD_ID_MAX) + rb'",'
    rb'"replica_id":"' + _id(ID_MAX) + rb'",'
    rb'"contract_id":"(' + _id(ID_MAX) + rb')",'
    rb'"node_id":"' + _id(NODE_ID_MAX) + rb'",'
    rb'"cpu":' + _RATIO + rb","
    rb'"memory":' + _RATIO + rb","
    rb'"disk":' + _RATIO + rb","
    rb'"network_bytes":' + _COUNT + rb","
    rb'"requests":(?:0|[1-9]\d{0,18}+),'
    rb'"sampled_at":' + _TIME + rb","
    rb'"interval_s":([1-9]\d{0,3}+)'
    rb"\}\}"
)

_hours: dict[bytes, int] = {}
# ``MM:SS`` (each 00-59, as the pattern allows) to its seconds into the hour.
_SECONDS = {b"%02d:%02d" % (m, s): m * 60 + s for m in range(60) for s in range(60)}
_HOURS_KEPT = 4096


def _hour(text: bytes) -> int | None:
    """The epoch of ``YYYY-MM-DDTHH`` in UTC, if it is a real hour at or after 1970 (a time
    before has a negative epoch, whose rounding the general path does); cached, as a batch's
    samples share a few hours."""
    found = _hours.get(text)
    if found is not None:
        return found
    try:
        moment = datetime(
            int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), tzinfo=UTC
        )
    except ValueError:
        return None
    epoch = int(moment.timestamp())
    if epoch < 0:
        return None
    if len(_hours) >= _HOURS_KEPT:
        _hours.clear()
    _hours[text] = epoch
    return epoch


def sample_row(value: bytes, partition: int) -> SampleRow | None:
    """The record's window row if it is a sample in the canonical form, else None."""
    match = _CANONICAL.fullmatch(value)
    if match is None:
        return None
    occurred, recorded, sample_id, contract_id, network_bytes, hour, within, interval = (
        match.groups()
    )
    hours = _hours
    start = hours.get(hour)
    if start is None:
        start = _hour(hour)
    if (
        start is None
        or (occurred not in hours and _hour(occurred) is None)
        or (recorded not in hours and _hour(recorded) is None)
    ):
        return None
    seconds = int(interval)
    if seconds > _INTERVAL_MAX:
        return None
    return (
        sample_id.decode(),
        contract_id.decode(),
        start,
        start + _SECONDS[within],
        seconds,
        int(network_bytes),
        partition,
    )
