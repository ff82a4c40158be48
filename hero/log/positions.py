"""What a consumer has applied, by store position: (stream, version) pairs and the last position.

A consumer applies an event only if its version is past the stream's applied version, so a
redelivered, replayed or refilled event changes nothing. Kafka offsets are only a hint.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from schemas import Envelope

__all__ = ["AppliedPositions", "MemoryAppliedPositions", "NothingApplied"]


class AppliedPositions(ABC):
    """One consumer's memory of what it applied; adapters: memory, Valkey."""

    @abstractmethod
    async def applied_version(self, stream: str) -> int:
        """The last version of ``stream`` applied; 0 when none."""

    @abstractmethod
    async def mark_applied(self, envelope: Envelope) -> None:
        """Record ``envelope`` as applied (its stream version and its global position)."""

    @abstractmethod
    async def last_position(self) -> int:
        """The highest global position applied; 0 when none."""

    async def is_applied(self, envelope: Envelope) -> bool:
        return envelope.version <= await self.applied_version(envelope.stream)


class MemoryAppliedPositions(AppliedPositions):
    def __init__(self) -> None:
        self._versions: dict[str, int] = {}
        self._position = 0

    async def applied_version(self, stream: str) -> int:
        return self._versions.get(stream, 0)

    async def mark_applied(self, envelope: Envelope) -> None:
        current = self._versions.get(envelope.stream, 0)
        self._versions[envelope.stream] = max(current, envelope.version)
        self._position = max(self._position, envelope.position)

    async def last_position(self) -> int:
        return self._position


class NothingApplied(AppliedPositions):
    """For a consumer whose handler dedupes by itself (per record id, in its own store):
    every record reaches the handler, older versions of a stream included."""

    async def applied_version(self, stream: str) -> int:
        return 0

    async def mark_applied(self, envelope: Envelope) -> None:
        return None

    async def last_position(self) -> int:
        return 0
