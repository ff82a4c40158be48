"""Real-shaped Grid 3 / Grid 4 payloads parse leniently and map to exact commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hero.grids.models import (
    Grid3Contract,
    Grid3Farm,
    Grid3Node,
    Grid4Farm,
    Grid4Node,
    grid3_farm_command,
    grid3_node_command,
    grid3_node_status,
    grid4_farm_command,
    grid4_node_command,
    grid4_node_status,
    locate,
    status_command,
)
from schemas import Grid, NodeStatus, Resources

DATA = Path(__file__).parent / "data" / "grids"


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def test_a_current_grid3_node_parses_with_every_field_and_keeps_unknown_keys() -> None:
    node = Grid3Node.model_validate(load("grid3_node_current.json"))
    assert (node.node_id, node.farm_id, node.twin_id) == (11, 1, 28)
    assert node.status == NodeStatus.UP
    assert node.certified
    assert node.total_resources.sru == 512110190592
    assert node.price_usd == Decimal("52.37")
    assert node.num_gpu == 1
    assert node.public_config is not None
    assert node.public_config.ipv4 == "185.206.122.31/24"
    extra = node.model_extra or {}
    assert extra["serialNumber"] == "Not Specified"
    assert extra["power"] == {"state": "Up", "target": "Up"}
    assert node.model_dump(by_alias=True)["farmingPolicyId"] == 1


def test_an_older_node_without_the_newer_fields_parses_with_defaults() -> None:
    node = Grid3Node.model_validate(load("grid3_node_old.json"))
    assert node.status == NodeStatus.DOWN
    assert not node.certified
    assert node.dedicated is False
    assert node.rent_contract_id == 0
    assert node.price_usd is None
    assert node.num_gpu == 0
    assert node.public_config is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [("online", NodeStatus.UP), ("offline", NodeStatus.DOWN), ("", None), ("weird", None)],
)
def test_old_and_unknown_statuses_are_read_leniently(given: str, expected: Any) -> None:
    data = {**load("grid3_node_old.json"), "status": given}
    node = Grid3Node.model_validate(data)
    assert node.status == expected
    assert grid3_node_status(node) == (expected or NodeStatus.UP)


def test_an_overprovisioned_node_is_kept_and_mapped_with_its_total() -> None:
    node = Grid3Node.model_validate(load("grid3_node_overprovisioned.json"))
    assert node.overprovisioned
    assert node.used_resources.cru == 22 > node.total_resources.cru
    command = grid3_node_command(node)
    assert command.total == Resources(cru=16, mru=68719476736, sru=2000398934016, hru=0)
    assert grid3_node_status(node) == NodeStatus.STANDBY
    assert node.price_usd == Decimal(20)
    assert node.extra_fee == 5000


def test_a_grid3_node_maps_to_register_node_with_exact_bytes() -> None:
    node = Grid3Node.model_validate(load("grid3_node_current.json"))
    command = grid3_node_command(node)
    assert command.command_id == "grid3:node:11"
    assert command.node_id == "g3-node-11"
    assert command.farm_id == "g3-farm-1"
    assert command.grid == Grid.GRID3
    assert (command.country, command.region) == ("BE", "europe")
    assert command.certified
    assert command.total == Resources(
        cru=24, mru=202803036160, sru=512110190592, hru=9001778946048, ipv4=0
    )


def test_grid3_farms_parse_and_map_with_the_country_of_their_nodes() -> None:
    farms = [Grid3Farm.model_validate(f) for f in load("grid3_farms.json")]
    nodes = [
        Grid3Node.model_validate(load(name))
        for name in ("grid3_node_current.json", "grid3_node_old.json")
    ]
    gold, plain = farms
    assert gold.certified
    assert not plain.certified
    assert [ip.contract_id for ip in gold.public_ips] == [0, 9120]
    assert plain.public_ips == []
    assert plain.dedicated
    assert (gold.model_extra or {}) == {}
    command = grid3_farm_command(gold, nodes)
    assert command.command_id == "grid3:farm:1"
    assert command.farm_id == "g3-farm-1"
    assert command.name == "Freefarm"
    assert command.certified
    # one node in Belgium, one in the Netherlands: the tie goes to the first code in order
    assert (command.country, command.region) == ("BE", "europe")
    nameless = grid3_farm_command(plain)
    assert nameless.name == "g3 farm 2"
    assert (nameless.country, nameless.region) == ("unknown", "unknown")


def test_grid3_contracts_parse_every_type() -> None:
    contracts = [Grid3Contract.model_validate(c) for c in load("grid3_contracts.json")]
    assert [c.type for c in contracts] == ["node", "rent", "name"]
    assert [c.state for c in contracts] == ["Created", "GracePeriod", "Deleted"]
    assert contracts[0].details.node_id == 11
    assert contracts[0].details.farm_id == 1
    assert (contracts[0].details.model_extra or {})["number_of_public_ips"] == 1
    assert contracts[2].details.name == "myname"


def test_grid4_farms_and_nodes_parse_and_map() -> None:
    farms = [Grid4Farm.model_validate(f) for f in load("grid4_farms.json")]
    nodes = [Grid4Node.model_validate(n) for n in load("grid4_nodes.json")]
    assert (farms[0].model_extra or {})["created_at"] == "2025-03-01T10:00:00Z"
    assert (nodes[0].model_extra or {})["interfaces"][0]["name"] == "eth0"
    assert nodes[0].last_seen is not None
    assert nodes[0].last_seen.year == 2025
    farm = grid4_farm_command(farms[0], nodes)
    assert (farm.command_id, farm.farm_id, farm.name) == (
        "grid4:farm:3",
        "g4-farm-3",
        "Zephyr Datacenter",
    )
    assert (farm.grid, farm.country, farm.region) == (Grid.GRID4, "DE", "europe")
    node = grid4_node_command(nodes[0])
    assert (node.command_id, node.node_id, node.farm_id) == (
        "grid4:node:1",
        "g4-node-1",
        "g4-farm-3",
    )
    assert node.total == Resources(cru=32, mru=137438953472, sru=1000204886016, hru=4000787030016)
    assert grid4_node_status(nodes[0]) == NodeStatus.UP
    offline = grid4_node_command(nodes[1])
    assert (offline.country, offline.region) == ("SG", "asia")
    assert grid4_node_status(nodes[1]) == NodeStatus.DOWN


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Belgium", ("BE", "europe")),
        ("be", ("BE", "europe")),
        ("United States of America", ("US", "north-america")),
        ("Atlantis", ("Atlantis", "unknown")),
        ("", ("unknown", "unknown")),
        (None, ("unknown", "unknown")),
    ],
)
def test_locate(given: str | None, expected: tuple[str, str]) -> None:
    assert locate(given) == expected


def test_a_status_command_is_named_by_the_stream_version() -> None:
    command = status_command(Grid.GRID4, 9, NodeStatus.DOWN, 3)
    assert command.command_id == "grid4:node:9:status:3:down"
    assert command.node_id == "g4-node-9"
    assert command.status == NodeStatus.DOWN


def test_a_node_listed_up_whose_last_report_is_over_80_minutes_old_is_down() -> None:
    data = {**load("grid3_node_old.json"), "status": "up", "updatedAt": 1_767_261_600}
    node = Grid3Node.model_validate(data)
    reported = datetime.fromtimestamp(1_767_261_600, UTC)
    assert grid3_node_status(node, reported + timedelta(minutes=80)) == NodeStatus.UP
    assert grid3_node_status(node, reported + timedelta(minutes=81)) == NodeStatus.DOWN
    assert grid3_node_status(node) == NodeStatus.UP  # no clock: the proxy's word
    standby = Grid3Node.model_validate({**data, "status": "standby"})
    assert grid3_node_status(standby, reported + timedelta(hours=3)) == NodeStatus.STANDBY
