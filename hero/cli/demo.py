"""``hero demo``: the stack end to end — start it, record a small market story, read it back
from Kafka, stop what it started."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from decimal import Decimal
from typing import Annotated

import typer
from rich.table import Table

from hero.cli._common import DataDir, console, fail, settings_for
from hero.config import HeroSettings
from hero.domain.clock import SystemClock
from hero.log.codec import decode_record
from hero.log.tail import tail
from hero.relay import health_path
from hero.store import NO_STREAM, EventStore, NewEvent, open_store
from infra import LocalStack, StackError
from schemas import (
    ContractCreated,
    Event,
    FarmerPolicy,
    FarmerPolicySet,
    FarmRegistered,
    FiatPaymentReceived,
    Grid,
    Mandate,
    Money,
    NodeRegistered,
    OfferMade,
    OfftakerMandateSet,
    Resources,
    RfqIssued,
    Sla,
    WorkloadSpec,
    new_id,
)


def _story(tag: str) -> list[tuple[str, Event]]:
    """One negotiation's worth of facts, as (stream, event)."""
    now = SystemClock().now()
    farm, node, offtaker, nego = f"farm-{tag}", f"node-{tag}", f"acme-{tag}", f"nego-{tag}"
    usd = Money.of
    replica = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)
    sla = Sla(uptime_pct=Decimal("99.5"), penalty_pct=Decimal("10"))
    policy = FarmerPolicy(
        price_cu_hour=usd("0.0306", "USD"),
        price_su_hour=usd("0.0194", "USD"),
        reserve_share=Decimal("0.2"),
        max_term_hours=8760,
        sla=sla,
    )
    mandate = Mandate(
        workloads=[WorkloadSpec(workload_id="web", resources=replica, replicas=2)],
        budget_month=usd("500", "USD"),
        max_price_cu_hour=usd("0.05", "USD"),
        prefer_grid=Grid.GRID4,
    )
    return [
        (
            farm,
            FarmRegistered(
                farm_id=farm,
                name="Demo Farm",
                grid=Grid.GRID4,
                country="BE",
                region="europe",
                certified=True,
            ),
        ),
        (
            node,
            NodeRegistered(
                node_id=node,
                farm_id=farm,
                grid=Grid.GRID4,
                country="BE",
                region="europe",
                total=Resources.from_gb(cru=32, mru_gb=128, sru_gb=2000),
            ),
        ),
        (farm, FarmerPolicySet(farm_id=farm, policy=policy)),
        (offtaker, OfftakerMandateSet(offtaker_id=offtaker, mandate=mandate)),
        (
            nego,
            RfqIssued(
                negotiation_id=nego,
                offtaker_id=offtaker,
                workload_id="web",
                resources=replica,
                replicas=2,
                regions=["europe"],
                grids=[Grid.GRID4],
                min_uptime_pct=Decimal("99"),
                max_price_cu_hour=usd("0.05", "USD"),
                term_hours=720,
                deadline=now + timedelta(minutes=5),
            ),
        ),
        (
            nego,
            OfferMade(
                negotiation_id=nego,
                offer_id=f"offer-{tag}",
                farm_id=farm,
                node_id=node,
                hold_id=f"offer-{tag}",
                grid=Grid.GRID4,
                region="europe",
                uptime_pct=Decimal("99.5"),
                resources=replica,
                price_hour=usd("0.0612", "USD"),
                term_hours=720,
                sla=sla,
                firm=True,
                expires_at=now + timedelta(minutes=5),
            ),
        ),
        (
            f"contract-{tag}",
            ContractCreated(
                contract_id=f"contract-{tag}",
                negotiation_id=nego,
                offer_id=f"offer-{tag}",
                hold_id=f"offer-{tag}",
                offtaker_id=offtaker,
                workload_id="web",
                farm_id=farm,
                node_id=node,
                grid=Grid.GRID4,
                resources=replica,
                price_hour=usd("0.0612", "USD"),
                term_hours=720,
                sla=sla,
                starts_at=now,
            ),
        ),
        (
            f"account-{offtaker}",
            FiatPaymentReceived(
                payment_id=f"pay-{tag}",
                provider="stripe",
                provider_event_id=f"evt_{tag}",
                offtaker_id=offtaker,
                account_id=f"account-{offtaker}",
                amount=usd("100.00", "EUR"),
            ),
        ),
    ]


def _record(store: EventStore, story: list[tuple[str, Event]], correlation: str) -> int:
    clock = SystemClock()
    for stream, event in story:
        new = NewEvent.of(event, actor="demo", occurred_at=clock.now(), correlation_id=correlation)
        result = store.append(stream, _next(store, stream), [new], new_id("cmd"))
        console.print(
            f"  appended [bold]{new.type}[/] to {stream} "
            f"(version {result.last_version}, position {result.last_position})"
        )
    return store.current_position()


def _next(store: EventStore, stream: str) -> int:
    return store.stream_version(stream) if store.stream_version(stream) else NO_STREAM


def _wait_for_relay(settings: HeroSettings, position: int, timeout_s: float = 30) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if json.loads(health_path(settings).read_text())["position"] >= position:
                return time.monotonic() - started
        except (FileNotFoundError, ValueError, KeyError):
            pass
        time.sleep(0.05)  # polling a file the relay rewrites; nothing to block on
    fail(f"the relay did not reach position {position} within {timeout_s:.0f} s", code=1)


async def _read_back(bootstrap: str, correlation: str, count: int) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    for topic in ("hero.reservations", "hero.policies", "hero.payments"):
        async for record in tail(bootstrap, topic, idle_timeout_s=1.0):
            if record.value and record.value.get("correlation_id") == correlation:
                decode_record(record.raw)  # what any consumer does: envelope and schema check
                found.append(record.value | {"topic": topic})
    return sorted(found, key=lambda v: int(str(v["position"])))[:count]


def demo(
    keep: Annotated[bool, typer.Option(help="leave the stack running afterwards")] = False,
    data_dir: DataDir = None,
) -> None:
    """Start the stack, append a negotiation's events, read them back from Kafka, stop."""
    settings = settings_for(data_dir)
    stack = LocalStack(settings)
    try:
        report = stack.up()
    except StackError as error:
        fail(str(error), code=1)
    started = not report.already_running
    state = f"started, healthy in {report.seconds:.1f} s" if started else "already running"
    console.print(f"[bold]stack[/] {state}")
    try:
        endpoints = stack.endpoints()
        store = open_store(endpoints.store_url)
        tag = new_id("demo")[-8:]
        correlation = new_id("demo")
        story = _story(tag)
        console.print(f"[bold]recording {len(story)} events[/] in the event store")
        position = _record(store, story, correlation)
        store.close()
        waited = _wait_for_relay(settings, position)
        console.print(f"[bold]relay[/] confirmed position {position} to Kafka in {waited:.2f} s")
        rows = asyncio.run(_read_back(endpoints.kafka_bootstrap, correlation, len(story)))
        table = Table("topic", "position", "type", "stream@version", title="read back from Kafka")
        for row in rows:
            table.add_row(
                str(row["topic"]),
                str(row["position"]),
                str(row["type"]),
                f"{row['stream']}@{row['version']}",
            )
        console.print(table)
        if len(rows) != len(story):
            fail(f"read back {len(rows)} of {len(story)} events from Kafka", code=1)
        console.print(f"[bold green]demo ok:[/] {len(rows)} events stored, relayed and consumed")
    finally:
        if started and not keep:
            stack.down()
            console.print("stack stopped")
        elif keep:
            console.print(f"stack left running under {settings.data_dir} (hero down to stop)")
