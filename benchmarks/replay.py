"""Replay speed: raw read, a rebuild of every read model, and an agent host's catch-up.

    ./run bench-replay [--events 1000000] [--seed 1] [--store-url URL] [--cache-dir DIR]
                       [--baseline-events 50000] [--host-only | --rebuild-only]

Generates a realistic seeded log of ``--events`` events (``benchmarks/_replay_log.py``: fleet,
negotiations, holds, contracts, scaling, migrations, payments and conversions, bills,
transfers and hourly usage facts), appended through the real event store: a SQLite file
cached under ``--cache-dir`` by (events, seed, generator version), so a re-run skips the
generation, or the PostgreSQL database of ``--store-url`` (generated when empty, reused
when it holds exactly ``--events``). Then it measures, one after the other:

* raw read: the store read in large batches, without and with the decode of every row
  (envelope and typed event, once per row), validated (``decode_event``) and trusted
  (``decode_trusted``, what the rebuild and the host's catch-up use);
* rebuild: ``Projector.rebuild()`` of every projection into a Valkey started by the project's
  launcher (what ``hero replay`` runs), and, as the baseline of the same run, the incremental
  projector's per-batch path (``catch_up`` with Valkey round trips per batch) over the first
  ``--baseline-events`` events;
* host catch-up: an agent host (the real ``AgentHostCore``, its market view and brains)
  folding the store's history until it is ready to decide, saving a snapshot on the way
  when its cadence says so (a cadence before the head) as a host with snapshots does; the
  refresher (``agents.runtime.refresh``) then brings it to the head as beside a live host;
* host restart with a snapshot: a fresh host loading each of those snapshots and replaying
  only the tail after it, until it is ready to decide; the catch-up and restarts are measured
  twice, with the host's compaction (``HERO_COMPACT_AFTER_S``, its default horizon) and
  without it (the model keeping all history). ``--host-only`` measures only these,
  ``--rebuild-only`` only the raw reads and the rebuild.

Goals (issue 16): rebuild >= 100,000 events/s; host restart-to-deciding <= 5 s at 1M events
and not growing with the length of history.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _replay_log import LOG_VERSION, generate
from redis.asyncio import Redis

from agents.market import MarketView
from agents.runtime.feed import Admit, Delivery, FeedCounts, StoreHistory
from agents.runtime.host import AgentHostCore, HostOptions, host_snapshots
from agents.runtime.refresh import refreshed
from agents.runtime.snapshot import decode_host
from hero.config import HeroSettings
from hero.model.gcpause import collections_paused
from hero.readmodels.projector import Projector
from hero.store import (
    READ_BATCH,
    EventStore,
    RecordedEvent,
    Snapshot,
    SnapshotCadence,
    SnapshotKeeper,
    SnapshotStore,
    SqliteEventStore,
    decode_event,
    decode_trusted,
    open_store,
)
from schemas import Command

GOAL_REBUILD = 100_000
GOAL_RESTART_S = 5.0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=_positive, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--store-url", help="a postgresql:// store to use instead of SQLite")
    parser.add_argument("--cache-dir", type=Path, default=HeroSettings().cache_dir / "bench-replay")
    parser.add_argument("--baseline-events", type=_positive, default=50_000)
    parser.add_argument(
        "--host-only", action="store_true", help="only the host's catch-up and restarts"
    )
    parser.add_argument(
        "--rebuild-only", action="store_true", help="only the raw reads and the rebuild"
    )
    args = parser.parse_args(argv)
    if args.host_only and args.rebuild_only:
        parser.error("--host-only and --rebuild-only measure different things: give one")
    return args


# -- the store ------------------------------------------------------------------------------


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[EventStore]:
    if args.store_url:
        store = open_store(args.store_url)
        try:
            _fill(store, args.events, args.seed)
            yield store
        finally:
            store.close()
        return
    store = SqliteEventStore(_cached(args.cache_dir, args.events, args.seed))
    try:
        yield store
    finally:
        store.close()


def _cached(cache_dir: Path, events: int, seed: int) -> Path:
    """The SQLite store of (events, seed), generated the first time. The same seed makes the
    same first events whatever the count, so a shorter log is a prefix of a longer one."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"events-{events}-seed-{seed}-v{LOG_VERSION}.db"
    if path.exists():
        print(f"store: {path} (cached)")
        return path
    partial = path.with_suffix(f".{os.getpid()}.partial")
    store = SqliteEventStore(partial, synchronous="OFF")
    try:
        _fill(store, events, seed)
    finally:
        store.close()
    partial.rename(path)  # only a complete log is ever found in the cache
    partial.with_name(partial.name + ".lock").unlink(missing_ok=True)  # the store's flock file
    return path


