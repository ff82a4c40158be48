"""Issue 13, item 1, through the real command line: ids that are not whole ids are refused
with exit 2 and nothing written; with a poison row already in the store (written raw, as an
older version let it through) the listings warn and list the rest, and ``hero replay``
completes and the skip is listed by ``hero events skipped``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hero.store import open_store
from tests._poison import POISON_STREAM, insert_poison_row
from tests.e2e._cli import hero, hero_json, stack_up, store_url

pytestmark = pytest.mark.e2e

FARM = {"farm_id": "farm-x", "name": "X", "grid": "grid4", "country": "BE", "region": "eu"}


def _append(data: Path, stream: str, *extra: str, payload: dict[str, str] = FARM) -> object:
    return hero(
        "events", "append", stream, "FarmRegistered", "--payload", json.dumps(payload), *extra,
        data_dir=data,
    )  # fmt: skip


def _position(data: Path) -> int:
    store = open_store(store_url(data))
    try:
        return store.current_position()
    finally:
        store.close()


def _db(data: Path) -> str:
    return store_url(data)


def test_a_stream_id_with_a_trailing_newline_is_refused_and_nothing_written(
    tmp_path: Path,
) -> None:
    result = _append(tmp_path, POISON_STREAM)
    assert result.returncode == 2, result.stdout
    assert "stream must be an id" in " ".join(result.stderr.split())
    assert _position(tmp_path) == 0


def test_a_command_id_with_a_space_and_a_semicolon_is_refused(tmp_path: Path) -> None:
    result = _append(tmp_path, "farm-x", "--command-id", "a b;drop")
    assert result.returncode == 2, result.stdout
    assert "command id must be an id" in " ".join(result.stderr.split())
    assert _position(tmp_path) == 0


def test_a_nul_in_a_name_is_refused(tmp_path: Path) -> None:
    result = _append(tmp_path, "farm-x", payload=dict(FARM, name="X\x00Y"))
    assert result.returncode == 2, result.stdout
    assert "name" in result.stderr
    assert "nothing was written" in result.stderr
    assert _position(tmp_path) == 0


def test_an_actor_with_a_newline_is_refused(tmp_path: Path) -> None:
    result = _append(tmp_path, "farm-x", "--actor", "cli\n")
    assert result.returncode == 2, result.stdout
    assert "actor must be" in result.stderr
    assert _position(tmp_path) == 0


@pytest.mark.parametrize(
    "listing",
    [
        ("contracts", "list"),
        ("nodes", "list"),
        ("negotiations", "list"),
        ("accounts", "list"),
        ("payments", "list"),
        ("usage", "list"),
        ("workloads", "list"),
        ("events", "read", POISON_STREAM),
    ],
)
def test_listings_warn_about_a_poison_row_and_list_the_rest(
    tmp_path: Path, listing: tuple[str, ...]
) -> None:
    assert _append(tmp_path, "farm-x").returncode == 0
    poison = insert_poison_row(_db(tmp_path))
    result = hero(*listing, data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    if listing[0] in ("contracts", "nodes", "negotiations", "events"):
        # these fold a FarmRegistered: each says which row it stepped over
        assert f"position {poison}" in " ".join(result.stderr.split())


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data = tmp_path_factory.mktemp("poison") / "stack"
    with stack_up(data):
        yield data


def test_replay_completes_over_a_poison_row_and_the_skip_is_listed(stack_dir: Path) -> None:
    assert _append(stack_dir, "farm-rp").returncode == 0
    poison = insert_poison_row(_db(stack_dir))
    assert _append(stack_dir, "farm-rp2", payload=dict(FARM, farm_id="farm-rp2")).returncode == 0

    report = hero_json("replay", data_dir=stack_dir)
    rows = {row["name"]: row for row in report["projections"]}
    assert rows["farms"]["position"] > poison
    assert rows["farms"]["documents"] >= 2

    skipped = hero_json("events", "skipped", data_dir=stack_dir)
    assert {"source": "read-models", "position": poison, "stream": POISON_STREAM} in [
        {k: s[k] for k in ("source", "position", "stream")} for s in skipped
    ]
    table = hero("events", "skipped", data_dir=stack_dir)
    assert table.returncode == 0, table.stderr
    assert "invalid_envelope" in table.stdout
