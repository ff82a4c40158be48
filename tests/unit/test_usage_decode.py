"""The usage worker's decoding: one validation pass for a sample, and for every record the
message or the failure ``decode_record`` gives (so dead letters keep their reasons)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from hero.log.codec import DecodeError, decode_record, encode_envelope
from hero.log.telemetry import sample_envelope
from schemas import NodeStatusChanged, UsageRecorded, UtilizationSampled
from streams.usage import decode_sample

NOW = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)


def _sample() -> UtilizationSampled:
    return UtilizationSampled(
        sample_id="w1-r0-7",
        workload_id="w1",
        replica_id="w1-r0",
        contract_id="c1",
        node_id="n1",
        cpu=Decimal("0.25"),
        memory=Decimal("0.5"),
        disk=Decimal("0.1"),
        network_bytes=123_456,
        sampled_at=NOW,
        interval_s=15,
    )


def _good() -> dict[str, Any]:
    envelope = sample_envelope(_sample(), 7, actor="test", recorded_at=NOW)
    data: dict[str, Any] = json.loads(encode_envelope(envelope))
    return data


def _payload(**changes: Any) -> bytes:
    data = _good()
    data["payload"].update(changes)
    return json.dumps(data).encode()


def _envelope(**changes: Any) -> bytes:
    data = _good()
    data.update(changes)
    return json.dumps(data).encode()


def _other(message: Any, type_name: str) -> bytes:
    data = _good()
    data["type"] = type_name
    data["payload"] = message.model_dump(mode="json")
    return json.dumps(data).encode()


RECORDS: dict[str, bytes | None] = {
    "good": json.dumps(_good()).encode(),
    "numbers as strings": _payload(network_bytes="123456", interval_s="15"),
    "a float ratio": _payload(cpu=0.25),
    "an inexact float ratio": _payload(cpu=0.1, memory=1e-3),
    "a float count": _payload(network_bytes=123456.0),
    "a fractional count": _payload(network_bytes=1.5),
    "a boolean count": _payload(interval_s=True),
    "a time as a number": _payload(sampled_at=1795428900),
    "a time with an offset": _payload(sampled_at="2026-11-23T12:15:00+02:00"),
    "an unknown payload field": _payload(colour="blue"),
    "a missing payload field": _payload(sample_id=None),
    "a naive time": _payload(sampled_at="2026-11-23T10:15:00"),
    "an id of another shape": _payload(contract_id="c 1"),
    "an unknown envelope field": _envelope(colour="blue"),
    "a bad envelope": _envelope(position=0),
    "a newer version": _envelope(schema_version=2),
    "an unknown type": _envelope(type="Nope"),
    "another type on the topic": _other(
        NodeStatusChanged(node_id="n1", status="up"), "NodeStatusChanged"
    ),
    "a usage fact": _other(
        UsageRecorded(
            contract_id="c1",
            hour=NOW.replace(minute=0),
            cu_hours=Decimal(1),
            su_hours=Decimal(0),
            nu_gb=Decimal(0),
        ),
        "UsageRecorded",
    ),
    "another type with a sample's payload": _envelope(type="NodeStatusChanged"),
    "not JSON": b"{nope",
    "not UTF-8": b"\xff\xfe",
    "no value": None,
}


@pytest.mark.parametrize("value", RECORDS.values(), ids=RECORDS.keys())
def test_decode_sample_gives_what_decode_record_gives(value: bytes | None) -> None:
    def outcome(decode: Callable[[bytes | None], object]) -> tuple[object, ...]:
        try:
            message = decode(value)
        except DecodeError as error:
            return ("refused", error.failure, error.detail)
        return ("decoded", type(message), message)

    assert outcome(decode_sample) == outcome(lambda v: decode_record(v).message)


def test_a_sample_decodes_to_the_sample_sent_in_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    def general(value: bytes | None) -> None:
        raise AssertionError("a good sample took the general path")

    monkeypatch.setattr("streams.usage.decode_record", general)
    assert decode_sample(RECORDS["good"]) == _sample()
