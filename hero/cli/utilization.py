"""Utilization by hand: inject samples into the stack's Kafka, list the hourly usage facts.

* ``hero utilization inject`` -- the samples one replica would report over a span, sent to
  ``hero.utilization`` of the running stack (its usage worker turns them into facts);
* ``hero usage list`` -- the ``UsageRecorded`` facts in the event store, one per contract-hour.

A sample's id is made of its workload, replica and time, and its sequence number is its time
(epoch seconds): injecting the same span again sends the very same samples, which the usage
worker counts once.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from hero.cli._common import AsJson, DataDir, console, fail, print_json, settings_for
from hero.cli.market import opened_store
from hero.store import EventStore, recorded_after
from schemas import UsageRecorded, UtilizationSampled

__all__ = ["app", "build_samples", "parse_span", "read_usage", "usage_app"]

app = typer.Typer(help="Utilization samples: inject them into the stack.", no_args_is_help=True)
usage_app = typer.Typer(help="Hourly usage facts, from the samples.", no_args_is_help=True)

_SPAN = re.compile(r"^\s*(\d+)\s*([smh])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600}


def parse_span(text: str) -> timedelta:
    """``90s``, ``5m``, ``2h`` as a timedelta; ValueError when it is none of those or zero."""
    match = _SPAN.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 90s, 5m or 2h")
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return timedelta(seconds=seconds)


def build_samples(
    *,
    workload_id: str,
    replica_id: str,
    contract_id: str,
    node_id: str,
    start: datetime,
    span: timedelta,
    every: timedelta,
    cpu: Decimal,
    memory: Decimal = Decimal("0.5"),
    disk: Decimal = Decimal("0.1"),
    network_bytes: int = 0,
) -> list[tuple[UtilizationSampled, int]]:
    """One sample every ``every`` from ``start`` (included) to ``start + span`` (excluded), each
    standing for ``every`` of running; with its sequence number (its epoch second)."""
    interval_s = int(every.total_seconds())
    samples = []
    moment, end = start.astimezone(UTC), start.astimezone(UTC) + span
    while moment < end:
        epoch = int(moment.timestamp())
        sample = UtilizationSampled(
            sample_id=f"{workload_id}.{replica_id}.{epoch}",
            workload_id=workload_id,
            replica_id=replica_id,
            contract_id=contract_id,
            node_id=node_id,
            cpu=cpu,
            memory=memory,
            disk=disk,
            network_bytes=network_bytes,
            sampled_at=moment,
            interval_s=interval_s,
        )
        samples.append((sample, epoch))
        moment += every
    return samples


def _span_option(text: str, option: str) -> timedelta:
    try:
        return parse_span(text)
    except ValueError as error:
        fail(f"{option}: {error}")


def _ratio_option(text: str, option: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        fail(f"{option}: {text!r} is not a number")
    if not value.is_finite() or value < 0:
        fail(f"{option}: {text!r} must be a number >= 0")
    return value


def _at_option(text: str | None, span: timedelta, every: timedelta) -> datetime:
    if text is None:
        # The span that ends now, on the --every grid: a re-run soon after sends the same samples.
        step = int(every.total_seconds())
        begin = int((datetime.now(UTC) - span).timestamp())
        return datetime.fromtimestamp(begin - begin % step, UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--at: {text!r} is not an ISO 8601 time such as 2026-01-05T10:00:00Z")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@app.command("inject")
def inject(
    workload: Annotated[str, typer.Option("--workload", help="the workload id")],
    contract: Annotated[str, typer.Option("--contract", help="the contract id")],
    node: Annotated[str, typer.Option("--node", help="the node id")],
    replica: Annotated[
        str | None, typer.Option("--replica", help="the replica id [default: WORKLOAD-r0]")
    ] = None,
    cpu: Annotated[str, typer.Option("--cpu", help="share of the reserved cores in use")] = "0.95",
    memory: Annotated[str, typer.Option("--memory", help="share of the memory in use")] = "0.5",
    disk: Annotated[str, typer.Option("--disk", help="share of the disk in use")] = "0.1",
    span_text: Annotated[
        str, typer.Option("--for", help="how long the span lasts: 90s, 5m, 2h")
    ] = "5m",
    every_text: Annotated[
        str, typer.Option("--every", help="one sample every: 15s, 1m (at most 1h)")
    ] = "15s",
    network_bytes: Annotated[
        int, typer.Option("--network-bytes", help="bytes sent and received, per sample")
    ] = 0,
    at: Annotated[
        str | None,
        typer.Option("--at", help="the span's start, ISO 8601 [default: --for before now]"),
    ] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Send the samples one replica reports over a span to the stack's Kafka."""
    span = _span_option(span_text, "--for")
    every = _span_option(every_text, "--every")
    if every > timedelta(hours=1):
        fail(f"--every: {every_text!r} is longer than an hour")
    if network_bytes < 0:
        fail(f"--network-bytes: {network_bytes} must be >= 0")
    ratios = {
        option: _ratio_option(text, option)
        for option, text in (("--cpu", cpu), ("--memory", memory), ("--disk", disk))
    }
    start = _at_option(at, span, every)
    try:
        samples = build_samples(
            workload_id=workload,
            replica_id=replica or f"{workload}-r0",
            contract_id=contract,
            node_id=node,
            start=start,
            span=span,
            every=every,
            cpu=ratios["--cpu"],
            memory=ratios["--memory"],
            disk=ratios["--disk"],
            network_bytes=network_bytes,
        )
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        fail(f"bad sample: {problems}")

    from infra import LocalStack, StackError

    try:
        bootstrap = LocalStack(settings_for(data_dir)).endpoints().kafka_bootstrap
    except StackError as error:
        fail(str(error), code=1)
    try:
        asyncio.run(_publish(bootstrap, samples))
    except Exception as error:
        fail(f"cannot send the samples to {bootstrap}: {error}", code=1)
    first = samples[0][0].sampled_at if samples else start
    last = samples[-1][0].sampled_at if samples else start
    if as_json:
        print_json(
            {
                "sent": len(samples),
                "workload_id": workload,
                "replica_id": replica or f"{workload}-r0",
                "contract_id": contract,
                "first": first.isoformat(),
                "last": last.isoformat(),
                "interval_s": int(every.total_seconds()),
            }
        )
        return
    console.print(
        f"sent {len(samples)} samples for {escape(contract)} ({escape(workload)}) "
        f"from {first:%Y-%m-%d %H:%M:%S} to {last:%Y-%m-%d %H:%M:%S} UTC, "
        f"every {int(every.total_seconds())} s, to {bootstrap}"
    )


