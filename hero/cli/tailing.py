"""``hero tail TOPIC``: follow a Kafka topic."""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from typing import Annotated

import typer

from hero.cli._common import AsJson, DataDir, console, fail, settings_for
from hero.log.tail import TailRecord, tail
from infra import LocalStack, StackError


class Start(StrEnum):
    earliest = "earliest"
    latest = "latest"


def render(record: TailRecord) -> str:
    value = record.value
    if value and "type" in value and "stream" in value:
        payload = json.dumps(value.get("payload"), separators=(",", ":"))
        return (
            f"[dim]#{value.get('position')}[/] [bold]{value['type']}[/] "
            f"{value['stream']}@{value.get('version')} {payload[:100]}"
        )
    if value and "reason" in value:
        return f"[red]dead letter[/] {value['reason']}: {value.get('detail', '')[:120]}"
    return f"[red]raw[/] {record.raw!r:.120}"


def tail_command(
    topic: Annotated[str, typer.Argument(help="e.g. hero.reservations, hero.dlq")],
    start: Annotated[Start, typer.Option("--from", help="earliest or latest")] = Start.earliest,
    limit: Annotated[int | None, typer.Option(help="stop after N records")] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="stop after this many seconds without a record")
    ] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Print a topic's records as they arrive (Ctrl-C to stop)."""
    try:
        bootstrap = LocalStack(settings_for(data_dir)).endpoints().kafka_bootstrap
    except StackError as error:
        fail(str(error), code=1)

    async def follow() -> None:
        async for record in tail(
            bootstrap, topic, start=start.value, limit=limit, idle_timeout_s=idle_timeout
        ):
            if as_json:
                typer.echo(
                    json.dumps(
                        record.value
                        if record.value is not None
                        else {"raw": (record.raw or b"").decode(errors="replace")}
                    )
                )
            else:
                console.print(render(record))

    try:
        asyncio.run(follow())
    except LookupError as error:
        fail(str(error), code=1)
    except KeyboardInterrupt:
        pass
