"""The gateway's bounds against the running stack's Valkey and store: a revoked key's open
streams end within a heartbeat, rates per key (shared by two gateways) and per client IP, a
cap on open streams per key, list pages with a cursor, and ``start`` past the head refused.

The gateways are this module's own -- the real ``create_app`` over the stack's store and
Valkey, served by uvicorn on 127.0.0.1 -- so that their heartbeat (0.3 s), rates and stream cap
are small enough to test; their read models and rate counters live under a prefix of their
own, the keys under the default one (where ``hero keys`` finds them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn
import websockets
from redis.asyncio import Redis
from typer.testing import CliRunner
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hero.cli import app as cli
from hero.domain.clock import SystemClock
from hero.gateway import streams
from hero.gateway._paging import encode_cursor
from hero.gateway.app import create_app
from hero.gateway.context import GatewayContext, Role
from hero.market.service import MarketService
from hero.readmodels.keys import ApiKeys, parse_key
from hero.sdk import Client, GatewayError, RateLimited
from hero.store import EventStore, open_store
from schemas import Grid, RegisterFarm, Topic
from tests._wait import until, wait_until

if TYPE_CHECKING:
    from tests._engines import RunningStack

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
PREFIX = f"bounds{RUN}"
HEARTBEAT_S = 0.3
MAX_STREAMS = 2
RATE = "30/minute"
PER_MINUTE = 30
TOPIC = Topic.RESERVATIONS.value
FARMS = [f"bnd-{RUN}-{i}" for i in range(7)]


class Gateway:
    """``create_app`` over the stack's store and Valkey, in uvicorn on a thread."""

    def __init__(self, stack: RunningStack, store: EventStore, *, run_projector: bool):
        settings = stack.settings.model_copy(update={"gateway_rate": RATE})
        self.context = GatewayContext(
            settings=settings,
            store=store,
            redis=Redis.from_url(stack.endpoints.redis_url),
            clock=SystemClock(),
            extras={
                "stream_options": streams.StreamOptions(
                    heartbeat_s=HEARTBEAT_S, poll_interval_s=0.05, max_streams_per_key=MAX_STREAMS
                )
            },
        )
        app = create_app(self.context, run_projector=run_projector, prefix=PREFIX)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> Gateway:
        self.thread.start()
        wait_until(lambda: self.server.started, 20, "uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive(), "uvicorn did not stop"

    @property
    def url(self) -> str:
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")


@dataclass
class Bounded:
    one: Gateway
    two: Gateway
    store: EventStore
    stack: RunningStack

    def new_key(self, role: Role = Role.ADMIN, tenants: tuple[str, ...] = ()) -> str:
        """A fresh key (from a thread of its own: callable from sync and async tests)."""
        made = _with_keys(self.stack, lambda keys: keys.create(role, tenants))
        with ThreadPoolExecutor(1) as thread:
            key: str = thread.submit(asyncio.run, made).result()[0]
        return key


async def _with_keys(stack: RunningStack, action: Callable[[ApiKeys], Any]) -> Any:
    redis = Redis.from_url(stack.endpoints.redis_url)
    try:
        return await action(ApiKeys(redis))
    finally:
        await redis.aclose()


@pytest.fixture(scope="module")
def bounded(stack: RunningStack) -> Iterator[Bounded]:
    store = open_store(stack.settings.effective_store_url)
    try:
        with (
            Gateway(stack, store, run_projector=True) as one,
            Gateway(stack, store, run_projector=False) as two,
        ):
            yield Bounded(one, two, store, stack)
    finally:
        store.close()


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def key_id(key: str) -> str:
    parsed = parse_key(key)
    assert parsed is not None
    return parsed[0]


def revoke_with_the_cli(stack: RunningStack, key: str) -> None:
    data_dir = str(stack.settings.data_dir)
    result = CliRunner().invoke(cli, ["keys", "revoke", key_id(key), "--data-dir", data_dir])
    assert result.exit_code == 0, result.output


# -- a revoked key's open streams end ---------------------------------------------------------


async def test_a_revoked_keys_sse_stream_ends_within_a_heartbeat(bounded: Bounded) -> None:
    key = bounded.new_key()
    url = f"{bounded.one.url}/v1/streams/{TOPIC}"
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream("GET", url, params={"start": "latest"}, headers=headers(key)) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        async with asyncio.timeout(5):
            while not (await anext(lines)).startswith("id:"):  # the position marker
                pass
        await asyncio.to_thread(revoke_with_the_cli, bounded.stack, key)
        revoked_at = time.monotonic()
        rest: list[str] = []
        async with asyncio.timeout(HEARTBEAT_S + 3):  # the stream ends: no waiting for ever
            rest = [line async for line in lines]
        ended_after = time.monotonic() - revoked_at
    assert "event: error" in rest
    data = json.loads(next(line for line in rest if line.startswith("data:"))[5:])
    assert data["error"] == "key_revoked"
    assert key_id(key) in data["message"]
    assert ended_after < HEARTBEAT_S + 3
    # and the key opens no new stream
    async with httpx.AsyncClient(timeout=10) as http:
        again = await http.get(url, headers=headers(key))
    assert again.status_code == 401
    assert again.json()["detail"]["error"] == "revoked_key"


async def test_a_revoked_keys_websocket_closes_with_4401(bounded: Bounded) -> None:
    key = bounded.new_key()
    url = f"{bounded.one.ws_url}/v1/streams/{TOPIC}/ws?start=latest"
    async with websockets.connect(url, additional_headers=headers(key)) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert first["event"] == "subscribed"
        await _with_keys(bounded.stack, lambda keys: keys.revoke(key_id(key)))
        async with asyncio.timeout(HEARTBEAT_S + 3):
            frame = json.loads(await ws.recv())
            with pytest.raises(ConnectionClosed):
                await ws.recv()
    assert frame["event"] == "error"
    assert frame["error"] == "key_revoked"
    assert ws.close_code == streams.KEY_REVOKED_CLOSE
    assert "revoked" in (ws.close_reason or "")


async def test_the_sdk_reports_a_revoked_key_instead_of_reconnecting(bounded: Bounded) -> None:
    key = bounded.new_key(Role.FARMER, (FARMS[0],))
    async with Client(bounded.one.url, key, backoff_s=0.05) as client:
        received: list[int] = []

        async def follow() -> None:
            async for event in client.subscribe(TOPIC, start="latest"):
                received.append(event.position)

        task = asyncio.create_task(follow())
        # the stream is open once the gateway counts it
        await until(lambda: _open_streams(bounded.one, key) == 1, 20, "the SDK's stream to open")
        await _with_keys(bounded.stack, lambda keys: keys.revoke(key_id(key)))
        with pytest.raises(GatewayError) as ended:
            await asyncio.wait_for(task, HEARTBEAT_S + 3)
    assert ended.value.status == 401
    assert ended.value.reason == "key_revoked"
    assert client.reconnects == 0


def _open_streams(gateway: Gateway, key: str) -> int:
    slots = gateway.context.extras.get("stream_slots")
    return 0 if slots is None else int(slots.open(key_id(key)))


# -- rates --------------------------------------------------------------------------------------


def test_a_keys_rate_is_shared_by_two_gateways_and_answers_429(bounded: Bounded) -> None:
    key = bounded.new_key()
    answers: list[httpx.Response] = []
    with httpx.Client(headers=headers(key), timeout=10) as http:
        for n in range(PER_MINUTE):
            gateway = bounded.one if n % 2 else bounded.two
            answers.append(http.get(f"{gateway.url}/v1/farms", params={"limit": 1}))
        over = http.get(f"{bounded.one.url}/v1/farms", params={"limit": 1})
        over_ws_status = _ws_status(bounded.two, key)
    assert [a.status_code for a in answers] == [200] * PER_MINUTE
    assert over.status_code == 429
    assert over.json()["detail"]["error"] == "rate_limited"
    assert "per 1 minute" in over.json()["detail"]["message"]
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert over_ws_status == 429
    # another key is not held back by this one
    other = bounded.new_key()
    fresh = httpx.get(f"{bounded.two.url}/v1/farms", headers=headers(other), timeout=10)
    assert fresh.status_code == 200


def _ws_status(gateway: Gateway, key: str) -> int:
    async def attempt() -> int:
        url = f"{gateway.ws_url}/v1/streams/{TOPIC}/ws"
        try:
            async with websockets.connect(url, additional_headers=headers(key)):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    return asyncio.run(attempt())


async def test_the_sdk_raises_rate_limited_with_retry_after(bounded: Bounded) -> None:
    key = bounded.new_key()
    async with Client(bounded.one.url, key) as client:

        async def first_pages() -> None:
            for _ in range(PER_MINUTE + 1):  # one page each
                async with contextlib.aclosing(client.documents("farms", page_size=1)) as farms:
                    async for _farm in farms:
                        break

        with pytest.raises(RateLimited) as limited:
            await first_pages()
    assert limited.value.status == 429
    assert limited.value.reason == "rate_limited"
    assert (limited.value.retry_after_s or 0) >= 1


def test_requests_without_a_valid_key_are_limited_per_client(bounded: Bounded) -> None:
    bogus = {"Authorization": "Bearer hero_0000000000000000_" + "x" * 43}
    with httpx.Client(timeout=10) as http:
        codes = [
            # a refused key and a route that takes none count against the same IP
            http.get(f"{bounded.one.url}/v1/farms", headers=bogus).status_code
            if n % 2
            else http.get(f"{bounded.two.url}/v1/schemas").status_code
            for n in range(PER_MINUTE + 1)
        ]
        no_key = http.get(f"{bounded.two.url}/v1/farms")
        openapi = http.get(f"{bounded.one.url}/openapi.json")
        health = http.get(f"{bounded.one.url}/health")
    # (an earlier test's refused key may have counted already: the same client, this minute)
    first = codes.index(429)
    assert first >= PER_MINUTE - 3
    assert codes[:first] == [401 if n % 2 else 200 for n in range(first)]
    assert set(codes[first:]) == {429}
    for refused in (no_key, openapi):
        assert refused.status_code == 429
        assert refused.json()["detail"]["error"] == "rate_limited"
        assert "client" in refused.json()["detail"]["message"]
        assert int(refused.headers["Retry-After"]) >= 1
    assert health.status_code == 200  # monitors are never held back


# -- open streams per key ------------------------------------------------------------------------


async def test_a_key_holds_at_most_its_open_streams(bounded: Bounded) -> None:
    key = bounded.new_key()
    url = f"{bounded.one.url}/v1/streams/{TOPIC}"
    async with httpx.AsyncClient(timeout=10, headers=headers(key)) as http:
        opened = [
            await http.send(http.build_request("GET", url, params={"start": "latest"}), stream=True)
            for _ in range(MAX_STREAMS)
        ]
        try:
            assert [r.status_code for r in opened] == [200] * MAX_STREAMS
            refused = await http.get(url, params={"start": "latest"})
            assert refused.status_code == 429
            assert refused.json()["detail"]["error"] == "too_many_streams"
            assert await asyncio.to_thread(_ws_status, bounded.one, key) == 429
            # another gateway counts its own streams
            elsewhere = await http.send(
                http.build_request(
                    "GET", f"{bounded.two.url}/v1/streams/{TOPIC}", params={"start": "latest"}
                ),
                stream=True,
            )
            assert elsewhere.status_code == 200
            await elsewhere.aclose()
        finally:
            await opened.pop().aclose()
        # the closed stream's slot comes back
        await until(lambda: _open_streams(bounded.one, key) < MAX_STREAMS, 20, "a slot to free")
        again = await http.send(
            http.build_request("GET", url, params={"start": "latest"}), stream=True
        )
        assert again.status_code == 200
        await again.aclose()
        for response in opened:
            await response.aclose()
    await until(lambda: _open_streams(bounded.one, key) == 0, 20, "every slot to free")


# -- list pages ----------------------------------------------------------------------------------


def _register_farms(store: EventStore) -> None:
    market = MarketService(store, actor="test-bounds")
    place = {"grid": Grid.GRID4, "country": "BE", "region": "europe"}
    for farm in reversed(FARMS):  # registered out of order: pages come by id all the same
        market.handle(RegisterFarm(command_id=f"reg-{farm}", farm_id=farm, name=farm, **place))


def _caught_up(bounded: Bounded, key: str) -> None:
    target = bounded.store.current_position()

    def there() -> bool:
        answer = httpx.get(f"{bounded.one.url}/v1/farms", params={"limit": 1}, headers=headers(key))
        return answer.status_code == 200 and answer.json()["position"] >= target

    wait_until(there, 20, f"the read models at position {target}")


def test_lists_page_by_id_following_the_cursor(bounded: Bounded) -> None:
    _register_farms(bounded.store)
    _caught_up(bounded, bounded.new_key())
    # The session's store is shared: other tests' farms are listed too (the stack's command
    # processor applies every test's commands), so the pages walked are those of a key that
    # holds this test's farms, which page by id as any key's do.
    key = bounded.new_key(Role.FARMER, tuple(FARMS))
    with httpx.Client(base_url=bounded.one.url, headers=headers(key), timeout=10) as http:
        whole = http.get("/v1/farms", params={"limit": 1000}).json()
        assert whole["next_cursor"] is None
        pages: list[list[str]] = []
        params: dict[str, Any] = {"limit": 3}
        while True:
            page = http.get("/v1/farms", params=params).json()
            pages.append([farm["id"] for farm in page["items"]])
            assert page["count"] == len(page["items"])
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
    ids = [farm_id for page in pages for farm_id in page]
    assert ids == [farm["id"] for farm in whole["items"]]
    assert ids == sorted(set(ids))  # by id, each once
    assert ids == sorted(FARMS)
    assert all(len(page) == 3 for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= 3
    # a farmer key's pages hold its farms only
    farmer = bounded.new_key(Role.FARMER, (FARMS[2], FARMS[5]))
    with httpx.Client(base_url=bounded.one.url, headers=headers(farmer), timeout=10) as http:
        first = http.get("/v1/farms", params={"limit": 1}).json()
        second = http.get("/v1/farms", params={"limit": 1, "cursor": first["next_cursor"]})
    assert [f["id"] for f in first["items"]] == [FARMS[2]]
    assert [f["id"] for f in second.json()["items"]] == [FARMS[5]]
    assert second.json()["next_cursor"] is None


async def test_the_sdk_follows_the_cursors(bounded: Bounded) -> None:
    # This test's farms only, as above: a page of 2 over the whole shared store would take
    # more requests than a key may make in a minute.
    key = bounded.new_key(Role.FARMER, tuple(FARMS))
    async with Client(bounded.one.url, key) as client:
        mine = [
            farm["id"]
            async for farm in client.documents("farms", page_size=2)
            if farm["id"].startswith(f"bnd-{RUN}-")
        ]
    assert mine == sorted(FARMS)


def test_a_bad_cursor_or_limit_is_refused_naming_it(bounded: Bounded) -> None:
    key = bounded.new_key()
    another_lists = encode_cursor("nodes", FARMS[0])
    with httpx.Client(base_url=bounded.one.url, headers=headers(key), timeout=10) as http:
        for cursor in ("not a cursor!", "eyJ4IjoxfQ", "A" * 2000, another_lists, ""):
            answer = http.get("/v1/farms", params={"cursor": cursor})
            assert answer.status_code == 400, cursor
            detail = answer.json()["detail"]
            assert detail["error"] == "invalid_cursor"
            assert detail["field"] == "cursor"
            assert detail["message"].startswith("cursor: ")
        for limit in (0, 1001, "ten"):
            answer = http.get("/v1/farms", params={"limit": limit})
            assert answer.status_code == 422
            assert "limit" in json.dumps(answer.json()["detail"])


# -- start past the head -----------------------------------------------------------------------


def test_a_start_past_the_head_is_refused(bounded: Bounded) -> None:
    key = bounded.new_key()
    head = bounded.store.current_position()
    url = f"{bounded.one.url}/v1/streams/{TOPIC}"
    with httpx.Client(headers=headers(key), timeout=10) as http:

        def refusal(**request: Any) -> dict[str, Any]:
            # streamed: before the fix such a stream opened (200) and waited for ever
            with http.stream("GET", url, **request) as answer:
                assert answer.status_code == 400, request
                detail: dict[str, Any] = json.loads(answer.read())["detail"]
            assert detail["error"] == "invalid_start"
            return detail

        for start in (str(head + 50), "-1", "0", "1.5", "abc"):
            assert refusal(params={"start": start})["field"] == "start"
        past = refusal(headers={"Last-Event-ID": str(head + 50)})
        assert past["field"] == "Last-Event-ID"
        # the next position is fine: the stream waits for the next event
        with http.stream("GET", url, params={"start": str(head + 1)}) as following:
            assert following.status_code == 200
    assert _ws_status_at(bounded.one, key, f"start={head + 50}") == 400


def _ws_status_at(gateway: Gateway, key: str, query: str) -> int:
    async def attempt() -> int:
        url = f"{gateway.ws_url}/v1/streams/{TOPIC}/ws?{query}"
        try:
            async with websockets.connect(url, additional_headers=headers(key)):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    return asyncio.run(attempt())
