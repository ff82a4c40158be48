"""Integration tests use the engine-aware fixtures of tests/conftest.py (``stack``,
``broker_factory``, ``store_factory``, ``relay_standin``): see its docstring. Here: a client
of the stack's Valkey, and a key prefix of the test's own there."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from schemas import new_id
from tests._engines import RunningStack

__all__ = ["RunningStack"]


@pytest.fixture
async def redis(stack: RunningStack) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.endpoints.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"test-{new_id('rm')}"
    yield name
    keys = [key async for key in redis.scan_iter(match=f"{name}:*", count=1000)]
    if keys:
        await redis.delete(*keys)