def _fill(store: EventStore, events: int, seed: int) -> None:
    held = store.current_position()
    if held == events:
        print(f"store: already holds {events:,} events")
        return
    if held:
        raise SystemExit(f"the store holds {held:,} events, not {events:,}: give an empty one")
    started = time.perf_counter()
    generate(store, events, seed)
    seconds = time.perf_counter() - started
    print(f"generated {events:,} events in {seconds:.1f} s ({events / seconds:,.0f} events/s)")


# -- raw read -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Timed:
    """Wall-clock and CPU seconds of this process and the children it waited for (the
    rebuild's ledger process): on a shared machine the CPU time is the steadier figure of
    the two (the other processes' load leaves it alone)."""

    wall: float
    cpu: float

    def rate(self, events: int) -> str:
        return f"{events / self.wall:,.0f} events/s ({events / self.cpu:,.0f} per CPU second)"


@contextmanager
def _timed(into: list[_Timed]) -> Iterator[None]:
    wall, cpu = time.perf_counter(), _cpu()
    yield
    into.append(_Timed(time.perf_counter() - wall, _cpu() - cpu))


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _read(store: EventStore, decode: Callable[[RecordedEvent], object] | None) -> _Timed:
    timed: list[_Timed] = []
    with _timed(timed), collections_paused():
        for rows in store.read_batches(1, READ_BATCH):
            if decode is not None:
                for row in rows:
                    decode(row)
    return timed[0]


# -- rebuild --------------------------------------------------------------------------------


@contextmanager
def _valkey() -> Iterator[str]:
    from infra.processes import ValkeyProcess

    with tempfile.TemporaryDirectory(prefix="hero-bench-replay-") as home:
        valkey = ValkeyProcess(Path(home))
        valkey.start()
        try:
            assert valkey.url is not None
            yield valkey.url
        finally:
            valkey.stop()


_NEVER = 1 << 62


async def _rebuilds(store: EventStore, baseline: EventStore, redis_url: str) -> list[_Timed]:
    """The rebuild of every projection (the ledger folded in a second process from
    ``PARTITION_FROM`` positions on), the same in one process, then the incremental
    projector's path (the baseline) on the ``baseline`` store."""
    redis = Redis.from_url(redis_url)
    timed: list[_Timed] = []
    try:
        with _timed(timed):
            report = await Projector(store, redis, prefix="bench").rebuild()
        docs = sum(report.documents.values())
        print(f"rebuild: {docs:,} documents in {len(report.documents)} projections")
        with _timed(timed):  # the same, in one process: the split's baseline in this run
            await Projector(store, redis, prefix="bench1", partition_from=_NEVER).rebuild()
        with _timed(timed):
            await Projector(baseline, redis, prefix="baseline", generation="b").catch_up()
        return timed
    finally:
        await redis.aclose()


# -- host catch-up --------------------------------------------------------------------------


class _ReadyFeed:
    """The live feed a host starts once it has caught up: here it only notes the moment."""

    def __init__(self, stop: asyncio.Event):
        self.counts = FeedCounts()
        self._stop = stop
        self.ready_at = 0.0

    async def start(self) -> None:
        self.ready_at = time.perf_counter()
        self._stop.set()

    async def poll(self, timeout_ms: int, admit: Admit) -> list[Delivery]:
        return []

    async def stop(self) -> None:
        return None


async def _no_sends(agent_id: str, command: Command) -> object:
    return None


# -- restart with a snapshot ----------------------------------------------------------------

#: How far behind the head the older snapshot is: the host's cadence saves every 10,000
#: events, so a restart replays at most about this much.
TAIL = 10_000


class _Shelf(SnapshotStore):
    """Every snapshot a host saved, in memory; ``latest`` answers the newest at or before
    ``at_most``, so the restarts below can start from the one at the head or from the one a
    cadence behind it."""

    def __init__(self) -> None:
        self.saved: list[Snapshot] = []
        self.at_most = 2**62

    def save(self, snapshot: Snapshot) -> None:
        self.saved.append(snapshot)

    def latest(self, name: str, schema_version: int) -> Snapshot | None:
        found = [
            s
            for s in self.saved
            if s.name == name and s.schema_version == schema_version and s.position <= self.at_most
        ]
        return max(found, key=lambda s: s.position, default=None)


@dataclass(frozen=True)
class _Restart:
    timed: _Timed
    snapshot_position: int | None
    events_replayed: int


async def _host_start(
    store: EventStore, snapshots: SnapshotKeeper | None, compact_after_s: float | None
) -> _Restart:
    """A fresh host, from its snapshot if ``snapshots`` holds one, until it is ready to
    decide (the moment it starts its live feed)."""
    stop = asyncio.Event()
    core = AgentHostCore(
        shard=0,
        shards=1,
        market=MarketView(),
        history=StoreHistory(store),
        feed=_ReadyFeed(stop),
        sink=_no_sends,
        options=HostOptions(resume_decide=False, compact_after_s=compact_after_s),
        snapshots=snapshots,
    )
    timed: list[_Timed] = []
    with _timed(timed):
        await core.run(stop)  # returns once the host starts its live feed: ready to decide
    stats = core.stats()
    return _Restart(timed[0], stats.snapshot_position, stats.events_history)


