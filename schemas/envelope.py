"""The record every event travels in, in the store and on Kafka (DESIGN.md, "Streams")."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.ids import NAME_PATTERN, EventId, Identifier, StreamId
from schemas.messages import Message
from schemas.registry import REGISTRY, SchemaRegistry

__all__ = ["Envelope"]


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

    def decode(self, registry: SchemaRegistry = REGISTRY) -> Message:
        """The payload as its current-version class (upcast when older); raises on bad data."""
        return registry.decode(self.type, self.schema_version, self.payload)
