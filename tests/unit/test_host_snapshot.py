"""An agent host's snapshot (agents/runtime/snapshot.py) over the golden history: a host
started from a snapshot at any cut, then fed the tail, holds the same market, the same applied
versions and the same brains as one that folded the whole log, and decides the same commands;
an unreadable body or another format version is refused; every slot of every brain is
declared carried or not, and the declaration is pinned to the brains' format version."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.agentset import deliver
from agents.brain import Brain
from agents.market import MarketView
from agents.roster import market_roster
from agents.runtime.routing import AppliedVersions, shard_of
from agents.runtime.snapshot import (
    BRAINS_FINGERPRINT,
    BRAINS_VERSION,
    CARRIED,
    HOST_SCHEMA_VERSION,
    NOT_CARRIED,
    HostState,
    brains_fingerprint,
    decode_host,
    encode_host,
)
from hero.model.snapshot import MODEL_SCHEMA_VERSION, SnapshotUnreadable
from tests.unit.test_golden_history import _history

SHARDS = 2


class _Host:
    """What a host folds, without its I/O: the view, the applied versions, its shard's
    brains (the host's ``_ingest``, in log order)."""

    def __init__(self, shard: int, restored: HostState | None = None):
        self.shard = shard
        self.market = MarketView(restored.state) if restored else MarketView()
        self.applied = restored.applied if restored else AppliedVersions()
        self.brains: dict[str, Brain] = restored.brains if restored else {}

    def owns(self, agent_id: str) -> bool:
        return shard_of(agent_id, SHARDS) == self.shard

    def fold(self, items) -> None:
        for envelope, event in items:
            if self.applied.admit("topic", envelope):
                deliver(self.market, self.brains, self.owns, envelope, event, market_roster)

    def snapshot(self) -> bytes:
        return encode_host(HostState(self.market.state, self.applied, self.brains))


def _carried(brain: Brain) -> dict[str, object]:
    return {name: getattr(brain, name) for name in CARRIED[type(brain)][1]}


def _assert_same(restored: _Host, whole: _Host) -> None:
    assert restored.market.state == whole.market.state
    assert sorted(restored.applied.items()) == sorted(whole.applied.items())
    assert list(restored.brains) == list(whole.brains)  # the same agents, in the same order
    for agent_id, brain in whole.brains.items():
        assert _carried(restored.brains[agent_id]) == _carried(brain), agent_id
        assert restored.brains[agent_id].next_wakeup() == brain.next_wakeup(), agent_id


def _decide(restored: _Host, whole: _Host, at: int) -> int:
    """Both decide at a few moments after event ``at``: the same commands; their count."""
    decided = 0
    base = _history()[max(at - 1, 0)][0].recorded_at
    for later in (timedelta(0), timedelta(seconds=30), timedelta(hours=2)):
        for agent_id, brain in whole.brains.items():
            mine = restored.brains[agent_id].decide(base + later, restored.market)
            assert mine == brain.decide(base + later, whole.market), agent_id
            decided += len(mine)
    return decided


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=1, max_value=len(_history())), shard=st.integers(0, SHARDS - 1))
def test_a_host_from_a_snapshot_at_any_cut_folds_and_decides_as_a_full_replay(cut, shard):
    _restart_at(cut, shard)


def _restart_at(cut: int, shard: int) -> int:
    """A host restored at ``cut`` and one that folded the log, side by side to the end;
    returns how many commands they both decided."""
    history = _history()
    before, whole = _Host(shard), _Host(shard)
    before.fold(history[:cut])
    whole.fold(history[:cut])
    restored = _Host(shard, decode_host(before.snapshot()))
    _assert_same(restored, whole)
    decided = _decide(restored, whole, cut)  # deciding changes both alike
    middle = (cut + len(history)) // 2
    for host in (restored, whole):
        host.fold(history[cut:middle])
    _assert_same(restored, whole)
    decided += _decide(restored, whole, middle)
    for host in (restored, whole):
        host.fold(history[middle:])
    _assert_same(restored, whole)
    return decided


@pytest.mark.parametrize(("cut", "shard"), [(300, 0), (1500, 1), (2100, 0)])
def test_the_decisions_compared_at_a_cut_are_not_all_empty(cut, shard):
    assert _restart_at(cut, shard) > 0


def test_every_slot_of_every_brain_is_declared_carried_or_not():
    for kind, (made_by, carried) in CARRIED.items():
        slots = {s for c in kind.__mro__ for s in getattr(c, "__slots__", ())}
        assert set(carried) | NOT_CARRIED[kind] == slots, kind.__name__
        assert not set(carried) & NOT_CARRIED[kind]
        assert made_by in NOT_CARRIED[kind]


def test_the_brains_shape_is_pinned_to_their_format_version():
    # A slot declared anew, or a change to a type a brain keeps: bump BRAINS_VERSION and pin
    # the new fingerprint with it, so that older host snapshots are ignored.
    assert (BRAINS_VERSION, brains_fingerprint()) == (BRAINS_VERSION, BRAINS_FINGERPRINT)
    assert HOST_SCHEMA_VERSION == MODEL_SCHEMA_VERSION * 1000 + BRAINS_VERSION


def test_a_corrupt_or_foreign_host_body_is_refused():
    host = _Host(0)
    host.fold(_history()[:500])
    body = host.snapshot()
    flipped = bytearray(body)
    flipped[len(body) // 3] ^= 1
    for bad in (bytes(flipped), body[:-10], b"garbage", body[:4] + (HOST_SCHEMA_VERSION + 1)
                .to_bytes(4, "big") + body[8:]):  # fmt: skip
        with pytest.raises(SnapshotUnreadable):
            decode_host(bad)
