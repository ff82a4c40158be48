"""The marketplace through the command line, on a data dir of its own (no stack needed):
fleets, policies, mandates, the lists, and a farmer approving -- or not -- an offer that the
agents (in this process, over the same store) made."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.local import LocalMarket
from hero.domain.clock import SystemClock
from hero.store import EventStore, open_store
from tests.e2e._cli import hero, hero_json, store_url

pytestmark = pytest.mark.e2e

WEB = {"cru": 2, "mru": 4 * 1024**3, "sru": 50 * 1024**3}


def mandate(replicas: int = 1, window_s: str = "0.5") -> dict[str, Any]:
    return {
        "workloads": [{"workload_id": "web", "resources": WEB, "replicas": replicas}],
        "budget_month": {"amount": "500", "currency": "USD"},
        "max_price_cu_hour": {"amount": "0.05", "currency": "USD"},
        "offer_window_s": window_s,
    }


def ok(*args: str, data_dir: Path) -> str:
    result = hero(*args, data_dir=data_dir)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def refused(*args: str, data_dir: Path) -> str:
    result = hero(*args, data_dir=data_dir)
    assert result.returncode == 2, result.stderr + result.stdout
    return " ".join(result.stderr.split())  # rich wraps long lines


def events(stream: str, data_dir: Path) -> list[dict[str, Any]]:
    return hero_json("events", "read", stream, data_dir=data_dir)  # type: ignore[no-any-return]


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "market"


@pytest.fixture
def store(data: Path) -> Iterator[EventStore]:
    store = open_store(store_url(data))
    yield store
    store.close()


def drive(market: LocalMarket, until: Callable[[], bool], what: str, timeout_s: float = 15) -> None:
    """Step the in-process agents (real clock) until ``until()`` holds."""
    deadline = time.monotonic() + timeout_s
    while not until():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        market.step()
        time.sleep(0.05)


def one_approve_farm(data: Path, ttl: int) -> None:
    """Three farms; farm-0001 asks its farmer before offering, the others take no work."""
    ok("fleet", "create", "--seed", "5", "--farms", "3", "--nodes-min", "1", "--nodes-max", "1",
       data_dir=data)  # fmt: skip
    ok("farmer", "policy", "set", "farm-0001", "--mode", "approve", "--markup", "1.5",
       "--approval-ttl", str(ttl), data_dir=data)  # fmt: skip
    for farm in ("farm-0002", "farm-0003"):
        ok("farmer", "policy", "set", farm, "--mode", "off", data_dir=data)


def types_in(store: EventStore, negotiation: str) -> list[str]:
    return [row.type for row in store.read_stream(f"nego-{negotiation}")]


# -- fleets ---------------------------------------------------------------------------------------


def test_fleet_create_registers_a_fleet_once(data: Path) -> None:
    first = hero_json("fleet", "create", "--seed", "7", "--farms", "4", data_dir=data)
    assert first["farms"] == 4
    assert first["written"] == first["commands"] == 4 + first["nodes"] + 4
    assert [f["farm_id"] for f in first["fleet"]] == [f"farm-000{i}" for i in range(1, 5)]
    assert all(f["mode"] in ("auto", "approve", "off") for f in first["fleet"])

    again = hero_json("fleet", "create", "--seed", "7", "--farms", "4", data_dir=data)
    assert (again["written"], again["already_applied"]) == (0, first["commands"])

    nodes = hero_json("nodes", "list", data_dir=data)
    assert len(nodes) == first["nodes"]
    assert all(n["free"] == n["total"] and n["holds"] == 0 for n in nodes)
    farm_nodes = hero_json("nodes", "list", "--farm", "farm-0002", data_dir=data)
    assert {n["farm_id"] for n in farm_nodes} == {"farm-0002"}
    table = ok("nodes", "list", data_dir=data)
    assert "node-0001-01" in table

    other = refused("fleet", "create", "--seed", "8", "--farms", "4", data_dir=data)
    assert "registered already by another fleet" in other
    assert "nothing was written" in other
    assert "farm farm-0099 is not registered" in refused(
        "nodes", "list", "--farm", "farm-0099", data_dir=data
    )


def test_a_node_marked_down_by_hand_is_recorded_once_and_an_unknown_one_refused(
    data: Path,
) -> None:
    hero_json("fleet", "create", "--seed", "7", "--farms", "1", data_dir=data)
    first = hero_json(
        "nodes", "status", "node-0001-01", "down", "--reason", "maintenance", data_dir=data
    )
    assert first == {"node_id": "node-0001-01", "status": "down", "changed": True}
    again = hero_json("nodes", "status", "node-0001-01", "down", data_dir=data)
    assert again["changed"] is False
    [changed] = [e for e in events("node-node-0001-01", data) if e["type"] == "NodeStatusChanged"]
    assert changed["payload"]["reason"] == "maintenance"
    assert changed["payload"]["changed_at"] is not None
    assert "not registered" in refused("nodes", "status", "node-9999", "down", data_dir=data)
    assert "sideways" in refused("nodes", "status", "node-0001-01", "sideways", data_dir=data)


# -- policies -------------------------------------------------------------------------------------


def test_policy_set_by_flags_and_by_file(data: Path, tmp_path: Path) -> None:
    ok("fleet", "create", "--seed", "3", "--farms", "2", data_dir=data)
    shown = hero_json(
        "farmer", "policy", "set", "farm-0001", "--mode", "approve", "--price-cu", "0.03",
        "--price-su", "0.02", "--floor-cu", "0.025", "--reserve-share", "0.2",
        "--max-term-hours", "720", "--deny", "evil", "--deny", "worse", "--region", "europe",
        "--grid", "grid4", "--uptime", "99.5", "--penalty", "10", "--approval-ttl", "600",
        data_dir=data,
    )  # fmt: skip
    policy = events("farm-farm-0001", data)[-1]["payload"]["policy"]
    assert policy == shown["policy"]
    assert policy["mode"] == "approve"
    assert policy["price_cu_hour"] == {"amount": "0.03", "currency": "USD"}
    assert policy["floor_cu_hour"] == {"amount": "0.025", "currency": "USD"}
    assert (policy["reserve_share"], policy["max_term_hours"]) == ("0.2", 720)
    assert policy["deny_offtakers"] == ["evil", "worse"]
    assert (policy["regions"], policy["grids"]) == (["europe"], ["grid4"])
    assert policy["sla"] == {"uptime_pct": "99.5", "penalty_pct": "10"}
    assert policy["approval_ttl_s"] == 600
    assert "approve" in ok("farmer", "policy", "set", "farm-0002", "--mode", "approve",
                           "--markup", "1.2", data_dir=data)  # fmt: skip

    node = hero_json("farmer", "policy", "set", "farm-0002", "--node", "node-0002-01",
                     "--markup", "1.1", data_dir=data)  # fmt: skip
    assert node["node_id"] == events("farm-farm-0002", data)[-1]["payload"]["node_id"]
    assert "node node-0001-01 is not a node of farm farm-0002" in refused(
        "farmer", "policy", "set", "farm-0002", "--node", "node-0001-01", "--markup", "1.1",
        data_dir=data,
    )  # fmt: skip

    path = write_json(tmp_path / "policy.json", {"markup": "1.8", "max_term_hours": 2160})
    ok("farmer", "policy", "set", "farm-0001", "--file", str(path), data_dir=data)
    policy = events("farm-farm-0001", data)[-1]["payload"]["policy"]
    assert (policy["mode"], policy["markup"], policy["max_term_hours"]) == ("auto", "1.8", 2160)
    assert policy["price_cu_hour"] is None


def test_a_bad_policy_is_refused_with_its_field_errors_and_nothing_written(
    data: Path, tmp_path: Path
) -> None:
    ok("fleet", "create", "--seed", "3", "--farms", "1", data_dir=data)
    before = len(events("farm-farm-0001", data))

    flags = refused("farmer", "policy", "set", "farm-0001", "--price-cu", "abc",
                    "--reserve-share", "1.5", "--max-term-hours", "0", data_dir=data)  # fmt: skip
    assert "nothing was written" in flags
    assert "price_cu_hour.amount (--price-cu)" in flags
    assert "reserve_share (--reserve-share): Input should be less than 1" in flags
    assert "max_term_hours (--max-term-hours)" in flags

    both = refused("farmer", "policy", "set", "farm-0001", "--markup", "1.2", "--price-cu",
                   "0.03", data_dir=data)  # fmt: skip
    assert "either fixed prices or a markup" in both
    unpriced = write_json(tmp_path / "unpriced.json", {"mode": "auto"})
    assert "needs fixed prices or a markup" in refused(
        "farmer", "policy", "set", "farm-0001", "--file", str(unpriced), data_dir=data
    )
    floats = write_json(
        tmp_path / "floats.json", {"price_cu_hour": {"amount": 0.03, "currency": "USD"}}
    )
    assert "not a float" in refused(
        "farmer", "policy", "set", "farm-0001", "--file", str(floats), data_dir=data
    )
    unknown = write_json(tmp_path / "unknown.json", {"markup": "1.2", "colour": "red"})
    assert "colour: Extra inputs are not permitted" in refused(
        "farmer", "policy", "set", "farm-0001", "--file", str(unknown), data_dir=data
    )
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert "is not valid JSON" in refused(
        "farmer", "policy", "set", "farm-0001", "--file", str(broken), data_dir=data
    )
    assert "cannot read" in refused(
        "farmer", "policy", "set", "farm-0001", "--file", str(tmp_path / "missing.json"),
        data_dir=data,
    )  # fmt: skip
    assert "not both" in refused(
        "farmer", "policy", "set", "farm-0001", "--file", str(unpriced), "--markup", "2",
        data_dir=data,
    )  # fmt: skip
    assert "farm farm-0099 is not registered" in refused(
        "farmer", "policy", "set", "farm-0099", "--markup", "1.2", data_dir=data
    )
    assert len(events("farm-farm-0001", data)) == before


# -- mandates -------------------------------------------------------------------------------------


def test_mandate_set_from_a_file_and_a_bad_one_refused(data: Path, tmp_path: Path) -> None:
    good = write_json(tmp_path / "mandate.json", mandate(replicas=2))
    assert "mandate set for acme: web x2" in ok(
        "offtaker", "mandate", "set", "acme", "--file", str(good), data_dir=data
    )
    (event,) = events("offtaker-acme", data)
    assert event["type"] == "OfftakerMandateSet"
    assert event["payload"]["mandate"]["workloads"][0]["replicas"] == 2

    bad = mandate(replicas=-1) | {"budget_month": {"amount": "10", "currency": "EUR"}}
    refusal = refused("offtaker", "mandate", "set", "acme", "--file",
                      str(write_json(tmp_path / "bad.json", bad)), data_dir=data)  # fmt: skip
    assert "invalid mandate for acme, nothing was written" in refusal
    assert "workloads.0.replicas" in refusal
    assert len(events("offtaker-acme", data)) == 1


@pytest.mark.parametrize(
    ("field", "amount"), [("budget_month", "-400"), ("max_price_cu_hour", "-1")]
)
def test_a_mandate_with_a_negative_budget_or_price_exits_2_naming_it(
    data: Path, tmp_path: Path, field: str, amount: str
) -> None:
    """Such a mandate was accepted, and its agent then asked the market again and again."""
    bad = mandate() | {field: {"amount": amount, "currency": "USD"}}
    refusal = refused("offtaker", "mandate", "set", "acme", "--file",
                      str(write_json(tmp_path / "bad.json", bad)), data_dir=data)  # fmt: skip
    assert f"{field}: Value error, must be above zero" in refusal
    assert events("offtaker-acme", data) == []


@pytest.mark.parametrize("length", [185, 195])
def test_an_offtaker_id_too_long_for_its_derived_ids_exits_2_naming_it(
    data: Path, tmp_path: Path, length: int
) -> None:
    good = str(write_json(tmp_path / "mandate.json", mandate()))
    refusal = refused("offtaker", "mandate", "set", "o" * length, "--file", good, data_dir=data)
    assert "Invalid value for 'offtaker': String should have at most 24 characters" in refusal


# -- a farmer approves, or lets an offer expire ---------------------------------------------------


def test_an_offer_awaiting_approval_is_listed_approved_and_accepted(
    data: Path, tmp_path: Path, store: EventStore
) -> None:
    one_approve_farm(data, ttl=120)
    ok("offtaker", "mandate", "set", "acme", "--file",
       str(write_json(tmp_path / "m.json", mandate())), data_dir=data)  # fmt: skip
    assert "no offers of farm farm-0001 await approval" in ok(
        "farmer", "approvals", "farm-0001", data_dir=data
    )
    market = LocalMarket(store, SystemClock())
    drive(market, lambda: "OfferMade" in types_in(store, "acme.web.1"), "the offer")

    (pending,) = hero_json("farmer", "approvals", "farm-0001", data_dir=data)
    offer = pending["offer_id"]
    assert (pending["negotiation_id"], pending["offtaker_id"], pending["node_id"]) == (
        "acme.web.1", "acme", "node-0001-01",
    )  # fmt: skip
    assert pending["resources"]["cru"] == 2
    assert offer in ok("farmer", "approvals", "farm-0001", data_dir=data)
    (node,) = hero_json("nodes", "list", "--farm", "farm-0001", data_dir=data)
    assert node["holds"] == 1
    assert hero_json("contracts", "list", data_dir=data) == []

    assert f"approved offer {offer}" in ok("farmer", "approve", offer, data_dir=data)
    drive(market, lambda: "NegotiationAwarded" in types_in(store, "acme.web.1"), "the award")

    (contract,) = hero_json("contracts", "list", "--offtaker", "acme", data_dir=data)
    assert (contract["offer_id"], contract["farm_id"], contract["node_id"]) == (
        offer, "farm-0001", "node-0001-01",
    )  # fmt: skip
    assert hero_json("contracts", "list", "--farm", "farm-0001", data_dir=data) == [contract]
    assert hero_json("contracts", "list", "--offtaker", "nobody", data_dir=data) == []
    assert "acme" in ok("contracts", "list", data_dir=data)
    (nego,) = hero_json("negotiations", "list", data_dir=data)
    assert (nego["status"], nego["contracts"]) == ("awarded", [contract["contract_id"]])
    (node,) = hero_json("nodes", "list", "--farm", "farm-0001", data_dir=data)
    assert (node["holds"], node["contracts"], node["committed"]["cru"]) == (0, 1, 2)
    assert hero_json("farmer", "approvals", "farm-0001", data_dir=data) == []
    assert "approved already" in ok("farmer", "approve", offer, data_dir=data)
    assert "offer nope is not in the log" in refused("farmer", "approve", "nope", data_dir=data)
    assert "farm farm-0099 is not registered" in refused(
        "farmer", "approvals", "farm-0099", data_dir=data
    )


def test_an_offer_left_to_expire_releases_its_hold(
    data: Path, tmp_path: Path, store: EventStore
) -> None:
    # Long enough for two CLI calls (subprocesses) to see the offer on a loaded machine.
    one_approve_farm(data, ttl=8)
    ok("offtaker", "mandate", "set", "globex", "--file",
       str(write_json(tmp_path / "m.json", mandate())), data_dir=data)  # fmt: skip
    market = LocalMarket(store, SystemClock())
    drive(market, lambda: "OfferMade" in types_in(store, "globex.web.1"), "the offer")
    (pending,) = hero_json("farmer", "approvals", "farm-0001", data_dir=data)
    (node,) = hero_json("nodes", "list", "--farm", "farm-0001", data_dir=data)
    assert node["holds"] == 1

    drive(
        market,
        lambda: "NegotiationExpired" in types_in(store, "globex.web.1"),
        "expiry",
        timeout_s=30,
    )
    assert hero_json("farmer", "approvals", "farm-0001", data_dir=data) == []
    (node,) = hero_json("nodes", "list", "--farm", "farm-0001", data_dir=data)
    assert (node["holds"], node["contracts"]) == (0, 0)
    assert node["free"] == node["total"]
    (nego,) = hero_json("negotiations", "list", "--offtaker", "globex", data_dir=data)
    assert (nego["status"], nego["offers"]) == ("expired", 1)
    assert hero_json("contracts", "list", data_dir=data) == []
    late = refused("farmer", "approve", pending["offer_id"], data_dir=data)
    assert "can no longer be approved" in late


def test_a_rejected_offer_is_withdrawn_and_its_hold_released(
    data: Path, tmp_path: Path, store: EventStore
) -> None:
    one_approve_farm(data, ttl=120)
    ok("offtaker", "mandate", "set", "initech", "--file",
       str(write_json(tmp_path / "m.json", mandate(window_s="30"))), data_dir=data)  # fmt: skip
    market = LocalMarket(store, SystemClock())
    drive(market, lambda: "OfferMade" in types_in(store, "initech.web.1"), "the offer")
    (pending,) = hero_json("farmer", "approvals", "farm-0001", data_dir=data)

    rejected = hero_json("farmer", "reject", pending["offer_id"], "--reason", "maintenance",
                         data_dir=data)  # fmt: skip
    assert rejected["outcome"] == "rejected"
    withdrawn = events("nego-initech.web.1", data)[-1]
    assert (withdrawn["type"], withdrawn["payload"]["reason"]) == ("OfferWithdrawn", "maintenance")
    (node,) = hero_json("nodes", "list", "--farm", "farm-0001", data_dir=data)
    assert (node["holds"], node["free"]) == (0, node["total"])
    assert hero_json("farmer", "approvals", "farm-0001", data_dir=data) == []
    again = refused("farmer", "reject", pending["offer_id"], data_dir=data)
    assert "is withdrawn: only an open offer can be rejected" in again
