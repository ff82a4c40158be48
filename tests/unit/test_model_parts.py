"""The rebuild's partitioned fold (hero.readmodels._rebuild, hero.model.parts): the ledger's
events folded by a second process from the store, the rest by this one, the two parts joined,
must give exactly what one fold of the whole log gives: the model, field by field, the
documents every projection renders, their links and positions. On the golden history and on
the benchmark's generated log (two seeds), in a SQLite store (the second process opens it by
its URL)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from hero.model import (
    HANDLERS,
    HOLDS,
    LEDGER,
    MarketState,
    apply,
    join_parts,
    part_apply,
    part_types,
    seen_types,
)
from hero.readmodels import _rebuild
from hero.readmodels.projections import PROJECTIONS, Projection
from hero.store import (
    EventStore,
    MemoryEventStore,
    SqliteEventStore,
    trusted_decoder,
)
from tests._golden import append_golden
from tests._poison import insert_poison_row, insert_raw_row

ROOT = Path(__file__).parents[2]
AWAY_TYPES = _rebuild._AWAY_TYPES
PROJECTED = list(PROJECTIONS.values())
WANTED = frozenset().union(*(p.types for p in PROJECTED)) | {t.__name__ for t in HANDLERS}
ONE_PROCESS = 10**12


def _generate() -> Any:
    spec = importlib.util.spec_from_file_location(
        "_replay_log", ROOT / "benchmarks" / "_replay_log.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.generate


def _fold(
    store: EventStore, partition_from: int, batch: int = 1000, through: int | None = None
) -> _rebuild.Folded:
    through = store.current_position() if through is None else through
    return _rebuild.fold_log(
        store, PROJECTED, WANTED, "test", through=through, batch=batch,
        partition_from=partition_from,
    )  # fmt: skip


def _assert_same(one: _rebuild.Folded, split: _rebuild.Folded) -> None:
    assert split.position == one.position
    for each in fields(MarketState):
        name = each.name
        assert getattr(split.model, name) == getattr(one.model, name), name
    for name in PROJECTIONS:
        assert split.touched[name].last == one.touched[name].last, name
        assert split.documents(name) == one.documents(name), name
        assert split.links(name) == one.links(name), name


@pytest.fixture(params=["golden", "generated-1", "generated-7"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    store = SqliteEventStore(tmp_path / "events.db", synchronous="NORMAL")
    if request.param == "golden":
        append_golden(store)
    else:
        _generate()(store, 6000, int(request.param.rsplit("-", 1)[1]))
    yield store
    store.close()


def test_the_partitioned_fold_equals_one_fold(store: SqliteEventStore) -> None:
    one = _fold(store, ONE_PROCESS)
    split = _fold(store, 1, batch=777)  # the reads split elsewhere too
    assert one.model.accounts
    assert one.model.books
    assert one.model.posted_transfers
    assert sum(len(s.last) for s in one.touched.values()) > 100
    _assert_same(one, split)
    held = 0
    for cut in (store.current_position() // 3, store.current_position() // 2):
        one = _fold(store, ONE_PROCESS, through=cut)
        held += sum(len(node.holds) for node in one.model.nodes.values())
        _assert_same(one, _fold(store, 1, through=cut))
    assert held  # a cut with holds not yet taken, joined from the second process


def test_each_process_reads_only_its_own_rows(store: SqliteEventStore) -> None:
    through = store.current_position()
    everything = [row for rows in store.read_batches(1, 500, through) for row in rows]
    ledger = store.read_typed_batches(AWAY_TYPES, batch=500, through=through)
    market = store.read_typed_batches(AWAY_TYPES, exclude=True, batch=500, through=through)
    ledger_rows = [row for rows in ledger for row in rows]
    market_rows = [row for rows in market for row in rows]
    assert ledger_rows
    assert market_rows
    assert {row.type for row in ledger_rows} <= AWAY_TYPES
    assert not {row.type for row in market_rows} & AWAY_TYPES
    assert sorted(ledger_rows + market_rows, key=lambda r: r.position) == everything
    # the store read the same rows, filtered in the query, as the port's plain filter does
    plain = [r for rows in EventStore.read_typed_batches(store, AWAY_TYPES, through=through)
             for r in rows]  # fmt: skip
    assert plain == ledger_rows
    cut = everything[len(everything) // 2].position
    assert all(r.position <= cut for rows in store.read_typed_batches(
        AWAY_TYPES, through=cut) for r in rows)  # fmt: skip


def test_a_store_of_this_process_only_is_folded_in_one() -> None:
    store = MemoryEventStore()
    _generate()(store, 2000, 1)
    assert store.reader_url() is None
    _assert_same(_fold(store, ONE_PROCESS), _fold(store, 1))


def test_a_projection_with_links_reading_ledger_events_is_not_split(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    linked = next(p for p in PROJECTED if p.name == "workloads")
    spanning = Projection(  # links moved by both parts' events: only one fold keeps their order
        name="spanning",
        types=linked.types | AWAY_TYPES,
        keys=linked.keys,
        render=linked.render,
        via=linked.via,
        links=linked.links,
    )
    assert _rebuild._away_split([spanning], WANTED) is None
    assert _rebuild._away_split(PROJECTED, frozenset({"ContractCreated"})) is None
    split = _rebuild._away_split(PROJECTED, WANTED)
    assert split is not None
    assert [s.projection.name for s in split] == ["nodes", "accounts"]
    assert store.reader_url() == f"sqlite:///{(tmp_path / 'events.db').resolve()}"
    store.close()


def test_each_part_s_events_touch_only_its_fields(store: SqliteEventStore) -> None:
    """The ledger's events folded alone leave every other field as a new state has it, and
    the other events folded alone leave the ledger's fields so."""
    through = store.current_position()
    decode = trusted_decoder()
    rows = [row for rows in store.read_batches(1, 1000, through) for row in rows]
    ledger, market, empty = MarketState(), MarketState(), MarketState()
    for row in rows:
        apply(ledger if row.type in LEDGER.types else market, *decode(row))
    for each in fields(MarketState):
        name = each.name
        if name == "position":
            continue
        other = market if name in LEDGER.fields else ledger
        assert getattr(other, name) == getattr(empty, name), name
    assert ledger.accounts
    assert ledger.books
    assert market.contracts
    assert market.offers


