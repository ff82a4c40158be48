"""Utilization by hand: inject samples into the stack's Kafka, list the hourly usage facts.

* ``hero utilization inject`` -- the samples replicas would report over a span, sent to
  ``hero.utilization`` of the running stack (its usage worker turns them into facts): one
  replica's given ``--contract`` and ``--node``, else those of every live replica of the
  ``--workload`` (``W`` or ``OFFTAKER/W``) in the event store, each replica id its contract id;
* ``hero usage list`` -- the ``UsageRecorded`` facts in the event store, one per contract-hour.

A sample's id is made of its workload, replica and time, and its sequence number is its time
(epoch seconds): injecting the same span again sends the very same samples, which the usage
worker counts once. Samples are kept in the stack's telemetry spool before they are sent
(``<data dir>/telemetry/spool.db``): one the broker loses (a restart of the memory-only
broker) is sent again by the usage worker, and counted once.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from hero.cli.common import (
    AsJson,
    DataDir,
    console,
    fail,
    print_json,
    settings_for,
    warn_skipped,
)
from hero.cli.market import opened_store
from hero.readmodels.workloads import (
    WorkloadLookupError,
    WorkloadRow,
    WorkloadsView,
    read_workloads,
)
from hero.store import EventStore, readable_events, recorded_after
from schemas import UsageRecorded, UtilizationSampled

__all__ = [
    "SampledReplica",
    "app",
    "build_samples",
    "live_replicas",
    "parse_span",
    "read_usage",
    "usage_app",
]

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


@dataclass(frozen=True)
class SampledReplica:
    """A replica to send samples for: its id, its contract and the node it runs on."""

    replica_id: str
    contract_id: str
    node_id: str


def live_replicas(view: WorkloadsView, ref: str) -> tuple[WorkloadRow, list[SampledReplica]]:
    """The live replicas of the workload ``ref`` names (``W`` or ``OFFTAKER/W``), each with its
    contract id as replica id. :class:`WorkloadLookupError` when ``ref`` names no workload,
    several, or one with no live replica."""
    row = view.find(ref)
    if not row.live:
        raise WorkloadLookupError(
            f"workload {row.ref} has no live replica to send samples for ({len(row.ended)} ended)"
        )
    replicas = [SampledReplica(r.contract_id, r.contract_id, r.node_id) for r in row.live]
    return row, replicas


def _replicas_option(
    workload: str,
    contract: str | None,
    node: str | None,
    replica: str | None,
    data_dir: Path | None,
) -> tuple[WorkloadRow | None, list[SampledReplica]]:
    """The replica named by --contract and --node, else the workload's live ones in the
    store (with the workload); exits 2 on a workload that names none."""
    if contract is not None and node is not None:
        return None, [SampledReplica(replica or f"{workload}-r0", contract, node)]
    with opened_store(data_dir) as store:
        view = read_workloads(store, decisions_kept=0, on_skip=warn_skipped)
    try:
        return live_replicas(view, workload)
    except WorkloadLookupError as error:
        fail(escape(str(error)))


def _check_pairing(contract: str | None, node: str | None, replica: str | None) -> None:
    if (contract is None) != (node is None):
        given, missing = ("--contract", "--node") if node is None else ("--node", "--contract")
        fail(
            f"{given} needs {missing}: give both for one replica, "
            "or neither to sample every live replica of --workload"
        )
    if replica is not None and contract is None:
        fail("--replica goes with --contract and --node; each live replica's id is its contract")


def _all_samples(
    workload_id: str,
    replicas: list[SampledReplica],
    *,
    start: datetime,
    span: timedelta,
    every: timedelta,
    ratios: dict[str, Decimal],
    network_bytes: int,
) -> list[list[tuple[UtilizationSampled, int]]]:
    """Each replica's samples, in the order of ``replicas``; exits 2 on a bad sample."""
    try:
        return [
            build_samples(
                workload_id=workload_id,
                replica_id=replica.replica_id,
                contract_id=replica.contract_id,
                node_id=replica.node_id,
                start=start,
                span=span,
                every=every,
                cpu=ratios["--cpu"],
                memory=ratios["--memory"],
                disk=ratios["--disk"],
                network_bytes=network_bytes,
            )
            for replica in replicas
        ]
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        fail(f"bad sample: {problems}")


def _send(data_dir: Path | None, samples: list[tuple[UtilizationSampled, int]]) -> str:
    """Send to the running stack's Kafka; its bootstrap address."""
    from hero.log.telemetry import TelemetryNotSent
    from infra import LocalStack, StackError

    settings = settings_for(data_dir)
    try:
        bootstrap = LocalStack(settings).endpoints().kafka_bootstrap
    except StackError as error:
        fail(str(error), code=1)
    try:
        asyncio.run(_publish(bootstrap, samples, settings.data_dir))
    except TelemetryNotSent as error:
        fail(f"{error}; the usage worker sends them once the broker answers", code=1)
    except Exception as error:
        fail(f"cannot send the samples to {bootstrap}: {error}", code=1)
    return bootstrap


