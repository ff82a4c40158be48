"""``hero farmer policy compile`` and ``hero offtaker mandate compile`` as a user runs them:
the real command line on a data dir of its own, the model a script (``HERO_LLM=scripted:``),
and what was (or was not) written read back from the event store."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agents.strategies.diff import diff
from hero.store import EventStore, open_store
from schemas import FarmerPolicy, FarmerPolicySet, Grid, Mandate, OfftakerMandateSet
from tests.e2e._cli import HERO, hero, store_url

pytestmark = pytest.mark.e2e

FARM = "farm-0001"
EXAMPLE = (
    "auto-accept Grid 4 reservations in Europe above 0.9x market price, keep 20% free, "
    "never more than 12 months"
)
PROPOSAL: dict[str, Any] = {
    "mode": "auto",
    "markup": "0.9",
    "reserve_share": "0.2",
    "max_term_hours": 8640,
    "regions": ["europe"],
    "grids": ["grid4"],
    "assumptions": ["'market price' is the reference price"],
}
EXPECTED = FarmerPolicy(
    markup=Decimal("0.9"),
    reserve_share=Decimal("0.2"),
    max_term_hours=8640,
    regions=["europe"],
    grids=[Grid.GRID4],
)


def script(path: Path, *steps: dict[str, Any]) -> dict[str, str]:
    """A script file for the model, as the env that selects it."""
    path.write_text(json.dumps(list(steps)))
    return {"HERO_LLM": f"scripted:{path}"}


def proposal(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "args": args}], "usage": {"input_tokens": 1}}


def run(
    *args: str, data_dir: Path, env: dict[str, str], answer: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``hero ARGS`` with ``answer`` typed on stdin (none: stdin closed)."""
    full_env = {**os.environ, "COLUMNS": "200", "HERO_DATA_DIR": str(data_dir), **env}
    return subprocess.run(
        [HERO, *args],
        input=answer or "",
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )


def flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A market with one farm (and its generated policy)."""
    data = tmp_path / "market"
    seeded = hero("fleet", "create", "--seed", "5", "--farms", "1", "--nodes-min", "1",
                  "--nodes-max", "1", data_dir=data)  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    return data


@pytest.fixture
def store(data: Path) -> Iterator[EventStore]:
    store = open_store(store_url(data))
    yield store
    store.close()


def policies(store: EventStore) -> list[FarmerPolicySet]:
    events = [row.envelope().decode() for row in store.read_stream(f"farm-{FARM}")]
    return [event for event in events if isinstance(event, FarmerPolicySet)]


# -- farmer policies ------------------------------------------------------------------------------


def test_compile_with_yes_writes_the_policy_with_its_text(
    data: Path, store: EventStore, tmp_path: Path
) -> None:
    env = script(tmp_path / "s.json", proposal("propose_policy", PROPOSAL))
    before = policies(store)

    result = run("farmer", "policy", "compile", FARM, EXAMPLE, "--yes", data_dir=data, env=env)

    assert result.returncode == 0, result.stderr + result.stdout
    out = flat(result.stdout)
    assert "'market price' is the reference price" in out
    assert "+ markup: 0.9" in out
    assert "+ regions: [europe]" in out
    assert "policy set for farm farm-0001: auto, 0.9 x reference, reserve 20%" in out
    written = policies(store)
    assert len(written) == len(before) + 1
    assert written[-1].policy == EXPECTED
    assert written[-1].source_text == EXAMPLE
    assert written[-1].node_id is None


def test_compile_asks_first_and_a_no_writes_nothing(
    data: Path, store: EventStore, tmp_path: Path
) -> None:
    env = script(tmp_path / "s.json", proposal("propose_policy", PROPOSAL))
    position = store.current_position()

    declined = run("farmer", "policy", "compile", FARM, EXAMPLE, data_dir=data, env=env,
                   answer="n\n")  # fmt: skip
    assert declined.returncode == 1, declined.stderr + declined.stdout
    assert "Apply this policy? [y/N]" in declined.stdout
    assert "not applied" in declined.stdout
    closed = run("farmer", "policy", "compile", FARM, EXAMPLE, data_dir=data, env=env)
    assert closed.returncode == 1, closed.stderr + closed.stdout
    assert store.current_position() == position

    accepted = run("farmer", "policy", "compile", FARM, EXAMPLE, data_dir=data, env=env,
                   answer="y\n")  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr + accepted.stdout
    assert policies(store)[-1].policy == EXPECTED


def test_json_reports_the_outcome(data: Path, store: EventStore, tmp_path: Path) -> None:
    env = script(tmp_path / "s.json", proposal("propose_policy", {**PROPOSAL, "markup": 0.9}))

    shown = run("farmer", "policy", "compile", FARM, EXAMPLE, "--json", data_dir=data, env=env,
                answer="n\n")  # fmt: skip
    assert shown.returncode == 1, shown.stderr
    assert json.loads(shown.stdout)["outcome"] == "compiled"
    assert "Apply this policy?" in shown.stderr

    applied = run("farmer", "policy", "compile", FARM, EXAMPLE, "--json", "--yes",
                  data_dir=data, env=env)  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    report = json.loads(applied.stdout)
    assert report["outcome"] == "applied"
    assert FarmerPolicy.model_validate(report["policy"]) == EXPECTED
    assert report["assumptions"] == PROPOSAL["assumptions"]
    assert "+ max_term_hours: 8640" in report["diff"]
    assert report["source_text"] == EXAMPLE
    assert policies(store)[-1].policy == EXPECTED


def test_invalid_proposal_exits_2_with_the_field_errors_and_writes_nothing(
    data: Path, store: EventStore, tmp_path: Path
) -> None:
    bad = {**PROPOSAL, "price_cu_hour": {"amount": "0.02", "currency": "USD"}}
    env = script(tmp_path / "s.json", proposal("propose_policy", bad))
    position = store.current_position()

    result = run("farmer", "policy", "compile", FARM, EXAMPLE, "--yes", data_dir=data, env=env)

    assert result.returncode == 2, result.stderr + result.stdout
    assert (
        "the proposed policy is not valid; no policy was written: "
        "- (whole): give either fixed prices or a markup on the reference, not both"
    ) in flat(result.stderr)
    too_much = proposal("propose_policy", {**PROPOSAL, "reserve_share": "1.5"})
    env = script(tmp_path / "r.json", too_much)
    as_json = run("farmer", "policy", "compile", FARM, EXAMPLE, "--yes", "--json",
                  data_dir=data, env=env)  # fmt: skip
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["field_errors"] == [
        {"field": "reserve_share", "message": "Input should be less than 1"}
    ]
    assert store.current_position() == position


def test_questions_exit_3_and_write_nothing(data: Path, store: EventStore, tmp_path: Path) -> None:
    asked = {"tool_calls": [{"name": "ask_questions", "args": {"questions": ["Which grid?"]}}]}
    unknown_region = proposal("propose_policy", {**PROPOSAL, "regions": ["atlantis"]})
    position = store.current_position()

    result = run("farmer", "policy", "compile", FARM, "sell cheaply", "--yes", data_dir=data,
                 env=script(tmp_path / "q.json", asked))  # fmt: skip
    assert result.returncode == 3, result.stderr + result.stdout
    assert "1. Which grid?" in result.stdout
    region = run("farmer", "policy", "compile", FARM, "serve Atlantis", "--yes", "--json",
                 data_dir=data, env=script(tmp_path / "r.json", unknown_region))  # fmt: skip
    assert region.returncode == 3, region.stderr + region.stdout
    (question,) = json.loads(region.stdout)["questions"]
    assert "'atlantis'" in question
    assert "europe, north-america, asia, africa, south-america, oceania" in question
    assert store.current_position() == position


def test_without_a_model_or_a_farm_it_fails_clearly(
    data: Path, store: EventStore, tmp_path: Path
) -> None:
    position = store.current_position()
    without = {k: v for k, v in os.environ.items() if k != "HERO_LLM"}
    result = subprocess.run(
        [HERO, "farmer", "policy", "compile", FARM, EXAMPLE, "--yes", "--data-dir", str(data)],
        capture_output=True, text=True, env={**without, "COLUMNS": "200"}, timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr + result.stdout
    assert "set HERO_LLM=provider:model" in flat(result.stderr)
    assert "Traceback" not in result.stderr

    env = script(tmp_path / "s.json", proposal("propose_policy", PROPOSAL))
    unknown = run("farmer", "policy", "compile", "farm-0099", EXAMPLE, "--yes", data_dir=data,
                  env=env)  # fmt: skip
    assert unknown.returncode == 2
    assert "farm farm-0099 is not registered" in flat(unknown.stderr)

    failing = run("farmer", "policy", "compile", FARM, EXAMPLE, "--yes", data_dir=data,
                  env=script(tmp_path / "e.json", {"error": "provider down"}))  # fmt: skip
    assert failing.returncode == 1
    assert "the model failed: RuntimeError: provider down" in flat(failing.stderr)
    assert "Traceback" not in failing.stderr
    assert store.current_position() == position


# -- offtaker mandates ----------------------------------------------------------------------------

MANDATE_TEXT = "3 web servers in Europe, 2 cores, 4 GB and 50 GB SSD each, 500 USD a month"
MANDATE: dict[str, Any] = {
    "workloads": [
        {
            "workload_id": "web",
            "resources": {"cru": 2, "mru": 4 * 1024**3, "sru": 50 * 1024**3},
            "replicas": 3,
            "regions": ["europe"],
        }
    ],
    "budget_month": {"amount": "500", "currency": "USD"},
    "max_price_cu_hour": {"amount": "0.05", "currency": "USD"},
    "assumptions": ["at most 0.05 USD per CU-hour, five times the reference"],
}


def test_mandate_compile_writes_the_mandate_with_its_text(
    data: Path, store: EventStore, tmp_path: Path
) -> None:
    env = script(tmp_path / "m.json", proposal("propose_mandate", MANDATE))

    declined = run("offtaker", "mandate", "compile", "acme", MANDATE_TEXT, data_dir=data,
                   env=env, answer="n\n")  # fmt: skip
    assert declined.returncode == 1, declined.stderr + declined.stdout
    assert store.stream_version("offtaker-acme") == 0

    result = run("offtaker", "mandate", "compile", "acme", MANDATE_TEXT, "--yes",
                 data_dir=data, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    assert "+ budget_month: 500 USD" in result.stdout
    assert "mandate set for acme: web x3" in flat(result.stdout)
    (row,) = store.read_stream("offtaker-acme")
    event = row.envelope().decode()
    assert isinstance(event, OfftakerMandateSet)
    expected = {key: value for key, value in MANDATE.items() if key != "assumptions"}
    assert event.mandate == Mandate.model_validate(expected)
    assert event.source_text == MANDATE_TEXT


def test_a_node_policy_starts_from_the_farms_and_is_written_for_the_node(
    data: Path, store: EventStore, tmp_path: Path
) -> None:
    farm_wide = policies(store)[-1].policy
    env = script(tmp_path / "s.json", proposal("propose_policy", PROPOSAL))

    result = run("farmer", "policy", "compile", FARM, EXAMPLE, "--node", "node-0001-01",
                 "--yes", "--json", data_dir=data, env=env)  # fmt: skip

    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads(result.stdout)
    assert (report["node_id"], report["diff"]) == ("node-0001-01", diff(farm_wide, EXPECTED))
    written = policies(store)[-1]
    assert (written.node_id, written.policy) == ("node-0001-01", EXPECTED)
    assert policies(store)[-2].policy == farm_wide  # the farm's own policy stays

    other = run("farmer", "policy", "compile", FARM, EXAMPLE, "--node", "node-0099-01",
                "--yes", data_dir=data, env=env)  # fmt: skip
    assert other.returncode == 2
    assert "node node-0099-01 is not a node of farm farm-0001" in flat(other.stderr)
