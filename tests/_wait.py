"""Waiting on a condition with a deadline, the integration tests' one way to synchronise."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

__all__ = ["until", "wait_until"]


def wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    """Return once ``condition()`` is true; fail the test after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)  # the poll interval of a wait on a condition, with a deadline


async def until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    """``wait_until`` from a coroutine, in a thread so the event loop keeps running."""
    await asyncio.to_thread(wait_until, condition, timeout_s, what)
