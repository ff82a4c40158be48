"""Issue 13, item 1 and 7 (part), on the gateway app over the session stack's Valkey: /health
is degraded with a reason while the read models lag past the bound or their task has died,
ok again once they catch up, and never echoes an exception's text or an address. Served in
process through httpx's ASGI transport, with the app's own lifespan running."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from hero.domain.clock import SystemClock
from hero.gateway.app import create_app
from hero.gateway.context import GatewayContext
from hero.readmodels import Projector
from hero.store import ANY_VERSION, EventStore, NewEvent
from schemas import FarmRegistered, Grid, new_id
from tests._poison import insert_poison_row

if TYPE_CHECKING:
    from tests._engines import RunningStack, TestStore

pytestmark = pytest.mark.integration


@pytest.fixture
async def prefix(stack: RunningStack) -> AsyncIterator[str]:
    name = f"test-{new_id('health')}"
    yield name
    redis = Redis.from_url(stack.endpoints.redis_url)
    keys = [key async for key in redis.scan_iter(match=f"{name}:*", count=1000)]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


def _context(stack: RunningStack, store: TestStore, redis_url: str, max_lag: int) -> GatewayContext:
    settings = stack.settings.model_copy(update={"health_max_lag": max_lag})
    return GatewayContext(
        settings=settings,
        store=store.open(),
        redis=Redis.from_url(redis_url),
        clock=SystemClock(),
    )


def _farms(store: EventStore, count: int) -> int:
    for _ in range(count):
        farm_id = new_id("f")[:20]  # a farm id has at most 24 characters
        event = FarmRegistered(
            farm_id=farm_id, name="F", grid=Grid.GRID3, country="BE", region="eu"
        )
        new = NewEvent.of(event, actor="test", occurred_at=SystemClock().now())
        store.append(f"farm-{farm_id}", ANY_VERSION, [new], f"cmd-{new.id}")
    return store.current_position()


async def _health(app: FastAPI) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
        answer = await client.get("/health")
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


async def _wait_for(app: FastAPI, status: str, timeout_s: float = 20) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while (body := await _health(app))["status"] != status:  # noqa: ASYNC110 - polled
            await asyncio.sleep(0.05)
    return body


async def test_health_is_degraded_while_the_read_models_lag_and_ok_once_caught_up(
    stack: RunningStack, store_factory: Callable[[], TestStore], prefix: str
) -> None:
    context = _context(stack, store_factory(), stack.endpoints.redis_url, max_lag=2)
    app = create_app(context, run_projector=False, prefix=prefix)
    async with app.router.lifespan_context(app):
        head = _farms(context.store, 4)  # type: ignore[arg-type]
        body = await _health(app)
        assert body["status"] == "degraded"
        assert body["reasons"] == ["read-models lagging: 4 events behind (bound 2)"]
        assert body["store_position"] == head
        await Projector(context.store, context.redis, prefix=prefix).catch_up()
        body = await _health(app)
        assert (body["status"], body["reasons"]) == ("ok", [])
        assert set(body["read_models"].values()) == {head}
    await context.redis.aclose()
    context.store.close()


async def test_health_says_the_read_model_task_stopped_and_the_death_is_logged(
    stack: RunningStack,
    store_factory: Callable[[], TestStore],
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = store_factory()
    context = _context(stack, store, stack.endpoints.redis_url, max_lag=1000)
    _farms(context.store, 1)
    poison = insert_poison_row(store.url)
    app = create_app(context, prefix=prefix)
    async with app.router.lifespan_context(app):
        body = await _wait_for(app, "ok")
        # the poison row was skipped and is listed as a warning, not a reason to degrade
        async with asyncio.timeout(20):
            while min((await _health(app))["read_models"].values()) < poison:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        body = await _health(app)
        assert body["status"] == "ok"
        assert body["skipped"]["read-models"] >= 1
        assert "hero events skipped" in body["warnings"][0]
        task = context.extras["tasks"]["read-models"]
        with caplog.at_level(logging.ERROR, logger="hero.gateway._health"):
            task.cancel()
            body = await _wait_for(app, "degraded")
        assert body["reasons"] == ["read-models stopped"]
        assert "read-models: the task was cancelled" in caplog.text
    await context.redis.aclose()
    context.store.close()


async def test_health_names_no_internal_error_text_or_address(
    stack: RunningStack, store_factory: Callable[[], TestStore], prefix: str
) -> None:
    # A Valkey nobody listens on: the old /health answered with the client's error text,
    # "Error 111 connecting to 127.0.0.1:1. Connection refused."
    context = _context(stack, store_factory(), "redis://127.0.0.1:1/0", max_lag=1000)
    app = create_app(context, run_projector=False, prefix=prefix)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            answer = await client.get("/health")
    body = answer.json()
    assert body["status"] == "degraded"
    assert body["reasons"] == ["the read models do not answer (Valkey)"]
    for leak in ("127.0.0.1", "Error", "111", "refused", "redis://"):
        assert leak not in answer.text
    await context.redis.aclose()
    context.store.close()