async def _publish(bootstrap: str, samples: list[tuple[UtilizationSampled, int]]) -> None:
    from hero.log.telemetry import TelemetryPublisher

    publisher = TelemetryPublisher(bootstrap, actor="cli")
    try:
        await publisher.send(samples, datetime.now(UTC))
    finally:
        await publisher.close()


# -- hero usage list ---------------------------------------------------------------------------


def read_usage(store: EventStore, contract_id: str | None = None) -> Iterator[UsageRecorded]:
    """The usage facts in log order, of one contract when given."""
    for row in recorded_after(store):
        if row.type == "UsageRecorded":
            fact = row.envelope().decode()
            assert isinstance(fact, UsageRecorded)
            if contract_id is None or fact.contract_id == contract_id:
                yield fact


@usage_app.command("list")
def list_usage(
    contract: Annotated[str | None, typer.Option("--contract", help="only this contract")] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """The hourly usage facts: contract, hour, CU-hours, SU-hours, NU GB, seconds, samples."""
    with opened_store(data_dir) as store:
        facts = sorted(read_usage(store, contract), key=lambda f: (f.contract_id, f.hour))
    if as_json:
        print_json([fact.model_dump(mode="json") for fact in facts])
        return
    if not facts:
        console.print("no usage recorded" + (f" for {escape(contract)}" if contract else ""))
        return
    table = Table("contract", "hour (UTC)", "CU-hours", "SU-hours", "NU GB", "seconds", "samples")
    for fact in facts:
        table.add_row(
            escape(fact.contract_id),
            f"{fact.hour.astimezone(UTC):%Y-%m-%d %H:00}",
            _plain(fact.cu_hours),
            _plain(fact.su_hours),
            _plain(fact.nu_gb),
            str(fact.seconds),
            str(fact.samples),
        )
    console.print(table)


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}" if value else "0"
