"""Keeping a following host's snapshot fresh, beside it: the newest snapshot brought to the
store's head by folding the store after it, in log order, into a copy nobody decides with.

A host saves snapshots only while it catches up (see :mod:`agents.runtime.snapshot`: only
there is its state a fold of the store up to a position, with nothing decided). Without this,
a host that followed Kafka for a day and then crashed would replay that day. The copy is
folded in a thread from plain store reads, so it shares no object with the live host; it
costs a second copy of the state while it runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from agents.agentset import deliver
from agents.market import MarketView
from agents.roster import Roster, market_roster
from agents.runtime.feed import BadRecord, decode, decode_envelope
from agents.runtime.routing import AGENT_TOPICS, AppliedVersions, shard_of
from agents.runtime.snapshot import HostState, decode_host, encode_host
from hero.model import COMPACT_AFTER_S, MarketState, compact_at
from hero.model.snapshot import SnapshotUnreadable
from hero.store import EventStore, SnapshotKeeper

__all__ = ["SnapshotRefresher", "refreshed"]

log = logging.getLogger(__name__)

_BATCH = 2000


def refreshed(
    store: EventStore,
    keeper: SnapshotKeeper,
    shard: int,
    shards: int,
    roster: Roster = market_roster,
    compact_after_s: float | None = COMPACT_AFTER_S,
) -> int | None:
    """Fold the store after the newest snapshot up to its head and save that, compacted as
    the host compacts (:class:`~agents.runtime.host.HostOptions`); the position saved, or
    None when there was nothing new (or the save failed, logged by the keeper)."""
    head = store.current_position()
    found = keeper.newest(head)
    host = HostState(MarketState(), AppliedVersions(), {})
    if found is not None:
        try:
            host = decode_host(found.body)
        except SnapshotUnreadable as error:
            keeper.unreadable(found, str(error))
            found = None
    start = found.position if found is not None else 0
    if start >= head:
        return None
    market = MarketView(host.state)
    owns: Callable[[str], bool] = lambda agent_id: shard_of(agent_id, shards) == shard  # noqa: E731
    newest = _fold(store, start, head, market, host, owns, roster)
    compact_at(market.state, newest, compact_after_s)
    host.applied.settle(head)  # folded in log order through the head
    body = encode_host(HostState(market.state, host.applied, host.brains))
    return head if keeper.save(head, body) else None


def _fold(
    store: EventStore,
    after: int,
    head: int,
    market: MarketView,
    host: HostState,
    owns: Callable[[str], bool],
    roster: Roster,
) -> datetime | None:
    """As :class:`~agents.runtime.feed.StoreHistory` and the host's ``_ingest`` fold it; the
    newest event time folded (None: none)."""
    position = after
    newest: datetime | None = None
    while position < head:
        rows = store.read_all(position + 1, min(_BATCH, head - position))
        if not rows:
            return newest
        for row in rows:
            if row.position > head:
                return newest
            position = row.position
            if row.topic not in AGENT_TOPICS:
                continue
            try:
                envelope = decode_envelope(row.envelope_json)
                if not host.applied.admit(row.topic, envelope):
                    continue
                delivery = decode(row.topic, envelope)
            except BadRecord:
                continue  # the live host met it too, and recorded it
            try:
                deliver(market, host.brains, owns, envelope, delivery.event, roster)
            except Exception:  # as the host's _ingest: one bad event must not stop the rest
                log.exception("snapshot refresh: applying %s at %d", envelope.type, row.position)
            if newest is None or envelope.occurred_at > newest:
                newest = envelope.occurred_at
    return newest


class SnapshotRefresher:
    """A thread refreshing a host's snapshot when its keeper's cadence says so."""

    def __init__(
        self,
        store: EventStore,
        keeper: SnapshotKeeper,
        shard: int,
        shards: int,
        *,
        ready: Callable[[], bool],
        roster: Roster = market_roster,
        check_every_s: float = 5.0,
        compact_after_s: float | None = COMPACT_AFTER_S,
    ):
        """``ready``: whether the host has caught up (until then its catch-up saves)."""
        self._store, self._keeper = store, keeper
        self._shard, self._shards = shard, shards
        self._ready, self._roster = ready, roster
        self._check_every_s = check_every_s
        self._compact_after_s = compact_after_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="snapshot-refresh", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._check_every_s):
            try:
                if self._ready() and self._keeper.due(self._store.current_position()):
                    refreshed(self._store, self._keeper, self._shard, self._shards,
                              self._roster, self._compact_after_s)  # fmt: skip
            except Exception:  # a snapshot saves time; its failure must not end the thread
                log.exception("snapshot refresh failed; trying again later")