def _keeper(shelf: _Shelf, every_events: int) -> SnapshotKeeper:
    return host_snapshots(shelf, 0, 1, SnapshotCadence(every_events=every_events, every_s=1e9))


def _decode_seconds(body: bytes) -> _Timed:
    timed: list[_Timed] = []
    with _timed(timed):
        decode_host(body)
    return timed[0]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _restarts(
    store: EventStore, count: int, compact_after_s: float | None
) -> list[tuple[str, str]]:
    """A host's start without a snapshot (saving one a cadence before the head on its way,
    as a host with snapshots does; its refresher then saves one at the head), then fresh
    hosts starting from each."""
    shelf = _Shelf()
    how = "compacted" if compact_after_s is not None else "not compacted"
    # the cadence is checked at the end of each batch read (READ_BATCH rows, the last of them
    # not always of the host's topics): one batch earlier, so the older snapshot is a batch
    # or so behind the head
    every = count - 2 * TAIL if count > 3 * TAIL else max(1, count // 2)
    full = asyncio.run(_host_start(store, _keeper(shelf, every), compact_after_s))
    refreshed(store, _keeper(shelf, 1), 0, 1, compact_after_s=compact_after_s)
    figures = [
        (f"host catch-up, no snapshot ({how})", full.timed.rate(count) +
         f", {full.events_replayed:,} events of its topics (1 snapshot saved on the way)"),
        (f"host restart-to-deciding, no snapshot ({how})", f"{full.timed.wall:.2f} s"),
    ]  # fmt: skip
    for snapshot in sorted(shelf.saved, key=lambda s: s.position, reverse=True):
        shelf.at_most = snapshot.position
        start = asyncio.run(_host_start(store, _keeper(shelf, 10**9), compact_after_s))
        decode = _decode_seconds(snapshot.body)
        figures.append((
            f"host restart-to-deciding, snapshot at {snapshot.position:,} ({how})",
            f"{start.timed.wall:.2f} s ({start.events_replayed:,} events of the tail replayed;"
            f" snapshot {len(snapshot.body) / 1e6:,.1f} MB, its decode alone {decode.wall:.2f} s)",
        ))  # fmt: skip
        if start.snapshot_position != snapshot.position:
            raise SystemExit(f"the host did not start from its snapshot at {snapshot.position}")
    return figures


def _host_figures(store: EventStore) -> list[tuple[str, str]]:
    count = store.current_position()
    return [
        ("events in the log", f"{count:,}"),
        *_restarts(store, count, HeroSettings().compact_after_s),
        *_restarts(store, count, None),
        ("peak memory of this process", f"{_peak_mb():,.0f} MB"),
    ]


def _print(figures: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in figures)
    for label, value in figures:
        print(f"{label:{width}} | {value}")


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    if args.host_only:
        with _store(args) as store:
            _print(_host_figures(store))
        sys.stdout.flush()
        return
    with _store(args) as store:
        count = store.current_position()
        plain = _read(store, None)
        decoded = _read(store, decode_event)
        trusted = _read(store, decode_trusted)
        base_count = min(args.baseline_events, count)
        baseline = SqliteEventStore(_cached(args.cache_dir, base_count, args.seed))
        try:
            with _valkey() as redis_url:
                rebuild, single, old = asyncio.run(_rebuilds(store, baseline, redis_url))
        finally:
            baseline.close()
        restarts = (
            [] if args.rebuild_only else _restarts(store, count, HeroSettings().compact_after_s)
        )
        restarts += [] if args.rebuild_only else _restarts(store, count, None)
    figures = [
        ("events in the log", f"{count:,}"),
        ("raw read, no decode", plain.rate(count)),
        ("raw read + validated decode", decoded.rate(count)),
        ("raw read + trusted decode", trusted.rate(count)),
        ("rebuild, every projection", rebuild.rate(count)),
        ("rebuild, in one process", single.rate(count)),
        (f"baseline: incremental projector, first {base_count:,}", old.rate(base_count)),
        *restarts,
        ("peak memory of this process", f"{_peak_mb():,.0f} MB"),
    ]
    _print(figures)
    verdict = "met" if count / rebuild.wall >= GOAL_REBUILD else "NOT met"
    print(f"goal: rebuild >= {GOAL_REBUILD:,} events/s (wall clock): {verdict}")
    print(f"goal: host restart-to-deciding <= {GOAL_RESTART_S:.0f} s at 1M events and not"
          " growing with history: see the restarts from a snapshot above")  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
