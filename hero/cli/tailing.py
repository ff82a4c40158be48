"""``hero tail TOPIC``: follow a Kafka topic, or (``--via gateway``) the gateway's event stream
through the SDK, resuming by position if the connection drops."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Annotated, Any

import typer

from hero.cli.common import AsJson, DataDir, console, fail, settings_for
from hero.log.tail import TailRecord, tail
from hero.sdk import Client, SdkError, StreamEvent
from infra import LocalStack, StackError

__all__ = ["Start", "Via", "render", "render_envelope", "tail_command"]


class Start(StrEnum):
    earliest = "earliest"
    latest = "latest"


class Via(StrEnum):
    kafka = "kafka"
    gateway = "gateway"


def render_envelope(value: dict[str, Any]) -> str:
    payload = json.dumps(value.get("payload"), separators=(",", ":"))
    return (
        f"[dim]#{value.get('position')}[/] [bold]{value['type']}[/] "
        f"{value['stream']}@{value.get('version')} {payload[:100]}"
    )


def render(record: TailRecord) -> str:
    value = record.value
    if value and "type" in value and "stream" in value:
        return render_envelope(value)
    if value and "reason" in value:
        return f"[red]dead letter[/] {value['reason']}: {value.get('detail', '')[:120]}"
    return f"[red]raw[/] {record.raw!r:.120}"


def gateway_url(data_dir: Any) -> str:
    """The running stack's gateway URL, or a clear error."""
    try:
        endpoints = LocalStack(settings_for(data_dir)).endpoints()
    except StackError as error:
        fail(str(error), code=1)
    url = getattr(endpoints, "gateway_url", None)
    if not url:
        fail("the running stack has no gateway (start it with `hero up`)", code=1)
    return str(url)


async def _bounded(
    events: AsyncIterator[StreamEvent], limit: int | None, idle_timeout: float | None
) -> AsyncIterator[StreamEvent]:
    """``events`` until ``limit`` of them, or ``idle_timeout`` seconds without one."""
    count = 0
    while limit is None or count < limit:
        try:
            event = await asyncio.wait_for(anext(events), idle_timeout)
        except (StopAsyncIteration, TimeoutError):
            return
        count += 1
        yield event


async def _follow_gateway(
    url: str,
    key: str,
    topic: str,
    start: str,
    types: str | None,
    limit: int | None,
    idle_timeout: float | None,
    as_json: bool,
) -> None:
    async with Client(url, key) as client:
        events = client.subscribe(topic, start=start, types=types)
        try:
            async for event in _bounded(events, limit, idle_timeout):
                value = event.envelope.model_dump(mode="json")
                if as_json:
                    typer.echo(json.dumps(value))
                else:
                    console.print(render_envelope(value))
        finally:
            await events.aclose()


def tail_command(
    topic: Annotated[str, typer.Argument(help="e.g. hero.reservations, hero.dlq")],
    start: Annotated[Start, typer.Option("--from", help="earliest or latest")] = Start.earliest,
    limit: Annotated[int | None, typer.Option(help="stop after N records")] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="stop after this many seconds without a record")
    ] = None,
    via: Annotated[
        Via, typer.Option(help="kafka: the topic itself; gateway: the gateway's SSE stream")
    ] = Via.kafka,
    key: Annotated[
        str | None,
        typer.Option(
            "--key", envvar="HERO_API_KEY", help="API key for --via gateway", show_default=False
        ),
    ] = None,
    types: Annotated[
        str | None, typer.Option(help="--via gateway: only these event types (comma list)")
    ] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Print a topic's records as they arrive (Ctrl-C to stop)."""
    if via == Via.gateway:
        key = key or os.environ.get("HERO_API_KEY")
        if not key:
            fail("--via gateway needs an API key: --key KEY or HERO_API_KEY", code=2)
        url = gateway_url(data_dir)
        try:
            asyncio.run(
                _follow_gateway(url, key, topic, start.value, types, limit, idle_timeout, as_json)
            )
        except SdkError as error:
            fail(str(error), code=1)
        except KeyboardInterrupt:
            pass
        return
    if types is not None:
        fail("--types works with --via gateway only", code=2)
    try:
        endpoints = LocalStack(settings_for(data_dir)).endpoints()
    except StackError as error:
        fail(str(error), code=1)

    async def follow() -> None:
        async for record in tail(
            endpoints.kafka_bootstrap,
            topic,
            start=start.value,
            limit=limit,
            idle_timeout_s=idle_timeout,
            end_offsets=endpoints.broker == "kafka",
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
