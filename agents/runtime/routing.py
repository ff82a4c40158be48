"""Which host owns an agent, and which deliveries a host has already applied.

Both rules must give the same answer in every process and after every restart, so neither
uses Python's ``hash()`` (salted per process) or Kafka offsets (a refilled broker renumbers).
"""

from __future__ import annotations

import zlib

from schemas import Envelope

__all__ = ["AGENT_TOPICS", "AppliedVersions", "kind_of", "shard_of"]

#: What every agent host folds; payments and commands are not part of the market.
AGENT_TOPICS: tuple[str, ...] = ("hero.policies", "hero.reservations", "hero.utilization")


def shard_of(agent_id: str, shards: int) -> int:
    """The host (0 .. shards-1) that owns ``agent_id``: CRC-32, stable across processes."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    return zlib.crc32(agent_id.encode()) % shards


def kind_of(agent_id: str) -> str:
    """``farmer:farm-7`` -> ``farmer``."""
    return agent_id.partition(":")[0]


class AppliedVersions:
    """The last version applied per (topic, stream); a delivery at or below it is a repeat.

    Keyed by topic as well as stream because one aggregate may publish on several topics (a
    node registers on ``hero.reservations`` and changes status on ``hero.utilization``):
    Kafka orders a stream's records within one topic only, so a per-stream rule could see
    version 2 from one topic before version 1 from the other and then drop version 1.
    Within one topic the relay repeats (a crashed batch, a refill from position 1) but never
    reorders a stream, so "version <= last applied" is exactly "already applied".

    A fold in log order through a position (a catch-up, a snapshot's refresh) has applied
    every delivery at or below it: :meth:`settle` then keeps only that position, the floor,
    below which everything is a repeat. The versions kept are those of the streams applied
    since; without it a host's snapshot would name every stream ever written (a negotiation,
    a contract's usage...) and grow with history.
    """

    __slots__ = ("_floor", "_versions")

    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], int] = {}
        self._floor = 0

    def repeat(self, topic: str, envelope: Envelope) -> bool:
        """Whether the delivery was applied already (nothing remembered)."""
        if envelope.position <= self._floor:
            return True
        return envelope.version <= self._versions.get((topic, envelope.stream), 0)

    def admit(self, topic: str, envelope: Envelope) -> bool:
        """True (and remembered) the first time; False for a repeat."""
        if self.repeat(topic, envelope):
            return False
        self._versions[(topic, envelope.stream)] = envelope.version
        return True

    def settle(self, position: int) -> None:
        """Every delivery at or below ``position`` is applied (the caller folded the store in
        log order through it, and nothing after): forget the versions, keep the floor."""
        if position > self._floor:
            self._floor = position
            self._versions.clear()

    @property
    def floor(self) -> int:
        return self._floor

    def items(self) -> list[tuple[tuple[str, str], int]]:
        """((topic, stream), last version applied) for every stream applied above the floor:
        a snapshot's part, with :attr:`floor`."""
        return list(self._versions.items())

    @classmethod
    def restored(cls, items: list[tuple[tuple[str, str], int]], floor: int = 0) -> AppliedVersions:
        applied = cls()
        applied._versions = dict(items)
        applied._floor = floor
        return applied

    def __len__(self) -> int:
        return len(self._versions)
