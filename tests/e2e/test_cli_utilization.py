"""Utilization through the command line: samples injected into the stack's Kafka become, via
the usage worker ``hero up`` runs, an hourly usage fact that ``hero usage list`` shows."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hero.cli.utilization import parse_span
from hero.config import HeroSettings
from hero.domain.billing import hour_of
from hero.domain.usage import usage_fact
from hero.store import ANY_VERSION, NewEvent, open_store
from schemas import ContractCreated, Money, Resources, Sla
from tests._wait import wait_until
from tests.e2e._cli import hero, hero_json, stack_up, store_url

pytestmark = pytest.mark.e2e


def _contract(tag: str, starts_at: datetime) -> ContractCreated:
    return ContractCreated(
        contract_id=f"{tag}-ctr",
        negotiation_id=f"{tag}-nego",
        offer_id=f"{tag}-offer",
        hold_id=f"{tag}-offer",
        offtaker_id=f"{tag}-off",
        workload_id=f"{tag}-wl",
        farm_id=f"{tag}-farm",
        node_id=f"{tag}-node",
        grid="grid4",
        resources=Resources.from_gb(cru=2, mru_gb=4, sru_gb=50),
        price_hour=Money.of("0.05", "USD"),
        term_hours=720,
        sla=Sla(uptime_pct=Decimal(99)),
        starts_at=starts_at,
    )


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data = tmp_path_factory.mktemp("utilization") / "stack"
    with stack_up(data):
        yield data
    assert not (data / "run" / "usage.health").exists()


def test_injected_samples_become_a_usage_fact_via_the_stacks_worker(stack_dir: Path) -> None:
    status = {c["name"]: c for c in hero_json("status", data_dir=stack_dir)}
    usage = status["usage"]
    assert usage["state"] == "up", usage
    assert isinstance(usage["pid"], int)
    assert re.match(r"\d+ samples, \d+ facts", usage["detail"]), usage

    # An existing contract, and a span of its that is over: the whole hour two hours ago and
    # 10 minutes of the next, so the samples themselves close that hour (5 min of lateness).
    hour = hour_of(datetime.now(UTC)) - timedelta(hours=2)
    contract = _contract("util", hour)
    store = open_store(store_url(stack_dir))
    try:
        event = NewEvent.of(contract, actor="test", occurred_at=hour)
        store.append(f"node-{contract.node_id}", ANY_VERSION, [event], f"{contract.contract_id}:c")
    finally:
        store.close()
    args = (
        "utilization", "inject", "--workload", contract.workload_id,
        "--contract", contract.contract_id, "--node", contract.node_id,
        "--at", hour.isoformat(), "--for", "70m", "--every", "15s",
        "--network-bytes", "1000000",
    )  # fmt: skip
    injected = hero(*args, data_dir=stack_dir)
    assert injected.returncode == 0, injected.stderr + injected.stdout
    out = " ".join(injected.stdout.split())
    assert out.startswith(f"sent 280 samples for {contract.contract_id} "), out

    facts = wait_until(
        lambda: hero_json("usage", "list", "--contract", contract.contract_id, data_dir=stack_dir),
        60,
        "the stack's usage worker to record the hour",
        poll_s=0.2,
    )
    assert facts == [usage_fact(contract, hour, 3600, 240 * 1_000_000, 240).model_dump(mode="json")]
    assert facts[0]["samples"] == 240
    assert facts[0]["nu_gb"] == "0.2400000"
    table = " ".join(hero("usage", "list", data_dir=stack_dir).stdout.split())
    assert contract.contract_id in table
    assert f"{hour:%Y-%m-%d %H:00}" in table

    # The same span again sends the same samples: nothing more is counted. Then one more
    # minute after it, on the same partition (same workload), to know the repeats were read.
    again = hero(*args, data_dir=stack_dir)
    assert again.returncode == 0, again.stderr + again.stdout
    later = (*args[:8], "--at", (hour + timedelta(minutes=70)).isoformat(), "--for", "1m")
    assert hero(*later, data_dir=stack_dir).returncode == 0

    def usage_detail() -> str:
        return str(
            {c["name"]: c for c in hero_json("status", data_dir=stack_dir)}["usage"]["detail"]
        )

    wait_until(
        lambda: usage_detail().startswith("284 samples"),
        30,
        "the worker to count the last minute",
        poll_s=0.2,
    )
    assert usage_detail().startswith("284 samples, 1 facts"), usage_detail()
    assert (
        len(hero_json("usage", "list", "--contract", contract.contract_id, data_dir=stack_dir)) == 1
    )


def _send_raw(data: Path, values: list[bytes]) -> None:
    """Records straight to the stack's hero.utilization, as a broken sampler would send them."""
    import asyncio

    from hero.log.producer import new_producer
    from infra import LocalStack

    bootstrap = LocalStack(HeroSettings(data_dir=data)).endpoints().kafka_bootstrap

    async def send() -> None:
        producer = new_producer(bootstrap)
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait("hero.utilization", value=value, key=b"e2e-dlq")
        finally:
            await producer.stop()

    asyncio.run(send())


