"""The gateway's event streams against a real server: uvicorn on 127.0.0.1 serving the streams
router over a real SQLite event store, read with the SDK, raw httpx and a WebSocket client.

The app is the test's own (just the streams router); the caller dependency is overridden with
a table of test keys (an override of the gateway's auth, not a stand-in for any server).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, HTTPException, Request, WebSocket

from hero.cli import tailing
from hero.config import HeroSettings
from hero.domain.clock import SystemClock
from hero.gateway import auth, streams
from hero.gateway.broadcast import Broadcaster
from hero.gateway.context import GatewayContext, Principal, Role
from hero.sdk import Client, GatewayError, StreamEvent
from hero.store import ANY_VERSION, EventStore, NewEvent
from schemas import (
    CapacityHeld,
    FarmRegistered,
    HoldExpired,
    HoldReleased,
    Money,
    Resources,
    RfqIssued,
    Topic,
)
from schemas.resources import Grid
from tests._engines import TestStore
from tests._wait import until, wait_until

pytestmark = pytest.mark.integration

TOPIC = Topic.RESERVATIONS.value
KEYS = {
    "admin": Principal("k-admin", Role.ADMIN),
    "farmer-a": Principal("k-farmer", Role.FARMER, frozenset({"farm-a"})),
    "dev": Principal("k-dev", Role.DEVELOPER),
}


def principal_of(headers: Any) -> Principal:
    key = auth.presented_key(headers)
    if key not in KEYS:
        raise HTTPException(401, detail={"error": "unknown_key", "message": "unknown key"})
    return KEYS[key]


async def key_caller(request: Request) -> Principal:
    return principal_of(request.headers)


async def ws_key_caller(websocket: WebSocket) -> Principal:
    return principal_of(websocket.headers)


class Gateway:
    """The streams router served by uvicorn in a thread, on a free port of 127.0.0.1."""

    def __init__(self, store: EventStore, tmp: Path, **options: Any):
        self.context = GatewayContext(
            settings=HeroSettings(data_dir=tmp),
            store=store,
            redis=cast(Any, None),
            clock=SystemClock(),
            extras={"stream_options": streams.StreamOptions(**options)},
        )
        app = FastAPI()
        app.state.context = self.context
        app.include_router(streams.router(self.context))
        app.dependency_overrides[auth.caller] = key_caller
        app.dependency_overrides[streams.ws_caller] = ws_key_caller
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> Gateway:
        self.thread.start()
        wait_until(lambda: self.server.started, 10, "uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        broadcaster = self.context.extras.get("broadcaster")
        if broadcaster is not None:
            broadcaster.close()

    @property
    def port(self) -> int:
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def broadcaster(self) -> Broadcaster:
        return streams.broadcaster_for(self.context)


class DroppingProxy:
    """A TCP relay in front of the gateway whose connections the test can cut mid-stream."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.connections = 0

    async def __aenter__(self) -> DroppingProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.drop()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def drop(self) -> None:
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers.update({writer, up_writer})

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def append(store: EventStore, events: list[Any], stream: str = "market-test") -> list[int]:
    now = datetime.now(UTC)
    new = [NewEvent.of(event, actor="test", occurred_at=now) for event in events]
    result = store.append(stream, ANY_VERSION, new, command_id=f"cmd-{time.monotonic_ns()}")
    return list(range(result.first_position, result.last_position + 1))


def farms(first: int, count: int, farm: str | None = None) -> list[FarmRegistered]:
    return [
        FarmRegistered(
            farm_id=farm or f"farm-{i}",
            name=f"farm {i}",
            grid=Grid.GRID3,
            country="BE",
            region="europe",
        )
        for i in range(first, first + count)
    ]


def holds(count: int) -> list[HoldExpired]:
    return [HoldExpired(node_id=f"node-{i}", hold_id=f"hold-{i}") for i in range(count)]


@pytest.fixture
def store(store_factory: Callable[[], TestStore]) -> Iterator[EventStore]:
    opened = store_factory().open()
    yield opened
    opened.close()


@pytest.fixture
def gateway(store: EventStore, tmp_path: Path) -> Iterator[Gateway]:
    with Gateway(store, tmp_path) as running:
        yield running


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """The raw SSE messages of a response (id, event, data), markers and comments skipped."""
    message: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in message:
                yield message
            message = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            message[name] = value


async def take(
    client: Client, count: int, timeout_s: float = 20.0, **params: Any
) -> list[StreamEvent]:
    got: list[StreamEvent] = []
    async with asyncio.timeout(timeout_s):
        async for event in client.subscribe(TOPIC, **params):
            got.append(event)
            if len(got) == count:
                break
    return got


