"""``hero workloads list`` and ``show`` against a data dir whose event store the test fills."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from hero.cli import app as hero_app
from hero.cli import common
from hero.cli.workloads import fmt_autoscale
from hero.config import HeroSettings
from hero.store import open_store
from schemas import Grid, NodeStatus, ScalingPolicy
from tests.unit.test_workloads_view import CPU, SCORES, T0, WorkloadLog, spec


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as wide as they need: ids are not wrapped."""
    monkeypatch.setattr(common.console, "_width", 250)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """Two offtakers with a ``web`` each; acme's scaled, placed, and migrated once."""
    store = open_store(HeroSettings(data_dir=tmp_path).effective_store_url)
    try:
        log = WorkloadLog(store)
        log.mandate("acme", spec("web", replicas=2), spec("api", replicas=1, autoscale=None))
        log.mandate("beta", spec("web", replicas=1, autoscale=None))
        log.contract("k1", node="n1", grid=Grid.GRID4)
        log.placed("k1", node="n1", replica="web-r0", total="0.61")
        log.contract("k2", node="n2", grid=Grid.GRID3, price="0.04")
        log.placed("k2", node="n2", grid=Grid.GRID3, replica="web-r1", total="0.55")
        log.decided(2, 3, at=T0 + timedelta(minutes=5))
        log.contract("k3", node="n3", grid=Grid.GRID3, at=T0 + timedelta(minutes=6))
        moved = T0 + timedelta(hours=2)
        log.node_status("n1", NodeStatus.DOWN, T0 + timedelta(hours=1))
        log.contract("k4", node="n4", grid=Grid.GRID4, at=moved)
        log.migrated("k1", "k4", from_node="n1", to_node="n4", at=moved)
        log.sla("k1", node="n1", met=False, penalty="0.01", at=moved)
        log.cancel("k1", "n1", "migrated", moved)
        log.contract("b1", offtaker="beta", workload="web", node="n9", farm="f9")
    finally:
        store.close()
    return tmp_path


