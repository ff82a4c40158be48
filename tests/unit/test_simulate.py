"""``hero simulate``, the market twin: same seed, same bytes; the ledger sums to zero; no
node is over-committed at any hour; a bad scenario is refused by name and nothing is written.

The twin runs the real market in this process on a memory store (or SQLite) and a manual
clock: no servers. The scenarios are small (a few farms, two simulated days).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from hero.domain.clock import ManualClock
from hero.model import MarketState, apply
from hero.payments.ledger import read_book
from hero.simulate import (
    ScenarioError,
    load_scenario,
    parse_scenario,
    report_schema,
    simulate,
)
from hero.simulate.engine import Twin
from hero.simulate.fleet import build_fleet
from hero.simulate.report import build_report, dump_report
from hero.store import MemoryEventStore, decode_event, recorded_after
from schemas import SlaOutcomeRecorded, TransferKind, TransferPosted
from tests._simulation import small, usd

ROOT = Path(__file__).resolve().parents[2]
DAYS = 2


def _write(tmp_path: Path, data: object, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(*args: str, hash_seed: str = "0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.run(
        [str(Path(sys.executable).parent / "hero"), "simulate", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_the_same_seed_gives_the_same_report_bytes_in_another_process(tmp_path: Path) -> None:
    """One run here, one through the CLI in another process (another hash seed: no set's
    order may leak into the report)."""
    scenario = _write(tmp_path, small())
    first = simulate(load_scenario(scenario), days=DAYS, seed=7, out=tmp_path / "a")
    done = _cli("--scenario", str(scenario), "--days", str(DAYS), "--seed", "7",
                "--out", str(tmp_path / "b"), "--quiet", hash_seed="12345")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert first.report_path.read_bytes() == (tmp_path / "b" / "report.json").read_bytes()
    other = simulate(load_scenario(scenario), days=DAYS, seed=8, out=tmp_path / "c")
    assert other.report_path.read_bytes() != first.report_path.read_bytes()
    print(f"\nsmall, {DAYS} days: {first.events} events in {first.wall_s:.2f} s, "
          f"{first.events_per_s:,.0f} events/s, {first.speed_up:,.0f}x real time")  # fmt: skip


def test_the_ledger_sums_to_zero_and_no_node_is_ever_over_committed() -> None:
    """Checked again here from the store, beside what the report says: the ledger's totals
    by the real book, and every node's holds and contracts within its capacity by the real
    market model, folded event by event (not only at the hours the twin looked)."""
    scenario = parse_scenario(small(), "small")
    rng = random.Random(3)
    clock = ManualClock(scenario.start)
    store = MemoryEventStore(clock)
    twin = Twin(scenario, build_fleet(scenario, rng), store, clock, rng)
    twin.run(DAYS)

    assert len(twin.hours) == DAYS * 24
    assert all(h.overcommitted == () for h in twin.hours)
    book = read_book(store)
    assert not book.unbalanced
    totals = book.ledger.totals()
    assert totals
    assert all(total == 0 for total in totals.values()), totals
    state = MarketState()
    checked = 0
    for row in recorded_after(store, 0, 5000):
        envelope, event = decode_event(row)
        apply(state, envelope, event)
        for node in state.nodes.values():
            assert (node.committed + node.held).fits_in(node.total), node.node_id
            checked += 1
    assert twin.report.contracts, "the twin made no contracts: nothing was checked"
    assert checked > 0


def test_the_report_follows_the_shipped_schema_and_holds_the_story(tmp_path: Path) -> None:
    done = simulate(
        parse_scenario(small(), "small"), days=DAYS, seed=1, out=tmp_path, store="sqlite"
    )
    report = json.loads(done.report_path.read_text())
    jsonschema.Draft202012Validator.check_schema(report_schema())
    jsonschema.validate(report, report_schema())
    assert (tmp_path / "events.sqlite").exists()
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert len(report["utilization"]) == DAYS * 24
    assert len(report["prices"]) == DAYS
    assert report["contracts"]["created"] >= 4
    assert report["contracts"]["approvals"] >= 0
    assert report["scaling"]["node_failures"][0]["hour"] == 27
    assert report["scaling"]["decisions_by_reason"]
    assert report["money"]["ledger"]["balanced"] is True
    assert report["money"]["bills"] > 0
    assert report["money"]["treasury"]["conversions"] == 2
    assert report["checks"] == {"overcommitted_nodes": [], "unreadable_events": 0}
    farms = report["farmers"]["farms"]
    assert len(farms) == 4
    assert sum(float(f["total_usd"]) for f in farms) > 0


def test_a_failure_detected_late_breaches_the_sla_and_the_penalty_is_refunded() -> None:
    """The node is down from its failure; the agents move its contracts only once it is
    detected, 45 minutes later: each moved contract was down exactly that long, below the
    99 % its farmer promised over its ~28 hours, so its penalty is refunded on the ledger,
    which still sums to zero. The same seed gives the same outcomes."""
    scenario = parse_scenario(small(), "small")

    def run() -> tuple[Twin, MemoryEventStore]:
        rng = random.Random(5)
        clock = ManualClock(scenario.start)
        store = MemoryEventStore(clock)
        twin = Twin(scenario, build_fleet(scenario, rng), store, clock, rng)
        twin.run(DAYS)
        return twin, store

    twin, store = run()
    events = [decode_event(row)[1] for row in recorded_after(store, 0, 5000)]
    outcomes = [e for e in events if isinstance(e, SlaOutcomeRecorded)]
    (hour, node_id), = twin.failures  # fmt: skip
    failed_at = scenario.start + timedelta(hours=hour)
    assert outcomes, "no contract on the failed node was judged"
    for outcome in outcomes:
        assert outcome.node_id == node_id
        assert outcome.ended_at == failed_at + timedelta(minutes=45)
        assert outcome.hours_down == Decimal("0.75")
        assert not outcome.met
        assert outcome.penalty.amount > 0
    refunds = {
        e.transfer_id: e.amount.amount
        for e in events
        if isinstance(e, TransferPosted) and e.kind == TransferKind.SLA_PENALTY
    }
    assert {r.removeprefix("sla-").rsplit("-", 1)[0] for r in refunds} == {
        o.contract_id for o in outcomes
    }
    assert all(amount > 0 for amount in refunds.values())
    book = read_book(store)
    assert not book.unbalanced
    assert all(total == 0 for total in book.ledger.totals().values())

    again, _ = run()
    report = build_report(twin, DAYS, seed=5)
    assert dump_report(report) == dump_report(build_report(again, DAYS, seed=5))
    assert report["sla"]["breaches"] == len(outcomes)
    assert Decimal(report["sla"]["penalties_usd"]) > 0
    assert report["sla"]["refunds"] == len(refunds)
    assert Decimal(report["sla"]["refunded_tft"]) == sum(refunds.values())
    print(f"\nsmall, failure detected after 45 min: {report['sla']}")


def test_the_shipped_spike_with_failures_shows_breaches_and_refunds(tmp_path: Path) -> None:
    """Its three failures during the spike are detected 20 minutes late: the replicas moved
    off them record SLA breaches, and the ledger refunds the penalties and still sums to
    zero."""
    scenario = load_scenario(ROOT / "scenarios" / "spike-with-failures.yaml")
    report = simulate(scenario, days=3, seed=1, out=tmp_path).report
    sla = report["sla"]
    assert len(report["scaling"]["node_failures"]) == 3
    assert sla["breaches"] > 0
    assert Decimal(sla["penalties_usd"]) > 0
    assert sla["refunds"] > 0
    assert Decimal(sla["refunded_tft"]) > 0
    assert report["money"]["ledger"]["balanced"] is True
    print(f"\nspike-with-failures, 3 days, seed 1: {sla}")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: s.update(colour="blue"), "colour"),
        (lambda s: s.update(split={"farmer": "70", "pool": "20", "threefold": "20"}), "split"),
        (lambda s: s["fleet"].update(regions={"atlantis": 1}), "fleet.regions"),
        (lambda s: s["offtakers"][0]["traces"].update(web={"kind": "flat"}), "offtakers.0"),
        (lambda s: s["offtakers"][1]["mandate"].update(budget_month=usd("0")), "budget_month"),
        (lambda s: s.update(failures=[{"day": 0, "node_id": "node-9999-01"}]), "node-9999-01"),
        (lambda s: s.update(top_ups=[{"day": 0, "offtaker_id": "nobody", "amount_usd": "5"}]),
         "nobody"),
        (lambda s: s.update(pricing="cheap"), "pricing"),
        (lambda s: s["failures"][0].update(detection_delay_minutes=60),
         "failures.0.detection_delay_minutes"),
        (lambda s: s["failures"][0].update(detection_delay_minutes=-1),
         "failures.0.detection_delay_minutes"),
    ],
)  # fmt: skip
def test_a_bad_scenario_is_refused_by_name_and_nothing_is_written(
    tmp_path: Path, change: Any, named: str
) -> None:
    data = small()
    change(data)
    out = tmp_path / "out"
    with pytest.raises(ScenarioError, match=named.replace(".", r"\.")):
        simulate(load_scenario(_write(tmp_path, data)), days=1, seed=1, out=out)
    assert not out.exists()


def test_the_cli_says_what_is_wrong_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    done = _cli("--scenario", str(bad), "--out", str(out), "--days", "1")
    assert done.returncode == 2
    assert "not valid YAML" in done.stderr
    done = _cli("--scenario", str(_write(tmp_path, small())), "--out", str(out), "--days", "0")
    assert done.returncode == 2
    assert "--days must be in 1..366" in done.stderr
    assert not out.exists()


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_the_shipped_scenarios_are_valid(path: Path) -> None:
    scenario = load_scenario(path)
    build_fleet(scenario, random.Random(1))


def test_compare_runs_each_scenario_with_the_same_seed_side_by_side(tmp_path: Path) -> None:
    """60/20/20 against 80/10/10: the same market (the split changes no negotiation), so the
    same contracts and bills, and the farmers' share of them grows."""
    base, richer = small(), small()
    base["name"] = "split-60-20-20"
    richer["name"] = "split-80-10-10"
    richer["split"] = {"farmer": "80", "pool": "10", "threefold": "10"}
    paths = [str(_write(tmp_path, data, f"{data['name']}.yaml")) for data in (base, richer)]
    out = tmp_path / "out"
    done = _cli("compare", *paths, "--days", "1", "--seed", "4", "--out", str(out))
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "compare.json").read_text())
    first, second = summary["scenarios"]
    assert (first["scenario"], second["scenario"]) == ("split-60-20-20", "split-80-10-10")
    assert first["contracts"] == second["contracts"] > 0
    assert first["billed_usd"] == second["billed_usd"]
    assert Decimal(second["farmers_tft"]) > Decimal(first["farmers_tft"])
    assert Decimal(second["pool_tft"]) < Decimal(first["pool_tft"])
    assert first["ledger_balanced"] is second["ledger_balanced"] is True
    assert (out / "split-60-20-20" / "report.json").exists()
    assert (out / "compare.html").read_text().startswith("<!DOCTYPE html>")


def test_compare_refuses_a_bad_second_scenario_before_running_the_first(tmp_path: Path) -> None:
    good, bad = small(), small()
    bad["name"] = "broken"
    bad["failures"] = [{"day": 0, "node_id": "node-9999-01"}]
    out = tmp_path / "out"
    for scenarios in ([good, bad], [good], [good, small()]):
        paths = [str(_write(tmp_path, data, f"{i}.yaml")) for i, data in enumerate(scenarios)]
        done = _cli("compare", *paths, "--days", "1", "--out", str(out))
        assert done.returncode == 2
        assert "error:" in done.stderr
        assert not out.exists()
