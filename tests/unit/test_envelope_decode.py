"""``Envelope.decode()``: a recorded envelope in, its typed event out, or a reason code.

What followers rely on: the registry's class for the envelope's type, upcast from an older
schema version and validated; and for anything else one error type, :class:`UndecodableEvent`,
whose ``reason`` is the code a follower records when it skips the row (``hero events skipped``).
"""

from __future__ import annotations

import typing
from datetime import UTC, datetime
from typing import Any

import pytest

from hero.store import PoisonRow, RecordedEvent, decode_event
from schemas import (
    Envelope,
    Event,
    FiatPaymentReceived,
    InvalidPayload,
    Money,
    NodeStatusChanged,
    SchemaVersionError,
    UndecodableEvent,
    UndecodableReason,
    UnknownMessageType,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REASONS = set(typing.get_args(UndecodableReason))


def _envelope(type_name: str, payload: dict[str, Any], schema_version: int = 1) -> Envelope:
    return Envelope(
        id="evt_1",
        type=type_name,
        schema_version=schema_version,
        stream="node-n1",
        version=1,
        position=1,
        occurred_at=NOW,
        recorded_at=NOW,
        actor="test",
        payload=payload,
    )


def _fiat_v1_payload() -> dict[str, Any]:
    return {
        "payment_id": "pay_1",
        "provider": "stripe",
        "provider_event_id": "evt_stripe_1",
        "offtaker_id": "off_1",
        "account_id": "acc_1",
        "amount": "12.50",
        "currency": "USD",
    }


def _status_payload() -> dict[str, Any]:
    return {"node_id": "n1", "status": "up", "reason": "boot"}


def test_an_envelope_decodes_to_its_registered_event_class() -> None:
    event = _envelope("NodeStatusChanged", _status_payload()).decode()
    assert type(event) is NodeStatusChanged
    assert event == NodeStatusChanged(node_id="n1", status="up", reason="boot")


def test_an_older_schema_version_is_upcast_to_the_current_class() -> None:
    event = _envelope("FiatPaymentReceived", _fiat_v1_payload(), schema_version=1).decode()
    assert isinstance(event, FiatPaymentReceived)
    assert event.amount == Money.of("12.50", "USD")


def test_an_event_decodes_back_from_its_own_payload() -> None:
    event = NodeStatusChanged(node_id="n2", status="down", reason="maintenance")
    payload = event.model_dump(mode="json")
    assert _envelope("NodeStatusChanged", payload, event.SCHEMA_VERSION).decode() == event


@pytest.mark.parametrize(
    ("type_name", "payload", "version", "reason", "cause", "words"),
    [
        ("NoSuchEvent", {}, 1, "unknown_type", UnknownMessageType, "NoSuchEvent"),
        ("NodeStatusChanged", _status_payload(), 9, "unsupported_version", SchemaVersionError, "9"),
        (
            "NodeStatusChanged",
            {**_status_payload(), "status": "exploded"},
            1,
            "schema_invalid",
            InvalidPayload,
            "status",
        ),
        (
            "FiatPaymentReceived",
            {k: v for k, v in _fiat_v1_payload().items() if k != "currency"},
            1,
            "schema_invalid",
            InvalidPayload,
            "currency",
        ),
        ("ChangeNodeStatus", _status_payload(), 1, "not_an_event", type(None), "command"),
    ],
)
def test_an_undecodable_envelope_raises_one_error_type_with_its_reason(
    type_name: str,
    payload: dict[str, Any],
    version: int,
    reason: str,
    cause: type[BaseException],
    words: str,
) -> None:
    with pytest.raises(UndecodableEvent) as caught:
        _envelope(type_name, payload, version).decode()
    assert caught.value.reason == reason
    assert caught.value.reason in REASONS
    assert words in caught.value.detail
    assert str(caught.value).startswith(f"{reason}: ")
    assert isinstance(caught.value.__cause__, cause)


def test_a_command_still_decodes_as_a_message_for_the_kafka_codec() -> None:
    payload = {**_status_payload(), "command_id": "cmd-1"}
    message = _envelope("ChangeNodeStatus", payload).decode_message()
    assert type(message).__name__ == "ChangeNodeStatus"
    assert not isinstance(message, Event)


def test_a_follower_skips_an_undecodable_row_under_the_same_reason() -> None:
    envelope = _envelope("ChangeNodeStatus", {**_status_payload(), "command_id": "cmd-1"})
    row = RecordedEvent(
        position=1,
        stream="node-n1",
        version=1,
        type="ChangeNodeStatus",
        topic="hero.commands",
        envelope_json=envelope.model_dump_json(),
    )
    with pytest.raises(PoisonRow) as caught:
        decode_event(row)
    assert caught.value.reason == "not_an_event"
    assert "ChangeNodeStatus" in caught.value.detail
