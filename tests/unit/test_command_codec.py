"""The command envelope on ``hero.commands``: what a client sends decodes to the same command,
and anything else is refused with the reason the dead letter will carry."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from hero.log.codec import DecodeError, DecodeFailure
from hero.log.commands import decode_command, encode_command
from schemas import RegisterFarm

SENT_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
FARM = RegisterFarm(
    command_id="cmd-1", farm_id="f1", name="farm", grid="grid4", country="BE", region="Ghent"
)


def _envelope(**changes: object) -> bytes:
    body = json.loads(encode_command(FARM, actor="client", sent_at=SENT_AT))
    body.update(changes)
    return json.dumps(body).encode()


def test_a_sent_command_decodes_to_itself_with_its_actor_and_time() -> None:
    envelope, command = decode_command(encode_command(FARM, actor="client", sent_at=SENT_AT))
    assert command == FARM
    assert (envelope.type, envelope.schema_version, envelope.actor, envelope.sent_at) == (
        "RegisterFarm",
        1,
        "client",
        SENT_AT,
    )


@pytest.mark.parametrize(
    ("value", "failure", "detail"),
    [
        (None, DecodeFailure.UNDECODABLE, "no value"),
        (b"\xff\xfe", DecodeFailure.UNDECODABLE, "Invalid JSON"),
        (b"[1, 2]", DecodeFailure.UNDECODABLE, "(record)"),
        (_envelope(actor="two words"), DecodeFailure.INVALID_ENVELOPE, "actor"),
        (_envelope(sent_at="2026-01-02T03:04:05"), DecodeFailure.INVALID_ENVELOPE, "sent_at"),
        (_envelope(extra=1), DecodeFailure.INVALID_ENVELOPE, "extra"),
        (_envelope(type="FarmRegistered"), DecodeFailure.UNKNOWN_TYPE, "not a command"),
        (_envelope(type="LaunchRocket"), DecodeFailure.UNKNOWN_TYPE, "LaunchRocket"),
        (_envelope(schema_version=9), DecodeFailure.UNSUPPORTED_VERSION, "9"),
        (_envelope(payload={"command_id": "c"}), DecodeFailure.SCHEMA_INVALID, "farm_id"),
    ],
)
def test_what_is_not_a_command_is_refused_with_the_reason(
    value: bytes | None, failure: DecodeFailure, detail: str
) -> None:
    with pytest.raises(DecodeError) as raised:
        decode_command(value)
    assert raised.value.failure is failure
    assert detail in raised.value.detail
