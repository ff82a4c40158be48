"""The gateway's bounds on callers: request rates per key (or per client IP without a valid
key), and open streams per key.

Rates are counted by the :mod:`limits` library (moving windows) in the storage it is given:
the gateway's Valkey (``hero.readmodels.ratelimits``), so gateways on one Valkey share each
key's budget; when that storage does not answer, requests pass (and a warning says why):
the limit guards the gateway, it must not stop it. Open streams are counted in the process: a
stream lives on one gateway, and a count kept elsewhere would outlive a gateway that dies with
streams open.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter

__all__ = ["RATE_LIMITED", "RateLimits", "Refusal", "StreamSlots", "parse_rates"]

log = logging.getLogger(__name__)

#: The OpenAPI answer every route that takes a key may give.
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        "description": "too many requests for this key or client (rate_limited), or too many "
        "open streams for this key (too_many_streams); Retry-After says when to try again",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
    }
}


def parse_rates(text: str) -> tuple[RateLimitItem, ...]:
    """``"100/second;2000/minute"`` as limits (``off``: none); ValueError otherwise."""
    if text.strip().lower() == "off":
        return ()
    items = tuple(parse_many(text))
    if not items:
        raise ValueError(f"no rate in {text!r}")
    return items


@dataclass(frozen=True)
class Refusal:
    """A request over a limit: which, and in how many seconds the window lets one through."""

    limit: str
    retry_after_s: int


class RateLimits:
    """Every one of ``rates`` counted per identity (``key:ID`` or ``ip:ADDRESS``)."""

    def __init__(self, storage: Storage, rates: Sequence[RateLimitItem]):
        self._limiter = MovingWindowRateLimiter(storage)
        self.rates = tuple(rates)
        self.uncounted = 0
        """Requests let through because the storage did not answer."""

    async def hit(self, identity: str) -> Refusal | None:
        """Count one request of ``identity``; the refusal when one of the rates is spent, None
        when none is (or when the storage cannot count it)."""
        try:
            return await self._hit(identity)
        except Exception as error:  # the storage's own errors (Valkey away): let it through
            self.uncounted += 1
            log.warning("rate limits not counted (%s): %s", type(error).__name__, error)
            return None

    async def _hit(self, identity: str) -> Refusal | None:
        for rate in self.rates:
            if not await self._limiter.hit(rate, identity):
                stats = await self._limiter.get_window_stats(rate, identity)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                return Refusal(str(rate), wait)
        return None


class StreamSlots:
    """Open streams per key, at most ``per_key`` each (0: no cap)."""

    def __init__(self, per_key: int):
        self.per_key = per_key
        self._open: dict[str, int] = {}

    def open(self, key_id: str) -> int:
        return self._open.get(key_id, 0)

    def take(self, key_id: str) -> Callable[[], None] | None:
        """A slot for one more stream of ``key_id`` and its release (idempotent), or None
        when the key has ``per_key`` open already."""
        if self.per_key and self.open(key_id) >= self.per_key:
            return None
        self._open[key_id] = self.open(key_id) + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self.open(key_id) - 1
            if left > 0:
                self._open[key_id] = left
            else:
                self._open.pop(key_id, None)

        return release
