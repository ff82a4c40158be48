"""``hero demo``'s scaling act: the story's autoscaled workload, the samples of the spike, which
node fails, and the whole demo in this process (a spike that scales out across both grids, a
node failure with its migration and SLA outcome, the bills and the refund that follow)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from hero.cli import app as hero_app
from hero.cli import common
from hero.demo import run as demo_module
from hero.demo.scaling import SPIKE_CPU, pick_failing_node, spike_samples
from hero.demo.scenario import DEMO_SLA, SCALED_WORKLOAD, scenario
from hero.market.views import ContractRow
from hero.readmodels.workloads import ReplicaRow
from schemas import Grid, Money, NodeStatus, PolicyMode, Resources, Sla

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SHAPE = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines as long as they are: the output is matched as printed."""
    monkeypatch.setattr(common.console, "_width", 250)
    monkeypatch.setattr(common.errors, "_width", 250)


def replica(contract: str, node: str, started: int = 0, grid: Grid = Grid.GRID3) -> ReplicaRow:
    return ReplicaRow(
        contract_id=contract,
        replica_id=contract,
        farm_id=f"farm-{node}",
        node_id=node,
        grid=grid,
        node_status=NodeStatus.UP,
        price_hour=Money.of("0.02", "USD"),
        started_at=T0 + timedelta(seconds=started),
    )


def contract(contract_id: str, node: str, penalty: str = "50") -> ContractRow:
    return ContractRow(
        contract_id=contract_id,
        negotiation_id="n",
        offer_id="o",
        offtaker_id="acme",
        workload_id="api",
        farm_id=f"farm-{node}",
        node_id=node,
        grid=Grid.GRID3,
        resources=SHAPE,
        price_hour=Money.of("0.02", "USD"),
        term_hours=720,
        sla=Sla(uptime_pct=Decimal(99), penalty_pct=Decimal(penalty)),
        starts_at=T0,
    )


# -- the story ------------------------------------------------------------------------------------


def test_acme_runs_an_api_that_autoscales_on_cpu_across_both_grids() -> None:
    story = scenario("t")
    offtaker, spec = story.scaled
    assert (offtaker, spec.workload_id, spec.replicas) == ("acme-t", SCALED_WORKLOAD, 2)
    assert spec.autoscale is not None
    policy = spec.autoscale
    assert (policy.metric, policy.target, policy.min_replicas, policy.max_replicas) == (
        "cpu",
        Decimal("0.6"),
        2,
        6,
    )
    assert spec.regions == []
    assert set(spec.grids) == {Grid.GRID3, Grid.GRID4}
    # Only one workload autoscales; the others keep their counts.
    autoscaled = [w for m in story.mandates for w in m.mandate.workloads if w.autoscale]
    assert autoscaled == [spec]
    assert story.replicas == 11


def test_farms_that_take_work_refund_a_share_of_a_missed_sla() -> None:
    story = scenario("t")
    active = [p.policy for p in story.policies if p.policy.mode != PolicyMode.OFF]
    refunding = [p for p in active if p.sla.penalty_pct > 0]
    assert len(refunding) == len(active) - 1  # the 98 % farm refunds nothing
    assert sum(p.sla == DEMO_SLA for p in active) == 9


# -- the spike ------------------------------------------------------------------------------------


def test_the_spike_is_one_sample_per_replica_at_the_same_moment() -> None:
    replicas = [replica("c1", "n1"), replica("c2", "n2", grid=Grid.GRID4)]
    at = T0 + timedelta(seconds=1, milliseconds=250)

    samples = spike_samples(replicas, "api", at)

    sequence = int(at.timestamp() * 1000)
    assert [seq for _, seq in samples] == [sequence, sequence]
    assert [(s.contract_id, s.node_id, s.workload_id) for s, _ in samples] == [
        ("c1", "n1", "api"),
        ("c2", "n2", "api"),
    ]
    assert all((s.cpu, s.sampled_at) == (SPIKE_CPU, at) for s, _ in samples)
    assert len({s.sample_id for s, _ in samples}) == 2
    # A later spike's samples are newer versions of each replica's telemetry stream.
    later = spike_samples(replicas, "api", at + timedelta(milliseconds=1))
    assert later[0][1] > sequence


# -- which node fails -----------------------------------------------------------------------------


