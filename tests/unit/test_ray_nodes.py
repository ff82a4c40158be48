"""The Ray cluster's settings and pure decisions: how many worker nodes, which host moves."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from agents.runtime.cluster import ClusterStats, next_move
from agents.runtime.host import HostStats
from hero.cli import app
from hero.config import HeroSettings
from infra import LocalStack, StackError
from infra.ray_nodes import ray_worker_name, ray_worker_names


def _host(shard: int, node_id: str, node: str = "") -> HostStats:
    return HostStats(shard=shard, shards=4, pid=100 + shard, node=node, node_id=node_id)


def test_ray_nodes_default_to_the_head_alone_and_are_read_from_the_environment(monkeypatch):
    assert HeroSettings().ray_nodes == 1
    monkeypatch.setenv("HERO_RAY_NODES", "3")
    assert HeroSettings().ray_nodes == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HERO_RAY_NODES", "0"),
        ("HERO_RAY_NODES", "9"),
        ("HERO_RAY_NODES", "two"),
        ("HERO_RAY_HEALTH_CHECK_PERIOD_MS", "50"),
        ("HERO_RAY_HEALTH_CHECK_FAILURES", "0"),
    ],
)
def test_out_of_range_ray_settings_are_refused(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("HERO_").lower()):
        HeroSettings()


def test_worker_node_names_follow_the_head():
    assert ray_worker_names(1) == ()
    assert ray_worker_names(3) == ("ray-2", "ray-3")
    with pytest.raises(ValueError, match=r"1\.\.8"):
        ray_worker_names(9)
    assert ray_worker_name("ray-8") == "ray-8"
    for bad in ("ray", "ray-1", "ray-9", "ray-2 ", "RAY-2"):
        with pytest.raises(ValueError, match="not a Ray worker node"):
            ray_worker_name(bad)


@pytest.mark.parametrize("value", ["0", "9", "x"])
def test_hero_up_refuses_a_ray_node_count_out_of_range_before_starting_anything(tmp_path, value):
    data_dir = tmp_path / "data"
    result = CliRunner().invoke(app, ["up", "--data-dir", str(data_dir), "--ray-nodes", value])
    assert result.exit_code == 2
    assert "--ray-nodes" in result.output
    assert not (data_dir / "run").exists()


def test_worker_nodes_of_an_external_ray_are_refused_before_anything_starts(tmp_path):
    settings = HeroSettings(data_dir=tmp_path / "data", ray_address="127.0.0.1:1", ray_nodes=2)
    with pytest.raises(StackError, match="external Ray"):
        LocalStack(settings).up()
    assert not (tmp_path / "data" / "run" / "stack.json").exists()
    assert list((tmp_path / "data").rglob("*.log")) == []  # no process was started


def test_no_move_while_the_hosts_are_spread_or_on_one_node():
    spread = [_host(0, "a"), _host(1, "b"), _host(2, "a"), _host(3, "b")]
    assert next_move(spread, ["a", "b"]) is None
    assert next_move([_host(i, "a") for i in range(4)], ["a"]) is None
    assert next_move([_host(0, "a"), _host(1, "a"), _host(2, "a"), _host(3, "b")], ["a", "b"]) == (
        2,
        "b",
    )


def test_hosts_move_back_one_at_a_time_onto_a_node_that_came_back():
    hosts = [_host(i, "head") for i in range(4)]
    assert next_move(hosts, ["head", "new"]) == (3, "new")
    hosts[3] = _host(3, "new")
    assert next_move(hosts, ["head", "new"]) == (2, "new")
    hosts[2] = _host(2, "new")
    assert next_move(hosts, ["head", "new"]) is None


def test_no_move_while_a_host_still_reports_a_node_ray_has_not_declared_dead():
    hosts = [_host(0, "head"), _host(1, "gone"), _host(2, "head"), _host(3, "head")]
    assert next_move(hosts, ["head", "new"]) is None


def test_the_stats_list_the_hosts_on_each_node():
    stats = ClusterStats([_host(0, "a", "ray"), _host(1, "b", "ray-2"), _host(2, "a", "ray")])
    assert stats.hosts_by_node == {"ray": [0, 2], "ray-2": [1]}
    assert stats.as_dict()["hosts_by_node"] == {"ray": [0, 2], "ray-2": [1]}
