"""The record every event travels in, in the store and on Kafka (DESIGN.md, "Streams")."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.ids import NAME_PATTERN, EventId, Identifier, StreamId
from schemas.messages import Event, Message
from schemas.registry import (
    REGISTRY,
    InvalidPayload,
    SchemaRegistry,
    SchemaVersionError,
    UnknownMessageType,
)

__all__ = ["Envelope", "UndecodableEvent", "UndecodableReason"]

#: Why a recorded envelope is not a readable event; the codes followers dead-letter it under.
UndecodableReason = Literal["unknown_type", "unsupported_version", "schema_invalid", "not_an_event"]


class UndecodableEvent(ValueError):
    """An envelope whose payload this code cannot read as an event.

    ``reason`` is a stable code (what a follower records when it skips the row), ``detail``
    says what broke in words; the registry's own error, if any, is the ``__cause__``.
    """

    def __init__(self, reason: UndecodableReason, detail: str):
        self.reason: UndecodableReason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class Envelope(BaseModel):
    """A recorded event: where it sits (stream, version, global position) and why it exists."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: EventId
    type: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    schema_version: int = Field(ge=1)
    stream: StreamId
    version: int = Field(ge=1, description="1-based position of the event in its stream")
    position: int = Field(ge=1, description="global, gap-free order of commit in the store")
    occurred_at: AwareDatetime
    recorded_at: AwareDatetime
    causation_id: Identifier | None = None
    correlation_id: Identifier | None = None
    actor: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    payload: dict[str, Any]

    def decode(self, registry: SchemaRegistry = REGISTRY) -> Event:
        """The payload as its event class at the current version (upcast when older, validated).

        Raises :class:`UndecodableEvent` for a type the registry does not know, a version it
        cannot upcast, a payload its schema refuses, or a command (the log carries events).
        """
        try:
            if registry.entry(self.type).kind != "event":
                raise UndecodableEvent("not_an_event", f"{self.type} is a command, not an event")
            message = self.decode_message(registry)
        except UnknownMessageType as error:
            raise UndecodableEvent("unknown_type", str(error)) from error
        except SchemaVersionError as error:
            raise UndecodableEvent("unsupported_version", str(error)) from error
        except InvalidPayload as error:
            raise UndecodableEvent("schema_invalid", str(error)) from error
        if not isinstance(message, Event):  # a registry entry of kind "event" that is not one
            raise UndecodableEvent("not_an_event", f"{self.type} is not an Event class")
        return message

    def decode_message(self, registry: SchemaRegistry = REGISTRY) -> Message:
        """The payload as its current-version class, event or command (the Kafka codec's read).

        Raises the registry's own errors: :class:`UnknownMessageType`,
        :class:`SchemaVersionError`, :class:`InvalidPayload`.
        """
        return registry.decode(self.type, self.schema_version, self.payload)