async def test_sdk_reconnects_after_a_dropped_connection_without_gap_or_duplicate(
    gateway: Gateway, store: EventStore
) -> None:
    started = time.monotonic()
    expected = append(store, farms(0, 20))
    received: list[StreamEvent] = []
    async with DroppingProxy(gateway.port) as proxy, Client(proxy.url, "admin") as client:
        async with asyncio.timeout(20):
            async for event in client.subscribe(TOPIC):
                received.append(event)
                if len(received) == 7:
                    proxy.drop()  # cut the connection mid-stream
                    expected += append(store, farms(100, 15))  # and more arrive meanwhile
                if len(received) == 25:
                    expected += append(store, farms(200, 10))  # live, after the resume
                if len(received) == len(expected) == 45:
                    break
        assert client.reconnects >= 1
        assert proxy.connections >= 2
    positions = [event.position for event in received]
    assert positions == expected
    assert len(set(positions)) == len(positions)
    assert all(isinstance(event.event, FarmRegistered) for event in received)
    assert [e.envelope.position for e in received] == positions
    print(f"sdk resume: 45 events, 1 drop, {time.monotonic() - started:.2f}s")


async def test_last_event_id_resumes_strictly_after_it(gateway: Gateway, store: EventStore) -> None:
    expected = append(store, farms(0, 30))
    first: list[int] = []
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        async with http.stream("GET", f"/v1/streams/{TOPIC}", headers={"X-API-Key": "admin"}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            async for message in sse_events(r):
                first.append(int(message["id"]))
                assert message["event"] == "FarmRegistered"
                assert json.loads(message["data"])["position"] == int(message["id"])
                if len(first) == 11:
                    break  # the client drops the connection
        expected += append(store, farms(50, 5))
        rest: list[int] = []
        headers = {"X-API-Key": "admin", "Last-Event-ID": str(first[-1])}
        # Last-Event-ID wins over start
        params = {"start": "latest"}
        async with http.stream("GET", f"/v1/streams/{TOPIC}", headers=headers, params=params) as r:
            async for message in sse_events(r):
                rest.append(int(message["id"]))
                if len(first) + len(rest) == len(expected):
                    break
    assert first + rest == expected


async def test_slow_consumer_is_closed_with_the_reason_and_memory_stays_bounded(
    store: EventStore, tmp_path: Path
) -> None:
    limit = 5
    append(store, farms(0, 3))
    with Gateway(store, tmp_path, queue_limit=limit) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
            params = {"start": "latest"}
            headers = {"X-API-Key": "admin"}
            async with http.stream(
                "GET", f"/v1/streams/{TOPIC}", params=params, headers=headers
            ) as r:
                await until(lambda: gateway.broadcaster.stats.live == 1, 10, "a live subscriber")
                burst = append(store, farms(10, 50))  # far more than the buffer at once
                got: list[int] = []
                close: dict[str, Any] | None = None
                async with asyncio.timeout(10):
                    async for message in sse_events(r):
                        if message.get("event") == "close":
                            close = json.loads(message["data"])
                        else:
                            got.append(int(message["id"]))
            assert close is not None, "the stream ended without a close event"
            reason = close["reason"]
            assert reason.startswith(f"slow consumer: buffer limit {limit} reached at position ")
            assert reason.endswith("; reconnect with Last-Event-ID")
            stats = gateway.broadcaster.stats
            assert stats.slow_consumer_drops == 1
            assert 0 < stats.max_queue_depth <= limit
            # resuming after the last event received brings the rest of the burst, once
            last = got[-1] if got else burst[0] - 1
            headers["Last-Event-ID"] = str(last)
            rest: list[int] = []
            async with http.stream("GET", f"/v1/streams/{TOPIC}", headers=headers) as r:
                async for message in sse_events(r):
                    rest.append(int(message["id"]))
                    if rest[-1] == burst[-1]:
                        break
            assert got + rest == burst
            assert gateway.broadcaster.stats.max_queue_depth <= limit


async def test_a_slow_sdk_subscriber_is_closed_and_recovers_every_event(
    store: EventStore, tmp_path: Path
) -> None:
    """Closed as a slow consumer, the SDK reconnects with Last-Event-ID and misses nothing."""
    limit = 3
    with Gateway(store, tmp_path, queue_limit=limit) as gateway:
        closes: list[str] = []
        received: list[int] = []
        async with Client(gateway.url, "admin") as client:

            async def consume(count: int) -> None:
                async for event in client.subscribe(TOPIC, start="latest", on_close=closes.append):
                    received.append(event.position)
                    if len(received) == count:
                        return

            task = asyncio.create_task(consume(40))
            await until(lambda: gateway.broadcaster.stats.live == 1, 10, "a live subscriber")
            burst = append(store, farms(0, 40))
            async with asyncio.timeout(20):
                await task
        assert received == burst
        assert closes
        assert closes[0].startswith(f"slow consumer: buffer limit {limit} reached at position")
        assert client.reconnects >= 1
        assert gateway.broadcaster.stats.max_queue_depth <= limit


async def test_websocket_twin_delivers_the_same_events(gateway: Gateway, store: EventStore) -> None:
    websockets = pytest.importorskip("websockets.asyncio.client")
    expected = append(store, farms(0, 12) + holds(3))
    url = f"ws://127.0.0.1:{gateway.port}/v1/streams/{TOPIC}/ws?start=earliest"
    async with websockets.connect(url, additional_headers={"X-API-Key": "admin"}) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello == {"event": "subscribed", "topic": TOPIC, "after": 0}
        frames = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in expected]
    assert [frame["id"] for frame in frames] == expected
    assert [frame["data"]["position"] for frame in frames] == expected
    async with Client(gateway.url, "admin") as client:
        sse = await take(client, len(expected))
    assert [(f["id"], f["event"]) for f in frames] == [(e.position, e.envelope.type) for e in sse]
    # resume after a position, as SSE's Last-Event-ID
    resume = f"{url}&last_event_id={expected[9]}&types=HoldExpired"
    async with websockets.connect(resume, additional_headers={"X-API-Key": "admin"}) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["after"] == expected[9]
        tail = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(3)]
    assert [frame["id"] for frame in tail] == expected[12:]
    # refused in the handshake, with the HTTP status and reason of the SSE route
    from websockets.exceptions import InvalidStatus

    for path, key, code in (
        ("hero.nothing/ws", "admin", 404),
        (f"{TOPIC}/ws?start=yesterday", "admin", 400),
        ("hero.policies/ws", "dev", 403),
        (f"{TOPIC}/ws", "nobody", 401),
    ):
        bad = f"ws://127.0.0.1:{gateway.port}/v1/streams/{path}"
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(bad, additional_headers={"X-API-Key": key}):
                pass
        assert refused.value.response.status_code == code
        assert b"message" in refused.value.response.body


