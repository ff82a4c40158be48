"""The Kafka record codec, and the memory of applied positions."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

import schemas
from hero.log.codec import Decoded, DecodeError, DecodeFailure, decode_record, encode_envelope
from hero.log.positions import MemoryAppliedPositions
from hero.store._planning import plan_append
from hero.store.port import NO_STREAM, NewEvent

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _record(message: schemas.Event, *, stream: str = "node-n1", position: int = 1) -> bytes:
    new = NewEvent.of(message, actor="test", occurred_at=NOW, correlation_id="corr-1")
    rows, _ = plan_append(stream, NO_STREAM, 0, position, [new], NOW)
    return rows[0].envelope_json.encode()


def _good() -> bytes:
    return _record(schemas.NodeStatusChanged(node_id="n1", status="up"))


def _edit(record: bytes, **changes: object) -> bytes:
    data = json.loads(record)
    data.update(changes)
    return json.dumps(data).encode()


def _failure_of(value: bytes | None) -> DecodeFailure:
    with pytest.raises(DecodeError) as raised:
        decode_record(value)
    assert raised.value.detail
    assert str(raised.value).startswith(raised.value.failure.value)
    return raised.value.failure


# --- good records -------------------------------------------------------------------------


def test_a_good_record_decodes_to_envelope_and_message():
    decoded = decode_record(_good())
    assert isinstance(decoded, Decoded)
    assert decoded.message == schemas.NodeStatusChanged(node_id="n1", status="up")
    assert decoded.envelope.type == "NodeStatusChanged"
    assert (decoded.envelope.stream, decoded.envelope.version) == ("node-n1", 1)
    assert decoded.envelope.position == 1
    assert decoded.envelope.correlation_id == "corr-1"


def test_encode_then_decode_round_trips():
    decoded = decode_record(_good())
    again = decode_record(encode_envelope(decoded.envelope))
    assert again == decoded


def test_money_survives_the_round_trip_exactly():
    payment = schemas.FiatPaymentReceived(
        payment_id="pay_1",
        provider="stripe",
        provider_event_id="evt_1",
        offtaker_id="off_1",
        account_id="acc_1",
        amount=schemas.Money.of("0.1000001", "USD"),
    )
    decoded = decode_record(_record(payment, stream="payment-pay_1"))
    assert decoded.message == payment
    assert decoded.envelope.schema_version == 2


def test_an_old_version_is_upcast_while_decoding():
    v1_payload = {
        "payment_id": "pay_1",
        "provider": "stripe",
        "provider_event_id": "evt_1",
        "offtaker_id": "off_1",
        "account_id": "acc_1",
        "amount": "7.25",
        "currency": "EUR",
    }
    record = _edit(_good(), type="FiatPaymentReceived", schema_version=1, payload=v1_payload)
    decoded = decode_record(record)
    assert isinstance(decoded.message, schemas.FiatPaymentReceived)
    assert decoded.message.amount == schemas.Money.of("7.25", "EUR")
    assert decoded.envelope.schema_version == 1  # the envelope says what was stored


# --- failures -----------------------------------------------------------------------------


def test_no_value_is_undecodable():
    assert _failure_of(None) is DecodeFailure.UNDECODABLE


def test_garbage_bytes_are_undecodable():
    assert _failure_of(b"\x00garbage{") is DecodeFailure.UNDECODABLE


def test_non_utf8_bytes_are_undecodable():
    with pytest.raises(DecodeError, match="not UTF-8") as raised:
        decode_record(b"\xff\xfe\x00{")
    assert raised.value.failure is DecodeFailure.UNDECODABLE


@pytest.mark.parametrize("value", [b"[1, 2]", b'"text"', b"null", b"42"])
def test_json_that_is_not_an_object_is_undecodable(value):
    assert _failure_of(value) is DecodeFailure.UNDECODABLE


def test_a_json_object_that_is_not_an_envelope_is_an_invalid_envelope():
    with pytest.raises(DecodeError) as raised:
        decode_record(b'{"hello": "world"}')
    assert raised.value.failure is DecodeFailure.INVALID_ENVELOPE
    assert "id: Field required" in raised.value.detail


@pytest.mark.parametrize(
    "changes",
    [
        {"position": 0},
        {"schema_version": 0},
        {"stream": "has space"},
        {"occurred_at": "2026-01-01T12:00:00"},  # naive
        {"payload": [1, 2]},
        {"surprise": 1},
    ],
    ids=["position-0", "version-0", "bad-stream", "naive-time", "payload-list", "extra-field"],
)
def test_an_envelope_breaking_its_own_schema_is_invalid(changes):
    assert _failure_of(_edit(_good(), **changes)) is DecodeFailure.INVALID_ENVELOPE


def test_an_unknown_type_is_reported_as_such():
    with pytest.raises(DecodeError, match="NoSuchEvent") as raised:
        decode_record(_edit(_good(), type="NoSuchEvent"))
    assert raised.value.failure is DecodeFailure.UNKNOWN_TYPE


def test_a_payload_violating_its_schema_is_schema_invalid():
    record = _edit(_good(), payload={"node_id": "n1", "status": "sideways"})
    with pytest.raises(DecodeError, match="status") as raised:
        decode_record(record)
    assert raised.value.failure is DecodeFailure.SCHEMA_INVALID


def test_a_too_new_schema_version_is_unsupported():
    with pytest.raises(DecodeError, match="v2 is newer") as raised:
        decode_record(_edit(_good(), schema_version=2))
    assert raised.value.failure is DecodeFailure.UNSUPPORTED_VERSION


def test_a_malformed_old_version_is_a_decode_error_not_a_crash():
    v1_without_currency = {
        "payment_id": "pay_1",
        "provider": "stripe",
        "provider_event_id": "evt_1",
        "offtaker_id": "off_1",
        "account_id": "acc_1",
        "amount": "7.25",
    }
    record = _edit(
        _good(), type="FiatPaymentReceived", schema_version=1, payload=v1_without_currency
    )
    assert _failure_of(record) is DecodeFailure.SCHEMA_INVALID


# --- MemoryAppliedPositions ---------------------------------------------------------------


def _envelope(stream: str, version: int, position: int) -> schemas.Envelope:
    return schemas.Envelope(
        id=f"evt_{position}",
        type="NodeStatusChanged",
        schema_version=1,
        stream=stream,
        version=version,
        position=position,
        occurred_at=NOW,
        recorded_at=NOW,
        actor="test",
        payload={"node_id": "n1", "status": "up"},
    )


async def test_nothing_is_applied_at_first():
    applied = MemoryAppliedPositions()
    assert await applied.last_position() == 0
    assert await applied.applied_version("s1") == 0
    assert not await applied.is_applied(_envelope("s1", 1, 1))


async def test_mark_applied_covers_that_version_and_earlier_ones():
    applied = MemoryAppliedPositions()
    await applied.mark_applied(_envelope("s1", 2, 5))
    assert await applied.applied_version("s1") == 2
    assert await applied.is_applied(_envelope("s1", 1, 3))
    assert await applied.is_applied(_envelope("s1", 2, 5))
    assert not await applied.is_applied(_envelope("s1", 3, 9))
    assert not await applied.is_applied(_envelope("s2", 1, 6))
    assert await applied.last_position() == 5


async def test_versions_and_last_position_never_go_back():
    applied = MemoryAppliedPositions()
    await applied.mark_applied(_envelope("s1", 3, 10))
    await applied.mark_applied(_envelope("s1", 1, 2))  # a redelivered old event
    assert await applied.applied_version("s1") == 3
    assert await applied.last_position() == 10
    await applied.mark_applied(_envelope("s2", 1, 11))
    assert await applied.last_position() == 11
    assert await applied.applied_version("s2") == 1
    assert await applied.applied_version("s1") == 3
