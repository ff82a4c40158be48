"""The catalogue and /metrics routers over the session stack's real store, Valkey and relay,
served through httpx's ASGI transport: the AsyncAPI document, the JSON Schemas, and metrics
whose figures match the store and the read models (projected under a prefix of this module's
own, so the stack's gateway is left alone)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from hero.domain.clock import SystemClock
from hero.gateway import catalogue, metrics
from hero.gateway.context import GatewayContext, Role
from hero.readmodels.keys import ApiKeys
from hero.readmodels.projections import PROJECTIONS
from hero.readmodels.projector import Projector, ReadModels
from hero.relay import health_path
from hero.store import EventStore, open_store
from schemas import (
    REGISTRY,
    Resources,
)
from tests.integration._market import seed_market
from tests.unit.test_gateway_metrics import Samples, parse_exposition, sample

if TYPE_CHECKING:
    from tests._engines import RunningStack

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
PREFIX = f"cat{RUN}"
FARM, NODE, BUYER = f"catf-{RUN}", f"catf-{RUN}-n1", f"catb-{RUN}"
SHAPE = Resources.from_gb(cru=1, mru_gb=2, sru_gb=10)


def _seed(store: EventStore) -> None:
    """A farm, a node, one negotiation awarded (a live contract) and one left open."""
    seed_market(
        store,
        actor="test-catalogue",
        nodes={NODE: FARM},
        seller=(FARM, NODE),
        buyer=BUYER,
        shape=SHAPE,
        open_offer_firm=True,
    )


@pytest.fixture(scope="module")
def store(stack: RunningStack) -> Iterator[EventStore]:
    opened = open_store(stack.settings.effective_store_url)
    try:
        _seed(opened)
        yield opened
    finally:
        opened.close()


@pytest.fixture
async def served(
    stack: RunningStack, store: EventStore
) -> AsyncIterator[tuple[httpx.AsyncClient, GatewayContext, Redis, dict[str, str]]]:
    redis = Redis.from_url(stack.endpoints.redis_url)
    admin, _ = await ApiKeys(redis).create(Role.ADMIN)  # /metrics takes an admin key
    context = GatewayContext(
        settings=stack.settings,
        store=store,
        redis=redis,
        clock=SystemClock(),
        extras={"read_models": ReadModels(redis, PREFIX)},
    )
    app = FastAPI()
    app.state.context = context
    app.include_router(catalogue.router(context))
    app.include_router(metrics.router(context))
    metrics.observe_http(app)
    context.extras["metrics"].cache_s = 0  # every scrape fresh, for exact comparisons
    context.extras["metrics"].tally_wait_s = 30
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            yield client, context, redis, {"Authorization": f"Bearer {admin}"}
    finally:
        metrics.gateway_metrics(context).close()
        keys = [key async for key in redis.scan_iter(f"{PREFIX}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def test_asyncapi_document_of_the_stack(served: Any, stack: RunningStack) -> None:
    client, _, _, _ = served
    answer = await client.get("/v1/asyncapi.json")  # no key
    assert answer.status_code == 200
    doc = answer.json()
    assert doc["asyncapi"] == "3.0.0"
    assert stack.settings.kafka_bootstrap
    assert doc["servers"]["kafka"]["host"] == stack.settings.kafka_bootstrap.split(",")[0]
    assert doc["servers"]["gateway"] == doc["servers"]["gateway"] | {
        "host": "gw.test",
        "protocol": "http",
    }
    for entry in REGISTRY.entries():
        channel = doc["channels"][catalogue.channel_id(entry.topic)]
        assert channel["address"] == entry.topic.value
        assert entry.type in channel["messages"]
        assert entry.type in doc["components"]["messages"]
    assert "Envelope" in doc["components"]["schemas"]


async def test_schemas_and_an_unknown_type(served: Any) -> None:
    client, _, _, _ = served
    listed = (await client.get("/v1/schemas")).json()
    assert {item["type"] for item in listed} == {e.type for e in REGISTRY.entries()}
    answer = await client.get("/v1/schemas/ContractCreated")
    assert answer.status_code == 200
    assert answer.json() == REGISTRY.json_schemas()["ContractCreated"]
    missing = await client.get("/v1/schemas/ContractCreate")
    assert missing.status_code == 404
    assert "ContractCreated" in missing.json()["detail"]["close_matches"]


async def _quiet_scrape(
    client: httpx.AsyncClient, store: EventStore, projector: Projector, admin: dict[str, str]
) -> tuple[Samples, int]:
    """A scrape taken while the store did not move (the stack's agents may write meanwhile:
    try again until the position before the catch-up equals the one after the scrape)."""
    for _ in range(50):
        before = store.current_position()
        await projector.catch_up()
        assert (await client.get("/metrics")).status_code == 401  # no key, no figures
        answer = await client.get("/metrics", headers=admin)
        if store.current_position() == before:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
            return parse_exposition(answer.text), before
        await asyncio.sleep(0.2)
    pytest.fail("the store never stood still for a scrape")


async def test_metrics_match_the_store_and_the_read_models(served: Any, store: EventStore) -> None:
    client, context, redis, admin = served
    projector = Projector(store, redis, prefix=PREFIX)
    await client.get("/v1/schemas/NoSuchType")  # one 404 for the HTTP metrics
    started = time.perf_counter()
    s, position = await _quiet_scrape(client, store, projector, admin)
    print(f"scrape over {position} events took {time.perf_counter() - started:.3f} s")

    assert sample(s, "hero_store_position") == position
    for source in ("store", "readmodels"):
        assert sample(s, "hero_metrics_source_up", source=source) == 1
    assert sample(s, "hero_consumer_lag_positions", consumer="gateway-metrics") == 0
    read = ReadModels(redis, PREFIX)
    for name in PROJECTIONS:
        applied = await read.position(name)
        assert applied == position
        assert sample(s, "hero_consumer_position", consumer=f"readmodels/{name}") == applied
        assert sample(s, "hero_consumer_lag_positions", consumer=f"readmodels/{name}") == 0

    health = json.loads(health_path(context.settings).read_text())
    assert sample(s, "hero_metrics_source_up", source="relay") == 1
    relayed = sample(s, "hero_relay_position")
    assert relayed == sample(s, "hero_events_relayed_total")
    assert relayed <= health["position"] <= position  # the relay only moves forward
    assert sample(s, "hero_consumer_lag_positions", consumer="relay") == position - relayed

    rows = store.read_all(1, position)
    types = Counter(row.type for row in rows)
    assert sample(s, "hero_bills_total") == types["UsageBilled"]
    for type_name, count in types.items():
        assert sample(s, "hero_events_recorded_total", type=type_name) == count

    negotiations = Counter(doc["status"] for doc in await read.all("negotiations"))
    for status in metrics.NEGOTIATION_STATUSES:
        assert sample(s, "hero_negotiations_total", status=status) == negotiations[status]
    assert negotiations["open"] >= 1
    assert negotiations["awarded"] >= 1
    live = [doc for doc in await read.all("contracts") if doc["status"] == "live"]
    assert sample(s, "hero_contracts_live") == len(live) >= 1

    not_found = {"method": "GET", "route": "/v1/schemas/{type_name}", "status": "404"}
    assert sample(s, "hero_http_requests_total", **not_found) == 1
    assert sample(s, "hero_http_request_duration_seconds_count", **not_found) == 1
