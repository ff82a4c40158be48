"""``hero utilization inject`` without a broker: the workload's live replicas looked up in the
store, and the argument errors that stop it before anything is sent. The stack and Kafka are
replaced by fakes that record what would have been sent."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import infra
from hero.cli import app as hero_app
from hero.cli import common, utilization
from hero.cli.utilization import SampledReplica, build_samples, live_replicas
from hero.config import HeroSettings
from hero.readmodels.workloads import (
    AmbiguousWorkload,
    UnknownWorkload,
    WorkloadLookupError,
    read_workloads,
)
from hero.store import MemoryEventStore, open_store
from schemas import UtilizationSampled
from tests.unit.test_workloads_view import T0, WorkloadLog, spec

AT = T0.isoformat()
Sent = list[tuple[str, list[tuple[UtilizationSampled, int]]]]


def fill(log: WorkloadLog) -> None:
    """acme's web: k1 ended, k2 and k3 live; beta has a web too; acme's api has no replica."""
    log.mandate("acme", spec("web", replicas=2), spec("api", replicas=1))
    log.mandate("beta", spec("web", replicas=1))
    log.contract("k1", node="n1")
    log.contract("k2", node="n2")
    log.placed("k2", node="n2", replica="web-r1")
    log.cancel("k1", "n1", "scaled down", T0 + timedelta(minutes=1))
    log.contract("k3", node="n3")
    log.contract("b1", offtaker="beta", workload="web", node="n9")
    log.contract("e1", offtaker="beta", workload="etl", node="n8")


# -- the lookup -----------------------------------------------------------------------------------


def test_a_workloads_live_replicas_each_sampled_as_its_contract() -> None:
    log = WorkloadLog(MemoryEventStore())
    fill(log)
    view = read_workloads(log.store)
    row, replicas = live_replicas(view, "acme/web")
    assert row.ref == "acme/web"
    assert replicas == [SampledReplica("k2", "k2", "n2"), SampledReplica("k3", "k3", "n3")]
    row, replicas = live_replicas(view, "etl")
    assert (row.offtaker_id, replicas) == ("beta", [SampledReplica("e1", "e1", "n8")])


def test_a_workload_without_a_live_replica_or_a_single_owner_cannot_be_sampled() -> None:
    log = WorkloadLog(MemoryEventStore())
    fill(log)
    view = read_workloads(log.store)
    with pytest.raises(WorkloadLookupError, match="acme/api has no live replica"):
        live_replicas(view, "api")
    with pytest.raises(AmbiguousWorkload, match=r"\(acme, beta\)"):
        live_replicas(view, "web")
    with pytest.raises(UnknownWorkload, match="offtaker beta has no workload api"):
        live_replicas(view, "beta/api")


# -- the command, against fakes -------------------------------------------------------------------


@dataclass
class FakeEndpoints:
    kafka_bootstrap: str = "broker.test:9092"


class FakeStack:
    def __init__(self, settings: HeroSettings) -> None:
        self.settings = settings

    def endpoints(self) -> FakeEndpoints:
        return FakeEndpoints()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    """What ``inject`` sends, instead of sending it."""
    calls: Sent = []

    async def publish(
        bootstrap: str, samples: list[tuple[UtilizationSampled, int]], data_dir: Path
    ) -> None:
        calls.append((bootstrap, list(samples)))

    monkeypatch.setattr(utilization, "_publish", publish)
    monkeypatch.setattr(infra, "LocalStack", FakeStack)
    monkeypatch.setattr(common.console, "_width", 250)
    return calls


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    store = open_store(HeroSettings(data_dir=tmp_path).effective_store_url)
    try:
        fill(WorkloadLog(store))
    finally:
        store.close()
    return tmp_path


def inject(data_dir: Path, *args: str) -> Result:
    command = ["utilization", "inject", *args, "--at", AT, "--for", "1m", "--every", "15s"]
    return CliRunner().invoke(hero_app, [*command, "--data-dir", str(data_dir)])


def test_a_workload_alone_sends_samples_for_each_live_replica(data_dir: Path, sent: Sent) -> None:
    result = inject(data_dir, "--workload", "acme/web", "--cpu", "0.8", "--json")
    assert result.exit_code == 0, result.output
    ((bootstrap, samples),) = sent
    assert bootstrap == "broker.test:9092"
    assert [(s.replica_id, s.contract_id, s.node_id) for s, _ in samples] == [
        *[("k2", "k2", "n2")] * 4,
        *[("k3", "k3", "n3")] * 4,
    ]
    assert {s.workload_id for s, _ in samples} == {"web"}
    assert {str(s.cpu) for s, _ in samples} == {"0.8"}
    assert samples[0][0].sample_id == f"web.k2.{int(T0.timestamp())}"
    report = json.loads(result.stdout)
    assert report["sent"] == 8
    assert (report["offtaker_id"], report["workload_id"]) == ("acme", "web")
    assert report["replicas"] == [
        {"replica_id": "k2", "contract_id": "k2", "node_id": "n2", "sent": 4},
        {"replica_id": "k3", "contract_id": "k3", "node_id": "n3", "sent": 4},
    ]
    assert (report["first"], report["last"]) == (AT, (T0 + timedelta(seconds=45)).isoformat())
    assert "contract_id" not in report


def test_the_text_report_counts_each_replica(data_dir: Path, sent: Sent) -> None:
    result = inject(data_dir, "--workload", "etl")
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert out.startswith("sent 4 samples for workload beta/etl (1 replica) from 2026-03-02 09:00")
    assert "to broker.test:9092 e1 on n8: 4" in out
    assert len(sent) == 1


def test_contract_and_node_name_one_replica_as_before(data_dir: Path, sent: Sent) -> None:
    args = ("--workload", "wl", "--contract", "c", "--node", "n")
    result = inject(data_dir, *args, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["sent"] == 4
    assert (report["workload_id"], report["replica_id"], report["contract_id"]) == (
        "wl",
        "wl-r0",
        "c",
    )
    assert report["offtaker_id"] is None
    assert report["replicas"] == [
        {"replica_id": "wl-r0", "contract_id": "c", "node_id": "n", "sent": 4}
    ]
    text = inject(data_dir, *args, "--replica", "r7")
    assert text.exit_code == 0, text.output
    assert " ".join(text.stdout.split()).startswith("sent 4 samples for c (wl) from ")
    assert {s.replica_id for s, _ in sent[-1][1]} == {"r7"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--contract", "k2"], "--contract needs --node"),
        (["--node", "n2"], "--node needs --contract"),
        (["--replica", "r1"], "--replica goes with --contract and --node"),
    ],
)
def test_half_a_replica_fails_before_anything_is_sent(
    data_dir: Path, sent: Sent, args: list[str], message: str
) -> None:
    result = inject(data_dir, "--workload", "acme/web", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert sent == []


@pytest.mark.parametrize(
    ("workload", "message"),
    [
        ("web", "workload web belongs to 2 offtakers (acme, beta): name one as OFFTAKER/web"),
        ("api", "workload acme/api has no live replica"),
        ("nope", "no offtaker has a workload nope"),
        ("acme/etl", "offtaker acme has no workload etl"),
    ],
)
def test_a_workload_that_names_no_live_replica_fails_before_anything_is_sent(
    data_dir: Path, sent: Sent, workload: str, message: str
) -> None:
    result = inject(data_dir, "--workload", workload)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert sent == []


def test_bad_options_fail_before_the_store_is_read(tmp_path: Path, sent: Sent) -> None:
    result = inject(tmp_path, "--workload", "web", "--cpu", "lots")
    assert result.exit_code == 2
    assert "--cpu: 'lots' is not a number" in " ".join(result.stderr.split())
    assert not (tmp_path / "events.db").exists()
    assert sent == []


def test_build_samples_still_spans_the_grid() -> None:
    samples = build_samples(
        workload_id="wl",
        replica_id="r0",
        contract_id="c",
        node_id="n",
        start=T0,
        span=timedelta(minutes=1),
        every=timedelta(seconds=20),
        cpu=Decimal("0.5"),
    )
    epochs = [epoch for _, epoch in samples]
    first = samples[0][0]
    assert epochs == [int((T0 + timedelta(seconds=s)).timestamp()) for s in (0, 20, 40)]
    assert (first.interval_s, first.contract_id, first.node_id) == (20, "c", "n")
