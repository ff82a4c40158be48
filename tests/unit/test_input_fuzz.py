"""Hypothesis fuzz of two doors data comes in by: the envelope decoders, and the payloads
of ``hero events append``.

- ``decode_record``: any bytes, any JSON, any edit of a good envelope -> a typed envelope
  (which encodes back to itself) or a :class:`DecodeError` naming what is wrong; never another
  exception.
- ``Envelope.decode``: any type name, schema version and payload edit in a valid envelope ->
  the registry's event class for that type (whose own payload decodes back to it) or an
  :class:`UndecodableEvent` with a known reason code; never another exception.
- ``hero events append``: any JSON payload for an event type, run through the CLI itself on a
  store of its own -> written, and read back as the event that was validated; or refused
  (exit 2) naming the fields, with nothing written.
"""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import schemas
from hero.cli import app as hero_app
from hero.config import HeroSettings
from hero.log.codec import DecodeError, decode_record, encode_envelope
from hero.store import NO_STREAM, EventStore, NewEvent, open_store
from hero.store._planning import plan_append
from schemas import REGISTRY, Envelope, Grid, Money, UndecodableEvent, UndecodableReason

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON as a client could send it: nested, with unicode, big and odd numbers.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)

GOOD_EVENTS: list[schemas.Event] = [
    schemas.NodeStatusChanged(node_id="n1", status="up", reason="fuzz"),
    schemas.FarmRegistered(
        farm_id="f1", name="Farm one", grid=Grid.GRID4, country="BE", region="europe"
    ),
    schemas.FarmerPolicySet(
        farm_id="f1", policy=schemas.FarmerPolicy(price_cu_hour=Money.of("0.02", "USD"))
    ),
    schemas.OfftakerMandateSet(
        offtaker_id="o1",
        mandate=schemas.Mandate(
            workloads=[
                schemas.WorkloadSpec(
                    workload_id="web",
                    resources=schemas.Resources.from_gb(cru=1, mru_gb=2, sru_gb=10),
                    replicas=2,
                    min_uptime_pct=Decimal("99.5"),
                )
            ],
            budget_month=Money.of("100", "USD"),
            max_price_cu_hour=Money.of("0.05", "USD"),
        ),
    ),
]


def _record(event: schemas.Event) -> bytes:
    new = NewEvent.of(event, actor="fuzz", occurred_at=NOW, correlation_id="corr-1")
    rows, _ = plan_append("stream-1", NO_STREAM, 0, 1, [new], NOW)
    return rows[0].envelope_json.encode()


GOOD_RECORDS = [_record(event) for event in GOOD_EVENTS]