def test_dead_letters_are_listed_and_replayed_once(stack_dir: Path) -> None:
    # The usage worker meets two records it cannot decode: it dead-letters them with the
    # reason and goes on; `hero dlq list` shows them, `hero dlq replay` re-drives each once.
    tag = datetime.now(UTC).strftime("%H%M%S%f")
    garbage = f"{{not json {tag}".encode()
    binary = b"\xff\xfe" + tag.encode()
    _send_raw(stack_dir, [garbage, binary])

    def original(row: dict[str, Any]) -> bytes:
        value = row["value"] or ""
        return base64.b64decode(value) if row["value_encoding"] == "base64" else value.encode()

    def ours() -> list[dict[str, Any]]:
        rows = hero_json("dlq", "list", "--topic", "hero.utilization", data_dir=stack_dir)
        # the agent hosts, on hero.utilization too, set the same records aside as theirs
        return [
            r
            for r in rows
            if r["consumer"] == "hero-usage"
            and r["key"] == "e2e-dlq"
            and tag.encode() in original(r)
        ]

    letters = wait_until(
        lambda: len(ours()) >= 2 and ours(), 60, "the two dead letters", poll_s=0.2
    )
    assert [(r["consumer"], r["reason"], r["replayed"]) for r in letters] == [
        ("hero-usage", "undecodable", False),
        ("hero-usage", "undecodable", False),
    ]
    assert letters[0]["value"] == garbage.decode()
    assert letters[1]["value_encoding"] == "base64"
    assert original(letters[1]) == binary
    first, second = letters[0]["id"], letters[1]["id"]
    table = " ".join(hero("dlq", "list", "--limit", "1000", data_dir=stack_dir).stdout.split())
    assert first in table
    assert f"{{not json {tag}" in table

    once = hero_json("dlq", "replay", "--id", first, data_dir=stack_dir)
    assert once == {"replayed": [first], "already_replayed": []}
    twice = hero_json("dlq", "replay", "--id", first, data_dir=stack_dir)
    assert twice == {"replayed": [], "already_replayed": [first]}
    # The record went back to hero.utilization: the worker met it again and set it aside anew.
    again = wait_until(
        lambda: len(ours()) >= 3 and ours(), 60, "the replayed record's letter", poll_s=0.2
    )
    assert [r["replayed"] for r in again] == [True, False, False]
    assert again[2]["value"] == garbage.decode()
    assert again[2]["offset"] > letters[0]["offset"]

    unknown = hero("dlq", "replay", "--id", "0123456789abcdef", "--id", second, data_dir=stack_dir)
    assert unknown.returncode == 2, unknown.stderr + unknown.stdout
    assert "no dead letter 0123456789abcdef" in " ".join(unknown.stderr.split())
    assert [r["replayed"] for r in ours()] == [True, False, False]  # nothing replayed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay"], "give --id ID (one or more) or --all, not both"),
        (["replay", "--all", "--id", "0123456789abcdef"], "or --all, not both"),
        (["replay", "--id", "ABC"], "--id: 'ABC' is not a dead letter id"),
        (["list", "--limit", "0"], "--limit: 0 must be between 1 and 100000"),
        (["list", "--topic", "a b"], "--topic: 'a b' is not a topic name"),
    ],
)
def test_bad_dlq_options_exit_2_naming_the_option(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = hero("dlq", *args, data_dir=tmp_path)
    assert result.returncode == 2, result.stderr + result.stdout
    assert message in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--for", "5x"], "--for: '5x' is not a duration"),
        (["--for", "0m"], "--for: '0m' is not a positive duration"),
        (["--every", "2h"], "--every: '2h' is longer than an hour"),
        (["--cpu", "lots"], "--cpu: 'lots' is not a number"),
        (["--at", "yesterday"], "--at: 'yesterday' is not an ISO 8601 time"),
    ],
)
def test_bad_values_exit_2_naming_the_option(tmp_path: Path, args: list[str], message: str) -> None:
    result = hero(
        "utilization", "inject", "--workload", "wl", "--contract", "c", "--node", "n", *args,
        data_dir=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr + result.stdout
    assert message in " ".join(result.stderr.split())


def test_spans_parse() -> None:
    assert parse_span("90s") == timedelta(seconds=90)
    assert parse_span("5m") == timedelta(minutes=5)
    assert parse_span("2h") == timedelta(hours=2)
    with pytest.raises(ValueError, match="not a duration"):
        parse_span("1d")


def _autoscaled_market(data: Path, tag: str) -> None:
    """Two farms (Grid 3 and Grid 4) in a region of the test's own, and a mandate whose
    workload ``api`` autoscales on cpu from 2 replicas."""
    from hero.market.service import MarketService
    from schemas import (
        FarmerPolicy,
        Grid,
        Mandate,
        RegisterFarm,
        RegisterNode,
        ScalingPolicy,
        SetFarmerPolicy,
        SetOfftakerMandate,
        WorkloadSpec,
    )

    replica = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)
    region = f"cli-{tag}"
    store = open_store(store_url(data))
    try:
        service = MarketService(store)
        for grid in (Grid.GRID3, Grid.GRID4):
            farm = f"{tag}-{grid.value}"
            place = {"grid": grid, "country": "BE", "region": region}
            service.handle(RegisterFarm(command_id=f"{farm}:f", farm_id=farm, name=farm, **place))
            service.handle(
                RegisterNode(
                    command_id=f"{farm}:n",
                    node_id=f"{farm}-n",
                    farm_id=farm,
                    total=replica.times(4),
                    **place,
                )
            )
            policy = FarmerPolicy(price_cu_hour=Money.of("0.01", "USD"))
            service.handle(SetFarmerPolicy(command_id=f"{farm}:p", farm_id=farm, policy=policy))
        cpu = ScalingPolicy(metric="cpu", target=Decimal("0.5"), min_replicas=1, max_replicas=6)
        mandate = Mandate(
            workloads=[
                WorkloadSpec(
                    workload_id="api",
                    resources=replica,
                    replicas=2,
                    regions=[region],
                    autoscale=cpu,
                )
            ],
            budget_month=Money.of("500", "USD"),
            max_price_cu_hour=Money.of("0.05", "USD"),
            offer_window_s=Decimal("0.5"),
        )
        service.handle(
            SetOfftakerMandate(command_id=f"{tag}:m", offtaker_id=f"{tag}-off", mandate=mandate)
        )
    finally:
        store.close()