def hero(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(hero_app, [*args, "--data-dir", str(data_dir)])


def table_rows(text: str) -> list[list[str]]:
    """A rich table's body rows, cell by cell."""
    return [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in text.splitlines()
        if line.startswith("│")
    ]


def words(text: str) -> str:
    return " ".join(text.split())


# -- list ---------------------------------------------------------------------------------------


def test_list_shows_one_row_per_workload_with_grids_counts_and_the_last_decision(
    data_dir: Path,
) -> None:
    result = hero(data_dir, "workloads", "list")
    assert result.exit_code == 0, result.output
    rows = {(row[0], row[1]): row[2:] for row in table_rows(result.stdout)}
    assert rows == {
        ("acme", "api"): ["-", "0/1", "-", "-"],
        ("acme", "web"): [
            "grid3 2, grid4 1",
            "3/3",
            "cpu 0.7 1-6",
            "scale_up (2→3) 2026-03-02 09:05:00",
        ],
        ("beta", "web"): ["grid4 1", "1/1", "-", "-"],
    }


def test_list_json_is_machine_readable(data_dir: Path) -> None:
    result = hero(data_dir, "workloads", "list", "--offtaker", "acme", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["ref"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"acme/api", "acme/web"}
    web = rows["acme/web"]
    assert web["grids"] == {"grid3": 2, "grid4": 1}
    assert (web["live"], web["target"]) == (3, 3)
    assert web["autoscale"]["target"] == "0.7"
    assert web["autoscale"]["max_replicas"] == 6
    assert web["last_decision"]["decided_at"] == "2026-03-02T09:05:00+00:00"
    assert web["last_decision"]["value"] == "0.9"
    assert rows["acme/api"]["autoscale"] is None
    assert rows["acme/api"]["last_decision"] is None


def test_list_of_an_offtaker_without_workloads_says_so(data_dir: Path) -> None:
    result = hero(data_dir, "workloads", "list", "--offtaker", "nobody")
    assert result.exit_code == 0, result.output
    assert "no workloads of offtaker nobody" in result.stdout


# -- show ---------------------------------------------------------------------------------------


def test_show_gives_spec_placement_decisions_migrations_and_sla(data_dir: Path) -> None:
    result = hero(data_dir, "workloads", "show", "acme/web")
    assert result.exit_code == 0, result.output
    out = words(result.stdout)
    assert "workload web of offtaker acme" in out
    assert "replicas: 3 live, target 3 (spec 2)" in out
    assert "autoscale: cpu at 0.7 per replica, 1-6 replicas" in out
    assert "│ web-r1 │ k2 │ n2 │ up │ f1 │ grid3 │ 0.04 USD │" in out
    assert "│ k4 │ k4 │ n4 │ up │ f1 │ grid4 │ 0.05 USD │ 2026-03-02 11:00:00 │" in out
    assert "│ k2 │ n2 │ 0.0125 USD │ 0.55 │ 0.32 │ 0.19 │ 0.1 │" in out  # the scores table
    assert "2→3 │ scale_up │ cpu │ 0.9/0.7 │ 1.286 │ 2/0/0 │" in out  # ratio to 3 places
    assert "web-r0 │ n1 │ n4 │ k1 │ k4 │ node_down" in out  # the migration
    assert "migrated │ 80%/99% │ missed │ 0.01 USD" in out  # k1 ended, its SLA missed


def test_show_json_has_decimals_as_strings_and_iso_times(data_dir: Path) -> None:
    result = hero(data_dir, "workloads", "show", "acme/web", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["ref"], data["target"], data["grids"]) == (
        "acme/web",
        3,
        {"grid3": 2, "grid4": 1},
    )
    assert data["spec"]["autoscale"]["metric"] == "cpu"
    live = {r["contract_id"]: r for r in data["live"]}
    assert set(live) == {"k2", "k3", "k4"}
    assert live["k2"]["placement"]["scores"] == {k: str(v) for k, v in SCORES.items()}
    assert live["k2"]["placement"]["total"] == "0.55"
    assert live["k2"]["price_hour"] == {"amount": "0.04", "currency": "USD"}
    assert live["k3"]["started_at"] == "2026-03-02T09:06:00+00:00"
    assert live["k3"]["placement"] is None
    (ended,) = data["ended"]
    assert ended["sla"]["met"] is False
    assert ended["sla"]["penalty"] == {"amount": "0.01", "currency": "USD"}
    assert ended["node_status"] == "down"
    assert data["migrations"][0]["to_contract_id"] == "k4"
    assert data["decisions_total"] == 1


def test_show_limits_the_decisions_to_the_latest(data_dir: Path) -> None:
    store = open_store(HeroSettings(data_dir=data_dir).effective_store_url)
    try:
        log = WorkloadLog(store)
        log.count = 100
        for step in range(3):
            log.decided(3, 3, reason="within_tolerance", at=T0 + timedelta(minutes=10 + step))
    finally:
        store.close()
    result = hero(data_dir, "workloads", "show", "acme/web", "--decisions", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [d["decided_at"][11:16] for d in data["decisions"]] == ["09:11", "09:12"]
    assert data["decisions_total"] == 4
    table = hero(data_dir, "workloads", "show", "acme/web", "--decisions", "2")
    assert "scale decisions (last 2 of 4)" in table.stdout


def test_show_a_unique_workload_by_its_id_alone(data_dir: Path) -> None:
    result = hero(data_dir, "workloads", "show", "api")
    assert result.exit_code == 0, result.output
    out = words(result.stdout)
    assert "workload api of offtaker acme" in out
    assert "autoscale: off" in out
    assert "no live replicas" in out


def test_show_an_ambiguous_workload_fails_naming_the_offtakers(data_dir: Path) -> None:
    result = hero(data_dir, "workloads", "show", "web")
    assert result.exit_code == 2
    message = words(result.stderr)
    assert "workload web belongs to 2 offtakers (acme, beta)" in message
    assert "OFFTAKER/web" in message
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nope", "no offtaker has a workload nope"),
        ("beta/api", "offtaker beta has no workload api"),
    ],
)
def test_show_an_unknown_workload_fails_naming_it(data_dir: Path, ref: str, message: str) -> None:
    result = hero(data_dir, "workloads", "show", ref)
    assert result.exit_code == 2
    assert message in words(result.stderr)


def test_an_empty_store_has_no_workloads(tmp_path: Path) -> None:
    result = hero(tmp_path, "workloads", "list")
    assert result.exit_code == 0, result.output
    assert "no workloads" in result.stdout
    assert json.loads(hero(tmp_path, "workloads", "list", "--json").stdout) == []


def test_autoscale_reads_metric_target_and_bounds() -> None:
    assert fmt_autoscale(None) == "-"
    assert fmt_autoscale(CPU) == "cpu 0.7 1-6"
    requests = ScalingPolicy(metric="requests", target=Decimal("50.0"), max_replicas=3)
    assert fmt_autoscale(requests) == "requests 50 1-3"
