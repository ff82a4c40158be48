"""Where the gateway's rate limits count: in Valkey, so that every gateway on it shares them.

The counting itself is the :mod:`limits` library's (a moving window, its Lua scripts); this
module only hands it the gateway's own connection pool (the same server, password included)
and a key prefix of its own, so that Redis access stays in ``hero.readmodels``.
"""

from __future__ import annotations

from limits.aio.storage import RedisStorage, Storage
from redis.asyncio import Redis

__all__ = ["shared_storage"]


def shared_storage(redis: Redis, prefix: str = "hero") -> Storage:
    """The :mod:`limits` storage over ``redis``'s pool, its keys under ``{prefix}:ratelimit``."""
    return RedisStorage(
        "async+redis://",
        implementation="redispy",
        key_prefix=f"{prefix}:ratelimit",
        # limits types its options as scalars; redis-py's client takes the pool as it is
        connection_pool=redis.connection_pool,  # type: ignore[arg-type]
    )
