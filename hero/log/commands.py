"""Commands over Kafka: what a client puts on ``hero.commands``, and how it is read back.

A command travels as a :class:`schemas.command_envelope.CommandEnvelope` (JSON), keyed by
the key the client gives (its aggregate's id, so one aggregate's commands stay in order on
one partition) or else by its command id. The command processor (``streams.commands``)
applies each once by its command id and answers on the log: the events it caused (their
causation id is the command id) or a ``CommandRejected`` naming the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import ValidationError

from hero.log.codec import DecodeError, DecodeFailure, decode_payload, validation_summary
from hero.log.producer import new_producer
from hero.log.topics import TopicAdmin
from schemas import (
    REGISTRY,
    Command,
    SchemaRegistry,
    Topic,
)
from schemas.command_envelope import CommandEnvelope

__all__ = ["decode_command", "encode_command", "send_commands"]


def encode_command(command: Command, *, actor: str, sent_at: datetime | None = None) -> bytes:
    envelope = CommandEnvelope.of(command, actor=actor, sent_at=sent_at or datetime.now(UTC))
    return envelope.model_dump_json().encode()


def decode_command(
    value: bytes | None, registry: SchemaRegistry = REGISTRY
) -> tuple[CommandEnvelope, Command]:
    """The record's envelope and command; DecodeError with the reason when it is not one."""
    if value is None:
        raise DecodeError(DecodeFailure.UNDECODABLE, "record has no value")
    try:
        envelope = CommandEnvelope.model_validate_json(value)
    except ValidationError as error:
        kinds = {item["type"] for item in error.errors(include_url=False)}
        failure = (
            DecodeFailure.UNDECODABLE
            if kinds & {"json_invalid", "model_type", "json_type"}
            else DecodeFailure.INVALID_ENVELOPE
        )
        raise DecodeError(failure, validation_summary(error)) from None
    if envelope.type in registry and registry.entry(envelope.type).kind != "command":
        raise DecodeError(DecodeFailure.UNKNOWN_TYPE, f"{envelope.type} is an event, not a command")
    message = decode_payload(envelope, registry)
    if not isinstance(message, Command):
        raise DecodeError(DecodeFailure.UNKNOWN_TYPE, f"{envelope.type} is not a command")
    return envelope, message


async def send_commands(
    bootstrap: str,
    commands: Sequence[Command],
    *,
    actor: str,
    key: str | None = None,
) -> None:
    """Put ``commands`` on ``hero.commands`` in order, each acknowledged by the broker before
    this returns (keyed by ``key``, else each by its command id). Sending one again is
    harmless: the processor applies a command id once."""
    admin = TopicAdmin(bootstrap)
    try:
        await admin.ensure_topics()
    finally:
        await admin.close()
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        for command in commands:
            await producer.send_and_wait(
                Topic.COMMANDS.value,
                value=encode_command(command, actor=actor),
                key=(key or command.command_id).encode(),
            )
    finally:
        await producer.stop()