async def test_filters_and_scopes(gateway: Gateway, store: EventStore) -> None:
    positions = append(store, farms(0, 4) + holds(2) + farms(0, 3, farm="farm-a"))
    async with Client(gateway.url, "admin") as admin:
        only_holds = await take(admin, 2, types=["HoldExpired"])
        assert [e.position for e in only_holds] == positions[4:6]
        assert all(isinstance(e.event, HoldExpired) for e in only_holds)
        farm_2 = await take(admin, 1, farm="farm-2")
        assert [e.position for e in farm_2] == [positions[2]]
        from_position = await take(admin, 3, start=positions[6])
        assert [e.position for e in from_position] == positions[6:]
    async with Client(gateway.url, "farmer-a") as farmer:
        mine = await take(farmer, 3)
        assert [e.position for e in mine] == positions[6:]
        assert {e.envelope.payload["farm_id"] for e in mine} == {"farm-a"}
    async with Client(gateway.url, "dev") as developer:
        with pytest.raises(GatewayError) as refused:
            await _first(developer, "hero.policies")
        assert refused.value.status == 403
    async with Client(gateway.url, "admin") as admin:
        with pytest.raises(GatewayError) as unknown:
            await _first(admin, "hero.nothing")
        assert unknown.value.status == 404
        assert "hero.reservations" in unknown.value.message
        for params, code in (({"start": "yesterday"}, 400), ({"types": ["NoSuchEvent"]}, 422)):
            with pytest.raises(GatewayError) as bad:
                await _first(admin, TOPIC, **params)
            assert bad.value.status == code


async def _first(client: Client, topic: str, **params: Any) -> StreamEvent:
    async with asyncio.timeout(5):
        async for event in client.subscribe(topic, **params):
            return event
    raise AssertionError("no event")


async def test_hero_tail_via_gateway_prints_the_stream(
    gateway: Gateway, store: EventStore, capsys: pytest.CaptureFixture[str]
) -> None:
    positions = append(store, farms(0, 3) + holds(2))
    await tailing._follow_gateway(
        gateway.url, "admin", TOPIC, "earliest", "HoldExpired", None, 2.0, as_json=True
    )
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [record["position"] for record in printed] == positions[3:]
    assert {record["type"] for record in printed} == {"HoldExpired"}
    await tailing._follow_gateway(
        gateway.url, "admin", TOPIC, "earliest", None, 4, None, as_json=False
    )
    out = capsys.readouterr().out
    assert out.count("FarmRegistered") == 3
    assert "HoldExpired" in out