def _edited(base: Any, path: list[str | int], value: Any) -> Any:
    """``base`` with the value at ``path`` (as far as it leads) replaced by ``value``."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(base, dict):
        key = head if isinstance(head, str) else (sorted(base)[head % len(base)] if base else "x")
        return {**base, key: _edited(base.get(key), rest, value)}
    if isinstance(base, list) and base:
        index = head if isinstance(head, int) else 0
        copy = list(base)
        copy[index % len(copy)] = _edited(copy[index % len(copy)], rest, value)
        return copy
    return value


paths = st.lists(st.integers(0, 20) | st.sampled_from(["payload", "type", "amount"]), max_size=4)


def _decodes_or_says_why(value: bytes | None) -> None:
    try:
        decoded = decode_record(value)
    except DecodeError as error:
        refused: DecodeError | None = error
    else:
        refused = None
    if refused is not None:
        assert refused.detail, "a decode error names what is wrong"
        assert str(refused).startswith(refused.failure.value)
        return
    again = decode_record(encode_envelope(decoded.envelope))
    assert again.envelope == decoded.envelope
    assert type(again.message) is type(decoded.message)


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_fail_with_a_decode_error(value: bytes) -> None:
    _decodes_or_says_why(value)


@FUZZ
@given(json_values)
def test_any_json_decodes_or_fails_with_a_decode_error(value: Any) -> None:
    _decodes_or_says_why(json.dumps(value).encode())


@FUZZ
@given(st.sampled_from(GOOD_RECORDS), paths, json_values)
def test_an_edited_envelope_decodes_or_fails_with_a_decode_error(
    record: bytes, path: list[str | int], value: Any
) -> None:
    _decodes_or_says_why(json.dumps(_edited(json.loads(record), path, value)).encode())


type_names = st.sampled_from([entry.type for entry in REGISTRY.entries()]) | st.from_regex(
    r"[A-Za-z][A-Za-z0-9_.-]{0,20}", fullmatch=True
)


@FUZZ
@given(
    st.sampled_from(GOOD_RECORDS),
    st.none() | type_names,
    st.none() | st.integers(1, 4),
    st.lists(st.integers(0, 20) | st.sampled_from(["amount", "status", "policy"]), max_size=3),
    json_values,
)
def test_an_edited_envelope_decodes_to_its_event_class_or_says_why(
    record: bytes,
    type_name: str | None,
    version: int | None,
    path: list[str | int],
    value: Any,
) -> None:
    good = Envelope.model_validate_json(record)
    payload = _edited(good.payload, path, value) if path else good.payload
    edits: dict[str, Any] = {"payload": payload}
    if type_name is not None:
        edits["type"] = type_name
    if version is not None:
        edits["schema_version"] = version
    envelope = good.model_copy(update=edits)
    try:
        decoded = envelope.decode()
    except UndecodableEvent as error:
        refused: UndecodableEvent | None = error
    else:
        refused = None
    if refused is not None:
        event(f"refused: {refused.reason}")
        assert refused.reason in typing.get_args(UndecodableReason)
        assert refused.detail, "an undecodable envelope names what is wrong"
        return
    event("decoded")
    entry = REGISTRY.entry(envelope.type)
    assert entry.kind == "event"
    assert type(decoded) is entry.model
    again = envelope.model_copy(
        update={"payload": decoded.model_dump(mode="json"), "schema_version": entry.version}
    )
    assert again.decode() == decoded


def test_the_good_records_decode() -> None:
    assert [type(decode_record(r).message) for r in GOOD_RECORDS] == [type(e) for e in GOOD_EVENTS]


# --- hero events append ------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("events-append-fuzz")


def _store(data_dir: Path) -> EventStore:
    return open_store(HeroSettings(data_dir=data_dir).effective_store_url)


def _append(data_dir: Path, stream: str, type_name: str, payload: Any) -> tuple[int, str]:
    args = ["events", "append", stream, type_name, "--payload", json.dumps(payload)]
    result = CliRunner().invoke(hero_app, [*args, "--data-dir", str(data_dir), "--json"])
    return result.exit_code, result.output


payloads = st.sampled_from(GOOD_EVENTS).flatmap(
    lambda event: st.tuples(
        st.just(event.TYPE),
        st.one_of(
            st.just(event.model_dump(mode="json")),
            st.builds(_edited, st.just(event.model_dump(mode="json")), paths, json_values),
            st.dictionaries(st.text(max_size=12), json_values, max_size=4),
        ),
    )
)


@settings(FUZZ, max_examples=60)
@given(payloads, st.integers(0, 10**9))
def test_events_append_writes_a_valid_event_or_refuses_naming_fields(
    data_dir: Path, typed: tuple[str, Any], n: int
) -> None:
    type_name, payload = typed
    stream = f"fuzz-{n}"
    store = _store(data_dir)
    try:
        before = store.current_position()
    finally:
        store.close()
    code, output = _append(data_dir, stream, type_name, payload)
    store = _store(data_dir)
    try:
        rows = store.read_all(before + 1, 10)
    finally:
        store.close()
    event("written" if code == 0 else "refused")
    if code == 0:
        expected = REGISTRY.validate(type_name, payload)
        [row] = [r for r in rows if r.envelope().stream == stream][-1:]
        assert row.envelope().decode() == expected
    else:
        assert code == 2, output
        assert "nothing was written" in output or "error:" in output, output
        assert not [r for r in rows if r.envelope().stream == stream]


def test_events_append_writes_a_good_payload_and_refuses_a_float_amount(data_dir: Path) -> None:
    """Both ends of the property above, pinned: the fuzz sees both."""
    good = GOOD_EVENTS[2].model_dump(mode="json")
    assert _append(data_dir, "pinned-1", "FarmerPolicySet", good)[0] == 0
    bad = _edited(good, ["policy", "price_cu_hour", "amount"], 0.02)
    code, output = _append(data_dir, "pinned-2", "FarmerPolicySet", bad)
    assert code == 2
    assert "policy.price_cu_hour.amount" in output
    assert "nothing was written" in output
    store = _store(data_dir)
    try:
        assert store.read_stream("pinned-2") == []
    finally:
        store.close()
