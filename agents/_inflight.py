"""Commands an agent sent and has not seen the effect of yet, so it does not send them again
at every decision; after ``retry_after`` it may (a lost command is repeated, and applied once
thanks to its deterministic id)."""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = ["InFlight"]


class InFlight:
    __slots__ = ("_retry_after", "_sent")

    def __init__(self, retry_after: timedelta = timedelta(seconds=5)):
        self._sent: dict[str, datetime] = {}
        self._retry_after = retry_after

    def due(self, key: str, now: datetime) -> bool:
        sent = self._sent.get(key)
        return sent is None or now - sent >= self._retry_after

    def mark(self, key: str, now: datetime) -> None:
        self._sent[key] = now

    def done(self, key: str) -> None:
        self._sent.pop(key, None)

    def done_prefix(self, prefix: str) -> None:
        for key in [k for k in self._sent if k.startswith(prefix)]:
            del self._sent[key]

    def __len__(self) -> int:
        return len(self._sent)
