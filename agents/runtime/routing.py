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
    """

    __slots__ = ("_versions",)

    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], int] = {}

    def admit(self, topic: str, envelope: Envelope) -> bool:
        """True (and remembered) the first time; False for a repeat."""
        key = (topic, envelope.stream)
        if envelope.version <= self._versions.get(key, 0):
            return False
        self._versions[key] = envelope.version
        return True

    def items(self) -> list[tuple[tuple[str, str], int]]:
        """((topic, stream), last version applied) for every stream seen: a snapshot's part."""
        return list(self._versions.items())

    @classmethod
    def restored(cls, items: list[tuple[tuple[str, str], int]]) -> AppliedVersions:
        applied = cls()
        applied._versions = dict(items)
        return applied

    def __len__(self) -> int:
        return len(self._versions)