@app.command("inject")
def inject(
    workload: Annotated[
        str,
        typer.Option("--workload", help="the workload id; W or OFFTAKER/W without --contract"),
    ],
    contract: Annotated[
        str | None,
        typer.Option(
            "--contract", help="the contract id; without it, every live replica of --workload"
        ),
    ] = None,
    node: Annotated[str | None, typer.Option("--node", help="the node id, with --contract")] = None,
    replica: Annotated[
        str | None,
        typer.Option("--replica", help="the replica id, with --contract [default: WORKLOAD-r0]"),
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
    """Send the samples replicas report over a span to the stack's Kafka: one replica's with
    --contract and --node, else those of every live replica of --workload in the store."""
    _check_pairing(contract, node, replica)
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
    row, replicas = _replicas_option(workload, contract, node, replica, data_dir)
    workload_id = row.workload_id if row is not None else workload
    per_replica = _all_samples(
        workload_id,
        replicas,
        start=start,
        span=span,
        every=every,
        ratios=ratios,
        network_bytes=network_bytes,
    )
    samples = [sample for batch in per_replica for sample in batch]
    bootstrap = _send(data_dir, samples)
    first = min((s.sampled_at for s, _ in samples), default=start)
    last = max((s.sampled_at for s, _ in samples), default=start)
    counts = [(r, len(batch)) for r, batch in zip(replicas, per_replica, strict=True)]
    if as_json:
        print_json(_inject_json(workload_id, row, counts, first, last, every))
        return
    _inject_text(workload, row, counts, (first, last), every, bootstrap)


def _inject_json(
    workload_id: str,
    row: WorkloadRow | None,
    counts: list[tuple[SampledReplica, int]],
    first: datetime,
    last: datetime,
    every: timedelta,
) -> dict[str, object]:
    data: dict[str, object] = {
        "sent": sum(sent for _, sent in counts),
        "workload_id": workload_id,
        "offtaker_id": row.offtaker_id if row is not None else None,
    }
    if row is None:  # one replica, named on the command line: as before
        data["replica_id"] = counts[0][0].replica_id
        data["contract_id"] = counts[0][0].contract_id
    data |= {
        "first": first.isoformat(),
        "last": last.isoformat(),
        "interval_s": int(every.total_seconds()),
        "replicas": [
            {
                "replica_id": r.replica_id,
                "contract_id": r.contract_id,
                "node_id": r.node_id,
                "sent": sent,
            }
            for r, sent in counts
        ],
    }
    return data


def _inject_text(
    workload: str,
    row: WorkloadRow | None,
    counts: list[tuple[SampledReplica, int]],
    span: tuple[datetime, datetime],
    every: timedelta,
    bootstrap: str,
) -> None:
    sent = sum(n for _, n in counts)
    first, last = span
    what = (
        f"{escape(counts[0][0].contract_id)} ({escape(workload)})"
        if row is None
        else f"workload {escape(row.ref)} ({len(counts)} replica{'' if len(counts) == 1 else 's'})"
    )
    console.print(
        f"sent {sent} samples for {what} "
        f"from {first:%Y-%m-%d %H:%M:%S} to {last:%Y-%m-%d %H:%M:%S} UTC, "
        f"every {int(every.total_seconds())} s, to {bootstrap}"
    )
    if row is not None:
        for replica, n in counts:
            console.print(f"  {escape(replica.contract_id)} on {escape(replica.node_id)}: {n}")


async def _publish(
    bootstrap: str, samples: list[tuple[UtilizationSampled, int]], data_dir: Path
) -> None:
    from hero.log.telemetry import TelemetryPublisher
    from hero.store.spool import SampleSpool, spool_path

    spool = SampleSpool(spool_path(data_dir))
    publisher = TelemetryPublisher(bootstrap, actor="cli", spool=spool, retry_for_s=30)
    try:
        await publisher.send(samples, datetime.now(UTC))
    finally:
        await publisher.close()
        spool.close()


# -- hero usage list ---------------------------------------------------------------------------


def read_usage(store: EventStore, contract_id: str | None = None) -> Iterator[UsageRecorded]:
    """The usage facts in log order, of one contract when given."""
    rows = recorded_after(store)
    for _, _, fact in readable_events(rows, warn_skipped, types={"UsageRecorded"}):
        if isinstance(fact, UsageRecorded) and contract_id in (None, fact.contract_id):
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
