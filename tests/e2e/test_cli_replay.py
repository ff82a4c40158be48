"""``hero replay`` against a stack started by ``hero up``: the read models rebuilt in the
stack's Valkey from its event store, per projection its documents and the position reached."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis

from hero.config import HeroSettings
from hero.readmodels import PROJECTIONS, Doc, ReadModels
from hero.store import ANY_VERSION, NewEvent, open_store
from infra import LocalStack
from schemas import Event, FarmRegistered, Grid, NodeRegistered, NodeStatus, NodeStatusChanged
from tests.e2e._cli import hero, hero_json, stack_up, store_url
from tests.unit._gwt import SHAPE

pytestmark = pytest.mark.e2e

T = datetime(2026, 3, 1, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data = tmp_path_factory.mktemp("replay") / "stack"
    with stack_up(data):
        yield data


def _record(data: Path, *events: tuple[str, Event]) -> int:
    store = open_store(store_url(data))
    try:
        for stream, event in events:
            new = NewEvent.of(event, actor="test", occurred_at=T)
            store.append(stream, ANY_VERSION, [new], f"cmd-{new.id}")
        return store.current_position()
    finally:
        store.close()


def _document(data: Path, name: str, id: str) -> Doc | None:
    async def read() -> Doc | None:
        redis = Redis.from_url(LocalStack(HeroSettings(data_dir=data)).endpoints().redis_url)
        try:
            return await ReadModels(redis).get(name, id)
        finally:
            await redis.aclose()

    return asyncio.run(read())


def test_replay_rebuilds_every_projection_from_the_store(stack_dir: Path) -> None:
    farm = FarmRegistered(farm_id="rp-f", name="rp", grid=Grid.GRID3, country="BE", region="eu")
    node = NodeRegistered(
        node_id="rp-n", farm_id="rp-f", grid=Grid.GRID3, country="BE", region="eu", total=SHAPE
    )
    down = NodeStatusChanged(node_id="rp-n", status=NodeStatus.DOWN, reason="test")
    position = _record(stack_dir, ("farm-rp-f", farm), ("node-rp-n", node), ("node-rp-n", down))

    report = hero_json("replay", data_dir=stack_dir)
    rows = {row["name"]: row for row in report["projections"]}
    assert list(rows) == list(PROJECTIONS)
    assert all(row["position"] >= position for row in rows.values())
    assert rows["nodes"]["documents"] >= 1
    assert rows["farms"]["documents"] >= 1
    assert report["seconds"] >= 0
    node_doc = _document(stack_dir, "nodes", "rp-n")
    assert node_doc is not None
    assert (node_doc["status"], node_doc["farm_id"]) == ("down", "rp-f")

    table = hero("replay", "--projection", "nodes", data_dir=stack_dir)
    assert table.returncode == 0, table.stderr + table.stdout
    text = " ".join(table.stdout.split())
    assert "nodes" in text
    assert "farms" not in text
    assert "rebuilt in" in text
    assert _document(stack_dir, "nodes", "rp-n") == node_doc  # rebuilt to the same document


def test_an_unknown_projection_exits_2_naming_the_known_ones(tmp_path: Path) -> None:
    result = hero("replay", "--projection", "nope", data_dir=tmp_path)
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "no projection 'nope'" in message
    assert "known: accounts, contracts, farms, negotiations, nodes, workloads" in message


def test_without_a_running_stack_replay_exits_1(tmp_path: Path) -> None:
    result = hero("replay", data_dir=tmp_path)
    assert result.returncode == 1
    assert "no stack running" in result.stderr
