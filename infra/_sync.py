"""Run a coroutine to completion from synchronous code, even inside a running event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``factory()`` on a fresh loop; in a thread if this thread already runs a loop.

    The launcher API is synchronous (the CLI and fixtures call it); an async caller that
    calls it directly only blocks its own loop instead of failing with "loop is running".
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="infra-sync") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()
