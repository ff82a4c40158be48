"""The gateway's ``?as_of=``: lists and documents as they were at a position or a time, compared
with what the live read models answered at that position before the log moved on; scoped and
masked as live answers are; a bad or future as_of refused naming it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from redis.asyncio import Redis

from hero.gateway.context import Role
from hero.readmodels.keys import ApiKeys
from hero.store import EventStore, open_store
from schemas import Resources
from tests._wait import wait_until
from tests.integration._market import seed_market

if TYPE_CHECKING:
    from tests._engines import RunningStack

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
SHAPE = Resources.from_gb(cru=1, mru_gb=2, sru_gb=10)
LISTS = ("farms", "nodes", "contracts", "negotiations")


@dataclass
class World:
    url: str
    store: EventStore
    keys: dict[str, str]

    def get(self, who: str, path: str, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[who]}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
            return client.get(path, params=params)


def _seed(store: EventStore, tag: str) -> None:
    farm, node = f"asof{tag}-{RUN}", f"asof{tag}-{RUN}-n1"
    seed_market(
        store,
        actor="test-as-of",
        nodes={node: farm},
        seller=(farm, node),
        buyer=f"asofb{tag}-{RUN}",
        shape=SHAPE,
        open_offer_firm=True,
    )


async def _make_keys(redis_url: str) -> dict[str, str]:
    redis = Redis.from_url(redis_url)
    try:
        keys = ApiKeys(redis)
        admin = (await keys.create(Role.ADMIN, []))[0]
        developer = (await keys.create(Role.DEVELOPER, []))[0]
        return {"admin": admin, "developer": developer}
    finally:
        await redis.aclose()


@pytest.fixture(scope="module")
def world(stack: RunningStack) -> Iterator[World]:
    assert stack.endpoints.gateway_url, "the stack runs no gateway"
    store = open_store(stack.settings.effective_store_url)
    try:
        keys = asyncio.run(_make_keys(stack.endpoints.redis_url))
        yield World(stack.endpoints.gateway_url, store, keys)
    finally:
        store.close()


def _steady_list(world: World, who: str, name: str) -> dict[str, Any]:
    """One list page read live while its projection did not move (the stack's agents may be
    writing): the same position before and after the read."""
    answer: dict[str, Any] = {}

    def steady() -> bool:
        nonlocal answer
        first = world.get(who, f"/v1/{name}", limit=1000).json()
        again = world.get(who, f"/v1/{name}", limit=1000).json()
        answer = first
        return bool(first["position"] == again["position"] and first == again)

    wait_until(steady, 30, f"a steady read of {name}")
    return answer


def _caught_up(world: World) -> int:
    target = world.store.current_position()

    def there() -> bool:
        positions = world.get("admin", "/health").json()["read_models"]
        return bool(min(positions.values()) >= target)

    wait_until(there, 30, f"the read models at position {target}")
    return target


def test_as_of_answers_what_the_live_read_models_answered_at_that_position(world: World) -> None:
    _seed(world.store, "a")
    _caught_up(world)
    captured = {
        (who, name): _steady_list(world, who, name)
        for who in ("admin", "developer")
        for name in LISTS
    }
    moment = datetime.now(UTC)
    _seed(world.store, "b")  # the log moves on: a farm, a node, two negotiations, a contract
    _caught_up(world)
    for (who, name), live in captured.items():
        then = world.get(who, f"/v1/{name}", as_of=str(live["position"]), limit=1000)
        assert then.status_code == 200, then.text
        assert then.json() == live, f"{who} {name} as of {live['position']}"
        assert then.headers["X-Hero-Position"] == str(live["position"])
    now = world.get("admin", "/v1/farms", limit=1000).json()
    farms_then = world.get("admin", "/v1/farms", as_of=moment.isoformat(), limit=1000).json()
    ids_now = {d["id"] for d in now["items"]}
    ids_then = {d["id"] for d in farms_then["items"]}
    assert f"asofb-{RUN}" in ids_now - ids_then  # seeded after the moment
    assert f"asofa-{RUN}" in ids_then


def test_one_document_as_of_a_position_is_the_one_of_then(world: World) -> None:
    _seed(world.store, "c")
    position = _caught_up(world)
    node = f"asofc-{RUN}-n1"
    live = world.get("admin", f"/v1/nodes/{node}").json()
    assert world.get("admin", f"/v1/nodes/{node}", as_of=str(position)).json() == live
    before = world.get("admin", f"/v1/nodes/{node}", as_of="1")
    assert before.status_code == 404  # it did not exist at the first event


@pytest.mark.parametrize(
    ("as_of", "code"),
    [
        ("yesterday", "invalid_as_of"),
        ("2026-11-30T23:59:59", "invalid_as_of"),  # no zone
        ("2026-11-30", "invalid_as_of"),
        ("12\n", "invalid_as_of"),
        ("9" * 19, "as_of_past_head"),
    ],
)
def test_a_bad_as_of_is_400_naming_it(world: World, as_of: str, code: str) -> None:
    for path in ("/v1/contracts", "/v1/contracts/anything"):
        answer = world.get("admin", path, as_of=as_of)
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["detail"]["error"] == code
        assert answer.json()["detail"]["field"] == "as_of"