def test_a_poison_row_is_skipped_and_recorded_by_the_process_that_reads_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    store = SqliteEventStore(path)
    _generate()(store, 2000, 1)
    ledger_row = insert_raw_row(path, "poison-ledger", "TransferPosted", "hero.payments", {"x": 1})
    market_row = insert_poison_row(path)
    _generate()(store, 2500, 1)  # more of the log after them: each process goes on
    assert store.current_position() > market_row + 400
    split = _fold(store, 1)
    skipped = {(skip.source, skip.position) for skip in store.skipped()}
    assert {("test", ledger_row), ("test", market_row)} <= skipped
    _assert_same(_fold(store, ONE_PROCESS), split)
    assert split.position == store.current_position()
    store.close()


@pytest.mark.parametrize(
    "parts", [(LEDGER,), (HOLDS,), (LEDGER, HOLDS)], ids=["ledger", "holds", "both"]
)
def test_parts_folded_apart_and_joined_equal_one_fold(
    store: SqliteEventStore, parts: tuple[Any, ...]
) -> None:
    """In this process, through several cuts of the log: the rest folded without the parts'
    events, the parts folded from theirs and the ones they also see (part_apply), joined:
    the one fold's state."""
    decode = trusted_decoder()
    rows = [r for rows in store.read_batches(1, 1000, store.current_position()) for r in rows]
    items = [decode(row) for row in rows]
    own, seen = part_types(parts), seen_types(parts)
    fold_away = part_apply(parts)
    held = 0
    for cut in (len(items) // 5, len(items) // 3, len(items) // 2, len(items)):
        one, rest, away = MarketState(), MarketState(), MarketState()
        for envelope, event in items[:cut]:
            apply(one, envelope, event)
            if envelope.type not in own:
                apply(rest, envelope, event)
            if envelope.type in seen:
                fold_away(away, envelope, event)
        held += sum(len(node.holds) for node in one.nodes.values())
        join_parts(rest, away, parts)
        for each in fields(MarketState):
            assert getattr(rest, each.name) == getattr(one, each.name), (cut, each.name)
    assert held  # some cut has holds not yet taken


class _Unreachable(SqliteEventStore):
    """A store the second process cannot open (a URL of no store it knows)."""

    def reader_url(self) -> str | None:
        return "nosuch:///events.db"


def test_a_second_process_that_fails_leaves_the_fold_to_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _Unreachable(tmp_path / "events.db")
    _generate()(store, 2000, 1)
    folded = _fold(store, 1)
    assert "the second process failed" in caplog.text
    _assert_same(_fold(store, ONE_PROCESS), folded)
    assert folded.model.accounts
    store.close()