def test_a_spike_injected_by_workload_scales_it_out_as_hero_workloads_shows(
    stack_dir: Path,
) -> None:
    tag = f"cli{int(time.time()) % 100000}"
    ref = f"{tag}-off/api"
    _autoscaled_market(stack_dir, tag)

    def show() -> dict[str, Any]:
        return hero_json("workloads", "show", ref, data_dir=stack_dir)  # type: ignore[no-any-return]

    wait_until(lambda: len(show()["live"]) == 2, 60, "the first two replicas", poll_s=0.2)
    injected = hero_json(
        "utilization", "inject", "--workload", ref, "--cpu", "0.95", "--for", "1m",
        data_dir=stack_dir,
    )  # fmt: skip
    assert [r["sent"] for r in injected["replicas"]] == [4, 4]

    wait_until(lambda: len(show()["live"]) == 4, 60, "the scale-out to 4 replicas", poll_s=0.2)
    [row] = [r for r in hero_json("workloads", "list", data_dir=stack_dir) if r["ref"] == ref]
    assert (row["live"], row["target"]) == (4, 4)
    decision = row["last_decision"]
    assert (decision["reason"], decision["current_replicas"], decision["desired_replicas"]) == (
        "scale_up",
        2,
        4,
    )
    table = " ".join(hero("workloads", "show", ref, data_dir=stack_dir).stdout.split())
    assert "scale_up" in table
