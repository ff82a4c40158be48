"""Applied positions kept in Valkey/Redis, so a consumer's memory survives its process."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from hero.log.positions import AppliedPositions
from schemas import Envelope

__all__ = ["RedisAppliedPositions"]

# Both writes in one script: the stream's version and the global position only move forward.
_MARK = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
local position = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[3]) > position then redis.call('SET', KEYS[2], ARGV[3]) end
return 1
"""


class RedisAppliedPositions(AppliedPositions):
    """Keys ``hero:consumer:{name}:applied`` (hash stream -> version) and ``...:position``."""

    def __init__(self, redis: Redis, consumer: str):
        self._redis = redis
        self._versions_key = f"hero:consumer:{consumer}:applied"
        self._position_key = f"hero:consumer:{consumer}:position"
        self._cache: dict[str, int] = {}
        self._mark: Any = redis.register_script(_MARK)

    async def applied_version(self, stream: str) -> int:
        if stream not in self._cache:
            raw = await self._redis.hget(self._versions_key, stream)
            self._cache[stream] = int(raw) if raw is not None else 0
        return self._cache[stream]

    async def mark_applied(self, envelope: Envelope) -> None:
        await self._mark(
            keys=[self._versions_key, self._position_key],
            args=[envelope.stream, envelope.version, envelope.position],
        )
        self._cache[envelope.stream] = max(self._cache.get(envelope.stream, 0), envelope.version)

    async def last_position(self) -> int:
        raw = await self._redis.get(self._position_key)
        return int(raw) if raw is not None else 0
