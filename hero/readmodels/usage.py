"""Hourly usage windows kept in Valkey/Redis, so an aggregator's state survives its process.

Per contract and hour: a hash of integer sums (seconds, network bytes, samples) and the set
of sample ids already counted; one script adds a sample to both or to neither, so a sample
redelivered after a crash counts once. Per Kafka partition, the latest sample time seen (the
event-time watermark) also lives here: an hour closes only when every partition that carries
samples has moved past it, whatever the wall clock says and however far a restart rewinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from schemas import UtilizationSampled

__all__ = ["ADDED", "DUPLICATE", "LATE", "UsageWindow", "UsageWindows"]

ADDED, DUPLICATE, LATE = 1, 0, 2

# KEYS: sums hash, seen set, open zset, closed marker, watermarks hash
# ARGV: sample id, seconds, bytes, open member, hour epoch, partition, sample epoch
_ADD = """
local mark = tonumber(redis.call('HGET', KEYS[5], ARGV[6]) or '0')
if tonumber(ARGV[7]) > mark then redis.call('HSET', KEYS[5], ARGV[6], ARGV[7]) end
if redis.call('EXISTS', KEYS[4]) == 1 then return 2 end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'seconds', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'bytes', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'samples', 1)
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
return 1
"""

# KEYS: sums hash, seen set, open zset, closed marker; ARGV: open member, ttl seconds
_CLOSE = """
redis.call('SET', KEYS[4], '1', 'EX', ARGV[2])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""


@dataclass(frozen=True, slots=True)
class UsageWindow:
    contract_id: str
    hour: datetime
    seconds: int
    network_bytes: int
    samples: int


class UsageWindows:
    """Keys under ``hero:usage:{name}:``; ``name`` separates aggregators sharing a server."""

    def __init__(self, redis: Redis, name: str = "usage", closed_ttl_s: int = 7 * 86400):
        self._redis = redis
        self._prefix = f"hero:usage:{name}"
        self._ttl = closed_ttl_s
        self._add: Any = redis.register_script(_ADD)
        self._close: Any = redis.register_script(_CLOSE)

    def _keys(self, contract_id: str, hour: datetime) -> list[str]:
        window = f"{self._prefix}:{contract_id}:{int(hour.timestamp())}"
        return [
            f"{window}:sums",
            f"{window}:seen",
            f"{self._prefix}:open",
            f"{window}:closed",
        ]

    @staticmethod
    def _member(contract_id: str, hour: datetime) -> str:
        return f"{int(hour.timestamp())}|{contract_id}"

    async def add(self, sample: UtilizationSampled, partition: int) -> int:
        """ADDED, DUPLICATE (counted before) or LATE (its hour is closed)."""
        hour = sample.sampled_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        keys = self._keys(sample.contract_id, hour)
        result = await self._add(
            keys=[*keys, f"{self._prefix}:watermarks"],
            args=[
                sample.sample_id,
                sample.interval_s,
                sample.network_bytes,
                self._member(sample.contract_id, hour),
                int(hour.timestamp()),
                partition,
                int(sample.sampled_at.timestamp()),
            ],
        )
        return int(result)

    async def watermark(self) -> datetime | None:
        """The earliest of the partitions' latest sample times: every partition is past it."""
        marks = await self._redis.hvals(f"{self._prefix}:watermarks")
        if not marks:
            return None
        return datetime.fromtimestamp(min(int(m) for m in marks), UTC)

    async def open_before(self, moment: datetime) -> list[tuple[str, datetime]]:
        """Open windows whose hour starts before ``moment``, oldest first."""
        members = await self._redis.zrangebyscore(
            f"{self._prefix}:open", "-inf", f"({int(moment.timestamp())}"
        )
        found = []
        for member in members:
            epoch, _, contract_id = _text(member).partition("|")
            found.append((contract_id, datetime.fromtimestamp(int(epoch), UTC)))
        return found

    async def read(self, contract_id: str, hour: datetime) -> UsageWindow:
        raw = await self._redis.hgetall(self._keys(contract_id, hour)[0])
        sums = {_text(key): int(value) for key, value in raw.items()}
        return UsageWindow(
            contract_id,
            hour,
            sums.get("seconds", 0),
            sums.get("bytes", 0),
            sums.get("samples", 0),
        )

    async def close(self, contract_id: str, hour: datetime) -> None:
        """Forget the window; samples for it that arrive later are LATE, not counted."""
        await self._close(
            keys=self._keys(contract_id, hour), args=[self._member(contract_id, hour), self._ttl]
        )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