async def test_heartbeats_keep_an_idle_stream_open(store: EventStore, tmp_path: Path) -> None:
    with Gateway(store, tmp_path, heartbeat_s=0.2) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
            headers = {"X-API-Key": "admin"}
            async with http.stream("GET", f"/v1/streams/{TOPIC}", headers=headers) as r:
                comments: list[str] = []
                async with asyncio.timeout(5):
                    async for line in r.aiter_lines():
                        if line.startswith(":"):
                            comments.append(line)
                        if comments.count(": heartbeat") == 2:
                            break
        assert comments[0] == f": hero stream {TOPIC}"


async def test_a_developer_never_sees_an_offtaker_named_while_it_listens(
    gateway: Gateway, store: EventStore
) -> None:
    """Live, too: the offtaker of an RFQ is learned before the RFQ and the hold events after it
    (which name no offtaker_id) are rendered for developers."""
    from hero.gateway.offtakers import directory_for

    base = append(store, farms(0, 1))

    async def listen() -> list[StreamEvent]:
        async with Client(gateway.url, "dev") as developer:
            return await take(developer, 3, start=base[-1] + 1)

    listener = asyncio.create_task(listen())
    await until(lambda: gateway.broadcaster.stats.live >= 1, 10, "a live subscriber")
    rfq = RfqIssued(
        negotiation_id="NewCo.web.1",
        offtaker_id="NewCo",
        workload_id="web",
        resources=Resources.from_gb(cru=1, mru_gb=1, sru_gb=10),
        replicas=1,
        grids=[Grid.GRID3],
        min_uptime_pct=Decimal(95),
        max_price_cu_hour=Money.of("0.05", "USD"),
        term_hours=720,
        deadline=datetime.now(UTC),
    )
    held = CapacityHeld(
        node_id="node-1",
        hold_id="NewCo.web.1.farm-0.0",
        negotiation_id="NewCo.web.1",
        resources=Resources.from_gb(cru=1, mru_gb=1, sru_gb=10),
        expires_at=datetime.now(UTC),
    )
    released = HoldReleased(node_id="node-1", hold_id="NewCo.web.1.farm-0.0", reason="lost")
    positions = append(store, [rfq], stream="nego-NewCo.web.1")
    positions += append(store, [held, released], stream="node-node-1")
    got = await asyncio.wait_for(listener, 20)
    assert [event.position for event in got] == positions
    for event in got:
        assert "newco" not in event.envelope.model_dump_json().lower()
    alias = directory_for(gateway.context).pseudonyms.of("NewCo")
    assert got[0].envelope.stream == f"nego-{alias}.web.1"
    assert "max_price_cu_hour" not in got[0].envelope.payload
    assert got[2].envelope.payload["hold_id"] == f"{alias}.web.1.farm-0.0"
    assert isinstance(got[2].event, HoldReleased)  # masked ids still decode in the SDK


async def test_admin_and_developer_views_of_the_shared_catch_up(
    gateway: Gateway, store: EventStore
) -> None:
    """Both classes read the same cached rows; each gets its own rendering, once per row."""
    from hero.gateway._stream_rules import redacted_for_developer
    from hero.gateway.offtakers import directory_for

    now = datetime.now(UTC)
    new = [NewEvent.of(e, actor="gateway:k-secret", occurred_at=now) for e in farms(0, 30)]
    result = store.append("market-dev", ANY_VERSION, new, command_id="cmd-dev")
    expected = list(range(result.first_position, result.last_position + 1))

    async def read(key: str, **params: str) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
            headers = {"X-API-Key": key, **params}
            async with http.stream("GET", f"/v1/streams/{TOPIC}", headers=headers) as r:
                async with asyncio.timeout(10):
                    async for message in sse_events(r):
                        got.append({"_pos": int(message["id"]), **json.loads(message["data"])})
                        if got[-1]["_pos"] == expected[-1]:
                            break
        return got

    admin, dev, admin_again, resumed = await asyncio.gather(
        read("admin"), read("dev"), read("admin"), read("dev", **{"Last-Event-ID": "12"})
    )
    assert [m["_pos"] for m in admin] == expected == [m["_pos"] for m in dev]
    assert admin == admin_again
    assert resumed == dev[12:]
    assert {m["actor"] for m in admin} == {"gateway:k-secret"}
    assert {m["actor"] for m in dev} == {"gateway"}
    for full, redacted in zip(admin, dev, strict=True):
        assert redacted == redacted_for_developer(full, directory_for(gateway.context).pseudonyms)
    assert gateway.broadcaster.stats.store_reads >= 1
    assert gateway.broadcaster.stats.cache_hits >= 1
