"""``--as-of`` in the CLI: after a second demo run, every listing asked as of the end of the
first answers what it answered live then, by position and by time; an auditor's question
(what an offtaker owed then, and which contracts made it) is one command."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hero.store import open_store
from tests.e2e._cli import hero, hero_json, store_url

pytestmark = pytest.mark.e2e

LISTINGS = (
    ("accounts", "list"),
    ("contracts", "list"),
    ("nodes", "list"),
    ("negotiations", "list"),
)


def _head(data_dir: Path) -> int:
    store = open_store(store_url(data_dir))
    try:
        return store.current_position()
    finally:
        store.close()


def _answers(data_dir: Path, *as_of: str) -> dict[str, Any]:
    answers = {" ".join(cmd): hero_json(*cmd, *as_of, data_dir=data_dir) for cmd in LISTINGS}
    answers["workloads list"] = hero_json("workloads", "list", *as_of, data_dir=data_dir)
    answers["workloads"] = {
        w["ref"]: hero_json("workloads", "show", w["ref"], *as_of, data_dir=data_dir)
        for w in answers["workloads list"]
    }
    for account in answers["accounts list"]["accounts"]:
        if account["kind"] == "offtaker":
            name = account["account"]
            answers[name] = hero_json("accounts", "show", name, *as_of, data_dir=data_dir)
    return answers


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str, dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("as-of")
    first = hero("demo", "--in-process", data_dir=data_dir, timeout=300)
    assert first.returncode == 0, first.stderr + first.stdout
    position = _head(data_dir)
    live = _answers(data_dir)
    moment = datetime.now(UTC)
    while datetime.now(UTC) <= moment:  # the second run's stamps come strictly after
        time.sleep(0.001)
    second = hero("demo", "--in-process", data_dir=data_dir, timeout=300)
    assert second.returncode == 0, second.stderr + second.stdout
    assert _head(data_dir) > position
    return data_dir, position, moment.isoformat(), live


def test_every_listing_as_of_a_position_is_what_it_was_live(
    two_runs: tuple[Path, int, str, dict[str, Any]],
) -> None:
    data_dir, position, _, live = two_runs
    now = hero_json("negotiations", "list", data_dir=data_dir)
    assert now != live["negotiations list"]  # the log moved on
    assert _answers(data_dir, "--as-of", str(position)) == live


def test_every_listing_as_of_a_time_is_what_it_was_live(
    two_runs: tuple[Path, int, str, dict[str, Any]],
) -> None:
    data_dir, _, moment, live = two_runs
    assert _answers(data_dir, "--as-of", moment) == live


def test_an_offtakers_debt_and_its_contracts_as_of_a_time_in_one_command(
    two_runs: tuple[Path, int, str, dict[str, Any]],
) -> None:
    data_dir, _, moment, live = two_runs
    account = next(name for name in live if name.startswith("offtaker."))
    then = hero("accounts", "show", account, "--as-of", moment, "--json", data_dir=data_dir)
    assert then.returncode == 0, then.stderr
    assert f"as of {datetime.fromisoformat(moment).isoformat()}" in " ".join(then.stderr.split())
    answer = json.loads(then.stdout)
    assert answer["balance"] == live[account]["balance"]
    contracts = {c["contract_id"] for c in live["contracts list"]}
    bills = [t for t in answer["transfers"] if t["kind"] == "bill"]
    assert bills, "the first run billed this offtaker"
    # each bill names the contract that made it: bill-{contract}-{hour}
    assert {b["reference"][len("bill-") :].rsplit("-", 1)[0] for b in bills} & contracts


def test_workloads_as_of_the_first_run_are_those_of_then(
    two_runs: tuple[Path, int, str, dict[str, Any]],
) -> None:
    data_dir, position, _, live = two_runs
    as_of = ("--as-of", str(position))
    assert hero_json("workloads", "list", *as_of, data_dir=data_dir) == live["workloads list"]
    for ref, shown in live["workloads"].items():
        assert hero_json("workloads", "show", ref, *as_of, data_dir=data_dir) == shown
    refs_now = {w["ref"] for w in hero_json("workloads", "list", data_dir=data_dir)}
    newer = sorted(refs_now - set(live["workloads"]))
    assert newer, "the second run brought workloads of its own"
    then = hero("workloads", "show", newer[0], *as_of, data_dir=data_dir)
    assert then.returncode == 2, then.stdout  # not there yet


@pytest.mark.parametrize(
    ("as_of", "says"),
    [
        ("soon", "ISO-8601 time with its zone"),
        ("2026-11-30T23:59:59", "no time zone"),
        ("99999999999", "past the log's head"),
    ],
)
def test_a_bad_as_of_exits_2_saying_why_and_writes_nothing(
    two_runs: tuple[Path, int, str, dict[str, Any]], as_of: str, says: str
) -> None:
    data_dir = two_runs[0]
    before = _head(data_dir)
    result = hero("contracts", "list", "--as-of", as_of, data_dir=data_dir)
    assert result.returncode == 2
    assert says in " ".join(result.stderr.split())
    assert _head(data_dir) == before
