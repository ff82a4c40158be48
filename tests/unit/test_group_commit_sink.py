"""The agent host's sink: commands queued together are written in one group commit."""

from __future__ import annotations

import asyncio
from contextlib import contextmanager

import pytest

from agents.runtime.sink import GroupCommitSink
from hero.market.service import CommandRejected
from hero.store import SqliteEventStore
from schemas import RegisterNode
from tests.unit._gwt import Market


class CountingStore(SqliteEventStore):
    """Counts the group commits, and can make the next one fail at its end."""

    commits = 0
    fail_next = False

    @contextmanager
    def group_commit(self):
        with super().group_commit():
            yield
            if self.fail_next:
                self.fail_next = False
                raise OSError("disk full")
        self.commits += 1


@pytest.fixture
def market(tmp_path) -> Market:
    m = Market()
    m = Market(CountingStore(tmp_path / "events.db", m.clock), m.clock)
    m.farm("farm_1")
    return m


def _nodes(market: Market, count: int) -> list[RegisterNode]:
    return [
        RegisterNode(
            command_id=f"node-{i}",
            node_id=f"node_{i}",
            farm_id="farm_1",
            grid="grid3",
            country="BE",
            region="europe",
            total={"cru": 2, "mru": 4 * 2**30, "sru": 50 * 2**30},
            uptime_pct="99.5",
        )
        for i in range(count)
    ]


async def test_commands_sent_together_share_one_commit_and_each_gets_its_answer(market):
    forgotten = []
    sink = GroupCommitSink(
        lambda agent, command: market.service.handle(command, actor=agent),
        market.store,
        on_abort=lambda: forgotten.append(True),
    )
    commands = _nodes(market, 50)
    bad = commands[0].model_copy(update={"command_id": "node-x", "farm_id": "nowhere"})
    before = market.store.commits
    results = await asyncio.gather(
        *(sink("farmer", c) for c in [*commands, bad]), return_exceptions=True
    )
    sink.close()

    assert all(not isinstance(r, Exception) for r in results[:50])
    assert isinstance(results[50], CommandRejected)
    assert market.store.commits - before < 50  # batched: far fewer commits than commands
    assert [market.store.stream_version(f"node-node_{i}") for i in range(50)] == [1] * 50
    assert forgotten == []


async def test_a_failed_commit_fails_every_command_of_the_batch_and_stores_none(market):
    forgotten = []

    def forget() -> None:  # what the hosts' sink does (agents/runtime/sink.py), and count it
        forgotten.append(True)
        market.service.forget()

    sink = GroupCommitSink(
        lambda agent, command: market.service.handle(command, actor=agent),
        market.store,
        max_batch=1000,
        on_abort=forget,
    )
    market.store.fail_next = True
    position = market.store.current_position()
    results = await asyncio.gather(
        *(sink("farmer", c) for c in _nodes(market, 5)), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, OSError)]
    assert failed, "the first batch failed at its commit"
    assert forgotten == [True]
    stored = market.store.current_position() - position
    assert stored == len(results) - len(failed)  # only batches after the failure are stored
    again = await asyncio.gather(*(sink("farmer", c) for c in _nodes(market, 5)))
    sink.close()
    assert market.store.current_position() - position == 5
    assert sum(bool(getattr(r, "duplicate", False)) for r in again) == 5 - len(failed)
