"""``hero replay``: rebuild the read models in the running stack's Valkey from the event store.

Each projection named (all by default) is folded again from the first event into a fresh
generation of keys, which replaces the served one only once it is complete (one transaction for
all of them); the old generation is then deleted. Until then the gateway serves the old
documents, and a rebuild that fails leaves them serving. The gateway's projector follows the
swap on its next pass. A row the fold cannot decode is recorded as skipped (see ``hero events
skipped``), and the rebuild goes on.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from redis.asyncio import Redis
from redis.exceptions import RedisError
from rich.table import Table

from hero.cli.common import AsJson, DataDir, console, fail, print_json, settings_for
from hero.cli.market import opened_store
from hero.config import mask_url
from hero.readmodels.projections import PROJECTIONS, UnknownProjection, projection
from hero.readmodels.projector import Projector, RebuildReport
from hero.store import EventStore

__all__ = ["replay"]


def replay(
    name: Annotated[
        str | None,
        typer.Option(
            "--projection",
            help=f"Rebuild only this one: {', '.join(PROJECTIONS)} [default: all]",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Rebuild the read models from the event store: documents and positions."""
    if name is not None:
        try:
            projection(name)
        except UnknownProjection as error:
            fail(str(error))
    redis_url = _redis_url(data_dir)
    with opened_store(data_dir) as store:
        try:
            report = asyncio.run(_rebuild(store, redis_url, name))
        except (RedisError, OSError) as error:
            fail(f"cannot rebuild the read models in {mask_url(redis_url)}: {error}", code=1)
    if as_json:
        print_json(
            {
                "projections": [
                    {"name": n, "documents": report.documents[n], "position": p}
                    for n, p in report.positions.items()
                ],
                "seconds": round(report.seconds, 3),
            }
        )
        return
    table = Table("projection", "documents", "position")
    for each, position in report.positions.items():
        table.add_row(each, str(report.documents[each]), str(position))
    console.print(table)
    console.print(f"rebuilt in {report.seconds:.2f} s")


def _redis_url(data_dir: Path | None) -> str:
    from infra import LocalStack, StackError  # the launcher only when a command needs it

    try:
        return LocalStack(settings_for(data_dir)).endpoints().redis_url
    except StackError as error:
        fail(str(error), code=1)


async def _rebuild(store: EventStore, redis_url: str, name: str | None) -> RebuildReport:
    redis = Redis.from_url(redis_url)
    try:
        return await Projector(store, redis).rebuild(name)
    finally:
        await redis.aclose()
