"""Infrastructure errors are waited out; data errors are not.

A consumer that meets an error must tell two kinds apart. A dependency that blinks (Valkey
restarting, the broker away, a store file locked, a server still loading its data) fails
every record alike, and retrying later succeeds: such a record is retried, with a capped
exponential backoff and no limit on the count, and its offset is never committed meanwhile,
so nothing is dead-lettered because a server was down. A record that fails by itself (it
does not decode, breaks its schema, or its handler refuses it) fails again whatever the
wait: it is dead-lettered after a few attempts, and the consumer goes on.

Redis' and SQLite's errors are recognised by their class names, not imported: only
``hero/readmodels`` imports the Redis client, only ``hero/store`` SQL.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, UnknownError

__all__ = [
    "Backoff",
    "InfrastructureError",
    "RetryState",
    "is_infrastructure_error",
    "retry_infrastructure",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_REDIS_UNAVAILABLE = frozenset(
    {"ConnectionError", "TimeoutError", "BusyLoadingError", "AuthenticationError"}
)
# Replies of a server that is there but cannot serve yet (or no longer): not the record's fault.
_REDIS_NOT_READY = ("NOAUTH", "LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN")
_NETWORK_ERRNOS = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.EADDRNOTAVAIL}
)
_SQLITE_BUSY = ("database is locked", "database is busy", "unable to open database")


class InfrastructureError(Exception):
    """Raised by an adapter for a dependency that is unavailable for now (retry later)."""


def is_infrastructure_error(error: BaseException) -> bool:
    """True when ``error`` says a dependency is unavailable, not that the data is wrong."""
    if isinstance(error, InfrastructureError | KafkaConnectionError | KafkaTimeoutError):
        return True
    # UNKNOWN_SERVER_ERROR (-1) is the broker's own failure, e.g. Tansu just restarted empty
    # answering a produce before its topics are back: the records are not at fault.
    if isinstance(error, UnknownError):
        return True
    if isinstance(error, KafkaError):
        return bool(getattr(error, "retriable", False))
    for kind in type(error).__mro__:
        if (kind.__module__, kind.__name__) == ("sqlite3", "OperationalError"):
            return str(error).startswith(_SQLITE_BUSY)
        if kind.__module__.split(".")[0] != "redis":
            continue
        if kind.__name__ in _REDIS_UNAVAILABLE:
            return True
        if kind.__name__ == "ResponseError":
            return str(error).startswith(_REDIS_NOT_READY)
    # Checked last: redis' and aiokafka's own errors may derive from these too.
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    return isinstance(error, OSError) and error.errno in _NETWORK_ERRNOS


@dataclass
class Backoff:
    """0.1 s, doubling, at most 5 s: quick for a blink, gentle for an outage."""

    first_s: float = 0.1
    cap_s: float = 5.0
    factor: float = 2.0

    def delays(self) -> _Delays:
        return _Delays(self)


@dataclass
class _Delays:
    backoff: Backoff
    next_s: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.next_s = self.backoff.first_s

    def take(self) -> float:
        delay = self.next_s
        self.next_s = min(self.next_s * self.backoff.factor, self.backoff.cap_s)
        return delay


@dataclass
class RetryState:
    """What a consumer reports in its health: how many infrastructure retries so far, and,
    while it is waiting on a dependency, why (None once the dependency answers again)."""

    retries: int = 0
    waiting_on: str | None = None


async def retry_infrastructure(
    call: Callable[[], Awaitable[T]],
    what: str,
    *,
    state: RetryState | None = None,
    backoff: Backoff | None = None,
) -> T:
    """``call()``'s result, retrying it for as long as it fails with an infrastructure error
    (with a log line each time); any other error is raised at once."""
    delays = (backoff or Backoff()).delays()
    while True:
        try:
            result = await call()
        except Exception as error:
            if not is_infrastructure_error(error):
                raise
            delay = delays.take()
            reason = f"{type(error).__name__}: {error}"
            log.warning("%s: dependency unavailable (%s); retrying in %.1f s", what, reason, delay)
            if state is not None:
                state.retries += 1
                state.waiting_on = f"{what}: {reason}"
            await asyncio.sleep(delay)
            continue
        if state is not None and state.waiting_on is not None:
            log.warning("%s: dependency back", what)
            state.waiting_on = None
        return result
