"""``hero grids``: import the real grids into the market, or serve a simulated one.

``hero grids sync --grid3-url URL --grid4-url URL`` reads every farm and node of the Grid 3
grid proxy and/or the Grid 4 node registrar and registers them (running it again writes
nothing new; a node's status change becomes a status change). ``hero grids simulate`` serves
a seeded simulated grid on 127.0.0.1 in the same shapes, so ``sync`` can be pointed at it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from fastapi import FastAPI, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from hero.cli.common import AsJson, DataDir, console, fail, print_json
from hero.domain.clock import SystemClock
from hero.grids.grid3 import Grid3Client, GridError
from hero.grids.grid4 import Grid4Client
from hero.grids.simulator import GridSimulator, paginate
from hero.grids.sync import SyncReport, sync_grids
from hero.store import EventStore, StoreError

__all__ = ["app", "paged_response", "serve_in_thread", "simulator_app"]

app = typer.Typer(help="The real ThreeFold grids: import them, or simulate one.")

HOST = "127.0.0.1"


# -- the simulated grid over HTTP -----------------------------------------------------------------


def paged_response(items: list[Any], page: int, size: int, ret_count: bool) -> JSONResponse:
    """One page as the grid proxy answers it: a JSON list, the total in ``count`` if asked."""
    headers = {"count": str(len(items))} if ret_count else None
    return JSONResponse(jsonable_encoder(paginate(items, page, size)), headers=headers)


def simulator_app(sim: GridSimulator) -> FastAPI:
    """The grid proxy's ``/nodes``, ``/farms``, ``/contracts`` and the registrar's
    ``/api/v1/nodes``, ``/api/v1/farms``, serving ``sim`` at its clock's time."""
    api = FastAPI(title="simulated ThreeFold grids", docs_url=None, redoc_url=None)
    lists: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "/nodes": sim.grid3_nodes,
        "/farms": sim.grid3_farms,
        "/contracts": sim.grid3_contracts,
        "/api/v1/nodes": sim.grid4_nodes,
        "/api/v1/farms": sim.grid4_farms,
    }
    for path, source in lists.items():
        api.add_api_route(path, _lister(source), methods=["GET"])
    return api


def _lister(source: Callable[[], list[dict[str, Any]]]) -> Callable[..., JSONResponse]:
    def route(
        page: Annotated[int, Query(ge=1)] = 1,
        size: Annotated[int, Query(ge=1, le=1000)] = 50,
        ret_count: bool = False,
    ) -> JSONResponse:
        return paged_response(source(), page, size, ret_count)

    return route


@contextmanager
def serve_in_thread(api: Any, port: int = 0, timeout: float = 10) -> Iterator[str]:
    """Serve ``api`` with uvicorn on 127.0.0.1 (``port`` 0: a free one) in a thread; yields
    the base URL, and stops the server on exit."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(128)
    config = uvicorn.Config(api, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    ticker = threading.Event()  # never set: a bounded wait between looks at the flag
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        ticker.wait(0.01)
    if not server.started:
        server.should_exit = True
        thread.join(5)
        sock.close()
        raise RuntimeError("the simulated grid did not start")
    try:
        yield f"http://{HOST}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@app.command("simulate")
def simulate(
    seed: Annotated[int, typer.Option(help="the same seed gives the same grid")] = 1,
    farms: Annotated[int, typer.Option(min=1, max=9999, help="how many farms")] = 12,
    port: Annotated[int, typer.Option(min=0, max=65535, help="port on 127.0.0.1")] = 8080,
) -> None:
    """Serve a simulated Grid 3 proxy and Grid 4 registrar on 127.0.0.1 until Ctrl-C."""
    import uvicorn

    sim = GridSimulator(seed, farms, clock=SystemClock())
    g3 = sum(1 for n in sim.nodes if n.grid.value == "grid3")
    console.print(
        f"simulated grids, seed {seed}: {len(sim.farms)} farms, {len(sim.nodes)} nodes "
        f"({g3} on Grid 3)\n"
        f"  hero grids sync --grid3-url http://{HOST}:{port} --grid4-url http://{HOST}:{port}"
    )
    uvicorn.run(simulator_app(sim), host=HOST, port=port, log_level="warning")


# -- hero grids sync ------------------------------------------------------------------------------


async def _sync(
    store: EventStore,
    grid3_url: str | None,
    grid4_url: str | None,
    request_timeout: float,
    retries: int,
) -> SyncReport:
    options: dict[str, Any] = {"timeout": request_timeout, "retries": retries}
    grid3 = Grid3Client(grid3_url, **options) if grid3_url else None
    grid4 = Grid4Client(grid4_url, **options) if grid4_url else None
    try:
        return await sync_grids(store, grid3=grid3, grid4=grid4)
    finally:
        for client in (grid3, grid4):
            if client is not None:
                await client.aclose()


@app.command("sync")
def sync(
    grid3_url: Annotated[
        str | None,
        typer.Option("--grid3-url", help="the Grid 3 grid proxy, e.g. https://gridproxy.grid.tf"),
    ] = None,
    grid4_url: Annotated[
        str | None, typer.Option("--grid4-url", help="the Grid 4 node registrar")
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds per request")] = 10,
    retries: Annotated[int, typer.Option(min=0, max=10, help="retries of a failing request")] = 3,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Import every farm and node of the grids given; running it again writes nothing new."""
    from hero.cli.market import opened_store

    if not grid3_url and not grid4_url:
        fail("give --grid3-url, --grid4-url or both")
    with opened_store(data_dir) as store:
        try:
            report = asyncio.run(_sync(store, grid3_url, grid4_url, timeout, retries))
        except GridError as error:
            fail(str(error), code=1)
        except StoreError as error:
            fail(str(error), code=1)
    if as_json:
        print_json(report.as_dict())
        return
    for g in report.grids:
        console.print(
            f"{g.grid.value}: farms {g.farms_imported} imported, {g.farms_unchanged} unchanged; "
            f"nodes {g.nodes_imported} imported, {g.nodes_unchanged} unchanged; "
            f"{g.status_changes} status change(s)"
        )
        for line in g.skipped:
            console.print(f"  skipped {line}")
        if g.unparsed:
            console.print(f"  {g.unparsed} item(s) could not be read")
    if not report.written:
        console.print("nothing new: the market is up to date")
