"""The Grid 3 and Grid 4 clients against a real HTTP server on 127.0.0.1 serving the simulator:
paging with and without the ``count`` header, retries, a grid that stays down, timeouts."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from hero.cli.grids import serve_in_thread, simulator_app
from hero.domain.clock import ManualClock
from hero.grids.grid3 import Grid3Client, GridError, GridUnavailable
from hero.grids.grid4 import Grid4Client
from hero.grids.models import Grid3Farm, Grid3Node, Grid4Node
from hero.grids.simulator import GridSimulator, paginate

T0 = datetime(2026, 2, 1, 12, tzinfo=UTC)
SIM = GridSimulator(21, 14, clock=ManualClock(T0))
BACKOFF = 0.01


def build_app(sim: GridSimulator, calls: dict[str, int]) -> Any:
    api = simulator_app(sim)

    @api.get("/flaky")
    def flaky() -> JSONResponse:
        calls["flaky"] = calls.get("flaky", 0) + 1
        if calls["flaky"] <= 2:
            return JSONResponse({"error": "busy"}, status_code=503)
        return JSONResponse(sim.grid3_farms()[:1])

    @api.get("/down")
    def down() -> JSONResponse:
        calls["down"] = calls.get("down", 0) + 1
        return JSONResponse({"error": "maintenance"}, status_code=503)

    @api.get("/slow")
    async def slow() -> JSONResponse:
        await asyncio.sleep(1.0)
        return JSONResponse([])

    @api.get("/bare/api/v1/nodes")
    def bare(
        page: Annotated[int, Query(ge=1)] = 1, size: Annotated[int, Query(ge=1)] = 50
    ) -> JSONResponse:
        """Grid 4 nodes without a count header: the client must stop at a short page."""
        calls["bare"] = calls.get("bare", 0) + 1
        return JSONResponse(jsonable_encoder(paginate(sim.grid4_nodes(), page, size)))

    return api


@pytest.fixture(scope="module")
def calls() -> dict[str, int]:
    return {}


@pytest.fixture(scope="module")
def base_url(calls: dict[str, int]) -> Iterator[str]:
    with serve_in_thread(build_app(SIM, calls)) as url:
        yield url


async def test_grid3_reads_every_page_of_nodes_farms_and_contracts(base_url: str) -> None:
    async with Grid3Client(base_url, page_size=4, backoff=BACKOFF) as client:
        nodes = [n async for n in client.nodes()]
        farms = [f async for f in client.farms()]
        contracts = [c async for c in client.contracts()]
    assert [n.node_id for n in nodes] == [p["nodeId"] for p in SIM.grid3_nodes()]
    assert len(nodes) > 4
    assert nodes == [Grid3Node.model_validate(p) for p in SIM.grid3_nodes()]
    assert farms == [Grid3Farm.model_validate(p) for p in SIM.grid3_farms()]
    assert [c.contract_id for c in contracts] == [p["contract_id"] for p in SIM.grid3_contracts()]


async def test_the_count_header_ends_the_list_without_asking_for_an_empty_page(
    base_url: str,
) -> None:
    total = len(SIM.grid3_nodes())
    pages: list[int] = []

    async def note(request: httpx.Request) -> None:
        pages.append(int(request.url.params["page"]))

    async with httpx.AsyncClient(event_hooks={"request": [note]}) as http:
        client = Grid3Client(base_url, client=http, page_size=total)
        nodes = [n async for n in client.nodes()]
    assert len(nodes) == total
    assert pages == [1]  # a full page, but the count said that was all


async def test_grid4_reads_every_page(base_url: str) -> None:
    async with Grid4Client(base_url, page_size=3, backoff=BACKOFF) as client:
        nodes = [n async for n in client.nodes()]
        farms = [f async for f in client.farms()]
    assert nodes == [Grid4Node.model_validate(p) for p in SIM.grid4_nodes()]
    assert [f.farm_id for f in farms] == [p["farm_id"] for p in SIM.grid4_farms()]


async def test_grid4_without_a_count_header_stops_at_a_short_or_empty_page(
    base_url: str, calls: dict[str, int]
) -> None:
    total = len(SIM.grid4_nodes())
    for size in (total - 1, total):  # a short last page; an exact fit then an empty page
        calls["bare"] = 0
        async with Grid4Client(
            f"{base_url}/bare/api/v1", page_size=size, backoff=BACKOFF
        ) as client:
            nodes = [n async for n in client.nodes()]
        assert len(nodes) == total
        assert calls["bare"] == 2


async def test_a_503_twice_is_retried_then_succeeds(base_url: str, calls: dict[str, int]) -> None:
    calls["flaky"] = 0
    async with Grid3Client(base_url, retries=3, backoff=BACKOFF) as client:
        farms = [f async for f in client.pages("/flaky", Grid3Farm)]
    assert calls["flaky"] == 3
    assert len(farms) == 1


async def test_a_grid_that_stays_down_raises_grid_unavailable(
    base_url: str, calls: dict[str, int]
) -> None:
    calls["down"] = 0
    async with Grid3Client(base_url, retries=2, backoff=BACKOFF) as client:
        with pytest.raises(GridUnavailable) as caught:
            await client.get("/down")
    assert calls["down"] == 3
    assert caught.value.status == 503
    assert caught.value.url == f"{base_url}/down"
    assert f"{base_url}/down" in str(caught.value)
    assert "503" in str(caught.value)


async def test_a_slow_grid_times_out(base_url: str) -> None:
    async with Grid3Client(base_url, timeout=0.2, retries=1, backoff=BACKOFF) as client:
        with pytest.raises(GridUnavailable, match="timed out") as caught:
            await client.get("/slow")
    assert caught.value.status is None
    assert caught.value.attempts == 2


async def test_an_unreachable_grid_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with Grid4Client(f"http://127.0.0.1:{port}", retries=1, backoff=BACKOFF) as client:
        with pytest.raises(GridUnavailable, match="cannot connect"):
            [n async for n in client.nodes()]


async def test_a_4xx_is_an_error_at_once_not_retried(base_url: str) -> None:
    async with Grid3Client(base_url, retries=3, backoff=BACKOFF) as client:
        with pytest.raises(GridError) as caught:
            await client.get("/no-such-list")
    assert caught.value.status == 404
    assert not isinstance(caught.value, GridUnavailable)


async def test_an_item_that_does_not_parse_is_skipped_and_counted(base_url: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"nodeId": 1, "farmId": 1}, {"nodeId": "x"}])

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = Grid3Client("http://grid.invalid", client=http)
        nodes = [n async for n in client.nodes()]
    assert [n.node_id for n in nodes] == [1]
    assert client.skipped == 1


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="retries"):
        Grid3Client("http://127.0.0.1:1", retries=-1)
