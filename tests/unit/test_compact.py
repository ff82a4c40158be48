"""A deciding host's compaction (hero.model.compact) over the golden history: a host that
drops the finished history decides exactly as one that keeps it, for any cut, horizon and
shard, also when late events name what it dropped; compacting twice is compacting once; the
snapshot it saves is smaller and decodes to the same compacted state."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.market import MarketView
from agents.runtime import AgentHostCore, Delivery, HostOptions
from agents.runtime.host import host_snapshots
from agents.runtime.routing import AGENT_TOPICS
from agents.runtime.snapshot import CARRIED, HOST_SCHEMA_VERSION, decode_host
from hero.domain.clock import ManualClock
from hero.model import MarketState, apply_all, compact, compact_at
from hero.model.snapshot import SnapshotUnreadable, decode_state, encode_state, frame, unframe
from hero.store import MemorySnapshotStore, SnapshotCadence
from schemas import (
    REGISTRY,
    ContractCancelled,
    Envelope,
    Event,
    HoldReleased,
    NegotiationAwarded,
    OfferDeclined,
    OfferWithdrawn,
    SlaOutcomeRecorded,
    UsageRecorded,
    UtilizationSampled,
)
from tests.unit.test_golden_history import _history
from tests.unit.test_host_snapshot import SHARDS, _Host
from tests.unit.test_router import ListHistory, QueueFeed, Running, until

#: What may come late, naming an entity finished long ago: a repeated cancellation, a
#: negotiation's close read again, a stray answer, a usage fact or sample after the end.
_LATE = (
    ContractCancelled,
    NegotiationAwarded,
    OfferDeclined,
    OfferWithdrawn,
    HoldReleased,
    UtilizationSampled,
    UsageRecorded,
    SlaOutcomeRecorded,
)


def _newest(items) -> datetime:
    return max(envelope.occurred_at for envelope, _ in items)


class _Compacting(_Host):
    """A host that compacts at ``after_s`` before the newest event it folded, every ``every``
    events (as :class:`~agents.runtime.host.AgentHostCore` does) and when asked."""

    def __init__(self, shard: int, after_s: float, every: int):
        super().__init__(shard)
        self.after_s, self.every = after_s, every
        self.newest: datetime | None = None
        self.dropped = 0

    def fold(self, items) -> None:
        for start in range(0, len(items), self.every):
            chunk = items[start : start + self.every]
            super().fold(chunk)
            if chunk:
                self.newest = max(self.newest or _newest(chunk), _newest(chunk))
            self.compact()

    def compact(self) -> None:
        self.dropped += compact_at(self.market.state, self.newest, self.after_s).total


def _late(items, picks: list[int], after: int) -> list[tuple[Envelope, Event]]:
    """Events of ``items`` of the kinds that may come late, delivered again as new ones (a
    stream of their own, so no host drops them as repeats) after position ``after``."""
    late = [(e, ev) for e, ev in items if isinstance(ev, _LATE)]
    chosen = [late[i % len(late)] for i in picks]
    return [
        (
            envelope.model_copy(
                update={"stream": f"late-{n}", "version": 1, "position": after + n + 1}
            ),
            event,
        )
        for n, (envelope, event) in enumerate(chosen)
    ]


def _carried(host: _Host) -> dict[str, dict[str, object]]:
    return {
        agent_id: {name: _seen(getattr(brain, name)) for name in CARRIED[type(brain)][1]}
        for agent_id, brain in host.brains.items()
    }


def _seen(value: object) -> object:
    """An offtaker's open negotiations as they read: a track's records are the model's whole
    offers table (by reference), of which the track reads its own offers'."""
    if isinstance(value, dict) and value and all(hasattr(v, "records") for v in value.values()):
        return {
            n: (
                t.rfq,
                t.nego,
                t.offers,
                t.skipped,
                t.notes,
                {o: t.records.get(o) for o in [*t.offers, *t.nego.offers]},
            )
            for n, t in value.items()
        }
    return value


