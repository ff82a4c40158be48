"""The Kafka record codec: envelope JSON bytes in and out, with the reason when it fails."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from pydantic import ValidationError

from schemas import (
    REGISTRY,
    Envelope,
    InvalidPayload,
    Message,
    SchemaRegistry,
    SchemaVersionError,
    UnknownMessageType,
)

__all__ = [
    "DecodeError",
    "DecodeFailure",
    "Decoded",
    "decode_payload",
    "decode_record",
    "encode_envelope",
    "validation_summary",
]


class DecodeFailure(StrEnum):
    UNDECODABLE = "undecodable"
    INVALID_ENVELOPE = "invalid_envelope"
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    SCHEMA_INVALID = "schema_invalid"


class DecodeError(ValueError):
    def __init__(self, failure: DecodeFailure, detail: str):
        self.failure = failure
        self.detail = detail
        super().__init__(f"{failure.value}: {detail}")


@dataclass(frozen=True, slots=True)
class Decoded:
    envelope: Envelope
    message: Message


def encode_envelope(envelope: Envelope) -> bytes:
    return envelope.model_dump_json().encode()


def decode_record(value: bytes | None, registry: SchemaRegistry = REGISTRY) -> Decoded:
    if value is None:
        raise DecodeError(DecodeFailure.UNDECODABLE, "record has no value")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DecodeError(DecodeFailure.UNDECODABLE, f"not UTF-8: {error}") from None
    try:
        envelope = Envelope.model_validate_json(text)
    except ValidationError as error:
        kinds = {item["type"] for item in error.errors(include_url=False)}
        failure = (
            DecodeFailure.UNDECODABLE
            if "json_invalid" in kinds or "model_type" in kinds
            else DecodeFailure.INVALID_ENVELOPE
        )
        raise DecodeError(failure, validation_summary(error)) from None
    return Decoded(envelope, decode_payload(envelope, registry))


class _Carrier(Protocol):
    def decode_message(self, registry: SchemaRegistry) -> Message: ...


def decode_payload(carrier: _Carrier, registry: SchemaRegistry) -> Message:
    """The message an event or command envelope carries; DecodeError with the reason."""
    try:
        return carrier.decode_message(registry)
    except UnknownMessageType as error:
        raise DecodeError(DecodeFailure.UNKNOWN_TYPE, str(error)) from None
    except SchemaVersionError as error:
        raise DecodeError(DecodeFailure.UNSUPPORTED_VERSION, str(error)) from None
    except InvalidPayload as error:
        raise DecodeError(DecodeFailure.SCHEMA_INVALID, str(error)) from None


def validation_summary(error: ValidationError) -> str:
    """The first ten validation errors, each with its field path."""
    parts = [
        f"{'.'.join(str(p) for p in item['loc']) or '(record)'}: {item['msg']}"
        for item in error.errors(include_url=False)[:10]
    ]
    return "; ".join(parts)
