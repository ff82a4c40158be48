"""When the supervisor starts a dead process again: capped exponential backoff, and the crash
loop it reports. Pure: every method takes the time (a monotonic clock's seconds) as argument,
so tests drive it with an injected clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["Backoff", "RestartPolicy"]


@dataclass(frozen=True)
class RestartPolicy:
    """The numbers: 0.5 s doubling to 30 s; the delay starts over once a process has run
    ``stable_s`` since its last start; ``loop_crashes`` exits within ``loop_window_s`` are a
    crash loop."""

    base_s: float = 0.5
    cap_s: float = 30.0
    stable_s: float = 60.0
    loop_crashes: int = 5
    loop_window_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"base_s must be > 0 and <= cap_s, got {self.base_s}, {self.cap_s}")
        if self.stable_s <= 0 or self.loop_window_s <= 0:
            raise ValueError("stable_s and loop_window_s must be > 0")
        if self.loop_crashes < 1:
            raise ValueError(f"loop_crashes must be >= 1, got {self.loop_crashes}")


@dataclass
class Backoff:
    """One process's restart history under a :class:`RestartPolicy`."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    restarts: int = 0
    _streak: int = 0  # exits since the last stable run: the exponent of the delay
    _started_at: float | None = None
    _crashes: deque[float] = field(default_factory=deque)

    def crashed(self, now: float) -> float:
        """Record an exit at ``now``; returns how long to wait before starting it again."""
        self._crashes.append(now)
        self._forget_old(now)
        self._started_at = None
        delay = min(self.policy.cap_s, self.policy.base_s * 2.0**self._streak)
        self._streak += 1
        return delay

    def started(self, now: float) -> None:
        """It was started again at ``now``."""
        self.restarts += 1
        self._started_at = now

    def running(self, now: float) -> None:
        """It is alive at ``now``: after ``stable_s`` since its start the delay starts over."""
        if self._started_at is not None and now - self._started_at >= self.policy.stable_s:
            self._streak = 0
            self._started_at = None

    def crash_looping(self, now: float) -> bool:
        self._forget_old(now)
        return len(self._crashes) >= self.policy.loop_crashes

    def crashes_in_window(self, now: float) -> int:
        self._forget_old(now)
        return len(self._crashes)

    def _forget_old(self, now: float) -> None:
        while self._crashes and now - self._crashes[0] > self.policy.loop_window_s:
            self._crashes.popleft()