def _same_decisions(compacted: _Host, whole: _Host, at: datetime) -> int:
    """Both hosts' brains decide at a few moments from ``at``: the same commands, the same
    next wakeups; how many commands."""
    assert list(compacted.brains) == list(whole.brains)
    assert _carried(compacted) == _carried(whole)
    decided = 0
    for later in (timedelta(0), timedelta(seconds=30), timedelta(hours=2), timedelta(days=9)):
        for agent_id, brain in whole.brains.items():
            mine = compacted.brains[agent_id].decide(at + later, compacted.market)
            assert mine == brain.decide(at + later, whole.market), agent_id
            assert compacted.brains[agent_id].next_wakeup() == brain.next_wakeup(), agent_id
            decided += len(mine)
    return decided


def _side_by_side(cut: int, shard: int, after_s: float, every: int, picks: list[int]) -> tuple[
    int, int]:  # fmt: skip
    """A compacting host and a keeping one fold the golden history with late events
    appended, deciding at the cut and at the end; (commands decided, entities dropped)."""
    history = list(_history())
    history += _late(history, picks, len(history))
    compacted, whole = _Compacting(shard, after_s, every), _Host(shard)
    decided = 0
    for part in (history[:cut], history[cut:]):
        if not part:
            continue
        compacted.fold(part)
        whole.fold(part)
        decided += _same_decisions(compacted, whole, part[-1][0].recorded_at)
    return decided, compacted.dropped


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.integers(min_value=0, max_value=len(_history())),
    shard=st.integers(0, SHARDS - 1),
    after_s=st.floats(min_value=0.001, max_value=4 * 3600.0),
    every=st.integers(min_value=100, max_value=3000),
    picks=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40),
)
def test_a_compacting_host_decides_as_one_that_keeps_all_history(cut, shard, after_s, every, picks):
    _side_by_side(cut, shard, after_s, every, picks)


@pytest.mark.parametrize(("cut", "shard"), [(1500, 0), (2100, 1)])
def test_the_compared_hosts_decide_something_and_drop_something(cut, shard):
    # seconds-long horizons on a three-hour history: most of it is finished and dropped
    decided, dropped = _side_by_side(cut, shard, 60.0, 200, list(range(0, 400, 7)))
    assert decided > 0
    assert dropped > 300


def _compacted_golden(after_s: float) -> tuple[MarketState, MarketState]:
    history = _history()
    whole = apply_all(history)
    state = copy.deepcopy(whole)
    compact_at(state, _newest(history), after_s)
    return state, whole


def test_compaction_drops_only_finished_history():
    state, whole = _compacted_golden(60.0)
    assert len(state.negotiations) < len(whole.negotiations)
    assert len(state.offers) < len(whole.offers)
    assert len(state.contracts) < len(whole.contracts)
    assert all(not nego.open for n, nego in whole.negotiations.items()
               if n not in state.negotiations)  # fmt: skip
    for contract_id, contract in whole.contracts.items():
        if contract_id not in state.contracts:
            assert not contract.live
            for kept in (state.billing, state.usage, state.placements, state.sla_outcomes):
                assert contract_id not in kept
    # the live market stays whole: farms, nodes (holds, contracts), mandates, live contracts
    assert state.farms == whole.farms
    assert state.nodes == whole.nodes
    assert state.mandates == whole.mandates
    assert [c.contract_id for c in state.live_contracts()] == [
        c.contract_id for c in whole.live_contracts()
    ]


@given(after_s=st.floats(min_value=0.001, max_value=4 * 3600.0))
@settings(max_examples=25, deadline=None)
def test_compacting_twice_is_compacting_once(after_s):
    once, _ = _compacted_golden(after_s)
    twice = copy.deepcopy(once)
    before = _newest(_history()) - timedelta(seconds=after_s)
    assert compact(twice, before).total == 0
    assert twice == once


def test_a_compacted_state_round_trips_and_is_smaller():
    state, whole = _compacted_golden(60.0)
    body = encode_state(state)
    assert decode_state(body) == state
    # the payments' books (a host folds no payments) are kept: a third less, not more
    assert len(body) < len(encode_state(whole)) * 0.7