def test_the_failing_node_is_the_one_that_moves_the_fewest_other_contracts() -> None:
    replicas = [replica("c1", "busy"), replica("c2", "alone", started=5)]
    live = [contract("c1", "busy"), contract("other", "busy"), contract("c2", "alone")]
    terms = {c.contract_id: c for c in live}

    assert pick_failing_node(replicas, live, terms).contract_id == "c2"


def test_among_lone_replicas_one_that_refunds_then_the_oldest_fails() -> None:
    replicas = [replica("c1", "n1"), replica("c2", "n2", started=5), replica("c3", "n3", 9)]
    live = [contract("c1", "n1", penalty="0"), contract("c2", "n2"), contract("c3", "n3")]
    terms = {c.contract_id: c for c in live}

    assert pick_failing_node(replicas, live, terms).contract_id == "c2"


# -- the demo in this process ---------------------------------------------------------------------


def run_demo(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(
        hero_app, ["demo", "--in-process", "--data-dir", str(data_dir), *args]
    )


def test_the_demo_scales_out_migrates_and_refunds_the_sla_in_this_process(tmp_path: Path) -> None:
    result = run_demo(tmp_path, "--json")

    assert result.exit_code == 0, result.stderr + result.stdout
    outcome: dict[str, Any] = json.loads(result.stdout)
    summary = outcome["summary"]
    assert (summary["contracts"], summary["negotiations"], summary["open"]) == (11, 5, 0)
    scaling = summary["scaling"]
    assert scaling["problem"] is None
    assert scaling["workload"] == f"acme-{outcome['run']}/api"
    decision = scaling["decision"]
    assert (decision["reason"], decision["current_replicas"], decision["desired_replicas"]) == (
        "scale_up",
        2,
        4,
    )
    assert (Decimal(decision["value"]), Decimal(decision["target"])) == (SPIKE_CPU, Decimal("0.6"))
    assert scaling["spike_to_decision_ms"] >= 0
    assert scaling["replicas_per_grid"] == {"grid3": 2, "grid4": 2}
    assert len(scaling["placement_totals"]) == 2
    moved = scaling["migration"]
    assert moved["from_node"] != moved["to_node"]
    sla = scaling["sla"]
    assert (sla["contract_id"], sla["met"]) == (moved["from_contract"], False)
    assert Decimal(sla["penalty_usd"]["amount"]) > 0
    assert Decimal(scaling["sla_penalty_paid_tft"]["amount"]) > 0
    # The bills that follow cover the scaled-out contracts and the replacement too; the
    # demo's billing refunded the penalty (no stack treasury here to do it first).
    billed = {b["contract_id"] for b in outcome["payments"]["bills"]}
    added = {r["contract_id"] for r in outcome["scaling"]["spike"]["added"]}
    assert added - {moved["from_contract"]} <= billed
    assert moved["to_contract"] in billed
    assert outcome["payments"]["sla_penalties"] == [moved["from_contract"]]
    assert summary["ledger_balanced"] is True
    # Scores explain each new placement; the failed node is up again for the next run.
    assert all(r["placement"]["total"] for r in outcome["scaling"]["spike"]["added"])
    assert outcome["scaling"]["failure"]["back_up"] is True
    assert "demo ok:" in result.stderr
    assert "api scale_up 2 → 4" in result.stderr
    assert "1 replica migrated" in result.stderr
    assert "sla penalty" in result.stderr


def test_a_demo_run_twice_on_one_store_scales_and_migrates_both_times(tmp_path: Path) -> None:
    first, second = run_demo(tmp_path), run_demo(tmp_path)

    for result in (first, second):
        assert result.exit_code == 0, result.stderr + result.stdout
        assert "1 replica migrated" in result.stdout
        assert "back up" in result.stdout


def test_the_demo_fails_when_the_spike_brings_no_decision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Samples lost on the way: no decision comes, and the demo says so and exits 1."""
    monkeypatch.setattr(demo_module.LocalAgents, "sample", lambda self, samples, at: None)
    original: Callable[..., Any] = demo_module._scale

    def impatient(*args: Any) -> Any:
        return original(*args[:4], 0.5, *args[5:])  # the act waits half a second

    monkeypatch.setattr(demo_module, "_scale", impatient)

    result = run_demo(tmp_path)

    assert result.exit_code == 1
    assert "demo incomplete: no scale decision for acme-" in result.stderr
    assert "/api within 0.5 s" in result.stderr
