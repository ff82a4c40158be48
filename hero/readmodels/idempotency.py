"""What each ``Idempotency-Key`` of the gateway was first sent with, kept in Valkey.

The store's command id record makes a retried request apply once. This remembers a
fingerprint of the request a key was first used for, so that the same key sent with another
request -- another body, or another offer, node or account -- is refused rather than taken
for the first one's repeat. A fingerprint is kept a day, as payment providers keep theirs;
money's own check (``hero.payments.payouts``) is in the store and never expires.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

__all__ = ["KEY_TTL_S", "IdempotencyKeys", "fingerprint"]

KEY_TTL_S = 24 * 3600


def fingerprint(kind: str, canonical: str) -> str:
    """The request's fingerprint: what it asks (``kind``) and its canonical form."""
    return hashlib.sha256(f"{kind}\n{canonical}".encode()).hexdigest()


class IdempotencyKeys:
    """Claims keys (``<prefix>:idempotency:<key>``) with the fingerprint of their request."""

    def __init__(self, redis: Redis, prefix: str = "hero", ttl_s: int = KEY_TTL_S) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_s = ttl_s

    async def claim(self, key: str, request: str) -> bool:
        """True when ``key`` is new, or was first used for this same ``request``."""
        name = f"{self._prefix}:idempotency:{key}"
        if await self._redis.set(name, request, nx=True, ex=self._ttl_s):
            return True
        first = await self._redis.get(name)
        if first is None:  # expired between the two calls: claim it afresh
            return bool(await self._redis.set(name, request, nx=True, ex=self._ttl_s))
        return (first.decode() if isinstance(first, bytes) else str(first)) == request
