"""Waiting on a condition with a deadline, the tests' one way to synchronise with servers and
processes (unit tests of the pure core have nothing to wait for)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

__all__ = ["eventually", "until", "wait_until"]

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout_s: float, what: str, poll_s: float = 0.02) -> T:
    """``condition()``'s first true answer, polled every ``poll_s``; fails the test after
    ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)
    return result


async def until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    """``wait_until`` from a coroutine, in a thread so the event loop keeps running."""
    await asyncio.to_thread(wait_until, condition, timeout_s, what)


async def eventually(
    condition: Callable[[], object] | Callable[[], Awaitable[object]], timeout_s: float, what: str
) -> None:
    """Return once ``condition()`` (sync, or a coroutine function) is true, polling it on the
    event loop so the tasks it watches run meanwhile; fail the test after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)
