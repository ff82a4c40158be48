"""The record a command travels in on ``hero.commands`` (DESIGN.md, "Streams")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.ids import NAME_PATTERN
from schemas.messages import Command, Message
from schemas.registry import REGISTRY, SchemaRegistry

__all__ = ["CommandEnvelope"]


class CommandEnvelope(BaseModel):
    """A command put on the log by a client: its type and schema version, who sends it and
    when, and its payload (which carries the command id)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    schema_version: int = Field(ge=1)
    actor: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    sent_at: AwareDatetime
    payload: dict[str, Any]

    @classmethod
    def of(cls, command: Command, *, actor: str, sent_at: datetime) -> CommandEnvelope:
        return cls(
            type=command.TYPE,
            schema_version=command.SCHEMA_VERSION,
            actor=actor,
            sent_at=sent_at,
            payload=command.model_dump(mode="json"),
        )

    def decode_message(self, registry: SchemaRegistry = REGISTRY) -> Message:
        """The payload as its current-version class; raises the registry's own errors."""
        return registry.decode(self.type, self.schema_version, self.payload)