def test_a_late_event_for_a_dropped_contract_changes_no_decision():
    history = list(_history())
    ended = next(ev for _, ev in history if isinstance(ev, ContractCancelled))
    compacted, whole = _Compacting(0, 60.0, len(history)), _Host(0)
    compacted.fold(history)
    whole.fold(history)
    assert ended.contract_id not in compacted.market.state.contracts
    assert ended.contract_id in whole.market.state.contracts
    late = [(e, ev) for e, ev in history if isinstance(ev, ContractCancelled)][:1]
    late += [(e, ev) for e, ev in history
             if getattr(ev, "contract_id", None) == ended.contract_id][:3]  # fmt: skip
    again = _late(late, list(range(len(late))), len(history))
    compacted.fold(again)
    whole.fold(again)
    _same_decisions(compacted, whole, history[-1][0].recorded_at)
    # what the late cancellation left goes at the next compaction
    compacted.compact()
    assert ended.contract_id not in compacted.market.state.early_cancellations


def test_a_host_snapshot_of_a_compacted_host_decodes_to_it():
    host = _Compacting(1, 60.0, 500)
    host.fold(list(_history()))
    restored = decode_host(host.snapshot())
    assert restored.state == host.market.state


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=1, max_value=len(_history())), shard=st.integers(0, SHARDS - 1))
def test_settled_applied_versions_admit_as_the_full_map(cut, shard):
    # A snapshot after a log-order fold keeps the floor, not a version per stream ever seen:
    # the restored host then takes the tail and refuses every repeat (the whole log again,
    # as a refilled broker delivers it) exactly as the host that remembers every stream.
    history = list(_history())
    settled, whole = _Host(shard), _Host(shard)
    settled.fold(history[:cut])
    whole.fold(history[:cut])
    settled.applied.settle(history[cut - 1][0].position)
    restored = _Host(shard, decode_host(settled.snapshot()))
    assert restored.applied.floor == history[cut - 1][0].position
    assert len(restored.applied) == 0 < len(whole.applied)
    for envelope, _ in history[cut:] + history:  # the tail, then every delivery again
        assert restored.applied.admit("topic", envelope) == whole.applied.admit("topic", envelope)
    assert all(restored.applied.repeat("topic", envelope) for envelope, _ in history)


def test_a_floor_that_is_not_a_position_is_refused():
    host = _Host(0)
    host.fold(list(_history())[:100])
    tree = orjson.loads(unframe(host.snapshot(), HOST_SCHEMA_VERSION))
    for bad in (-1, "7", 1.5, None):
        tree["applied_floor"] = bad
        with pytest.raises(SnapshotUnreadable, match="floor"):
            decode_host(frame(orjson.dumps(tree), HOST_SCHEMA_VERSION))


async def test_the_host_compacts_as_it_folds_and_before_its_snapshot():
    history = [
        Delivery(REGISTRY.topic_for(envelope.type).value, envelope, event)
        for envelope, event in _history()
        if REGISTRY.topic_for(envelope.type).value in AGENT_TOPICS
    ]
    store = MemorySnapshotStore()
    keeper = host_snapshots(store, 0, 1, SnapshotCadence(every_events=len(history), every_s=1e9))
    core = AgentHostCore(
        shard=0,
        shards=1,
        market=MarketView(),
        history=ListHistory(history),
        feed=QueueFeed(),
        sink=_no_sends,
        clock=ManualClock(history[-1].envelope.recorded_at),
        options=HostOptions(resume_decide=False, compact_after_s=5.0, compact_every_events=300),
        snapshots=keeper,
    )
    running = Running(core)
    try:
        await until(lambda: core.caught_up)
    finally:
        await running.close()
    stats = core.stats()
    assert stats.compactions >= len(history) // 300
    assert stats.compacted > 300
    whole = apply_all(_history())
    assert len(core.market.state.offers) < len(whole.offers) / 2
    newest = keeper.newest(history[-1].envelope.position)
    assert newest is not None
    restored = decode_host(newest.body)
    assert len(restored.state.offers) < len(whole.offers) / 2  # compacted before the save
    assert restored.applied.floor == newest.position
    assert len(restored.applied) == 0


async def _no_sends(agent_id: str, command: object) -> object:
    return None
