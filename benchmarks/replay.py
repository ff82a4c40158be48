"""Replay speed: raw read, a rebuild of every read model, and an agent host's catch-up.

    ./run bench-replay [--events 1000000] [--seed 1] [--store-url URL] [--cache-dir DIR]
                       [--baseline-events 50000]

Generates a realistic seeded log of ``--events`` events (``benchmarks/_replay_log.py``: fleet,
negotiations, holds, contracts, scaling, migrations, payments and conversions, bills,
transfers and hourly usage facts), appended through the real event store: a SQLite file
cached under ``--cache-dir`` by (events, seed, generator version), so a re-run skips the
generation, or the PostgreSQL database of ``--store-url`` (generated when empty, reused
when it holds exactly ``--events``). Then it measures, one after the other:

* raw read: the store read in large batches, without and with the decode of every row
  (envelope and typed event, once per row);
* rebuild: ``Projector.rebuild()`` of every projection into a Valkey started by the project's
  launcher (what ``hero replay`` runs), and, as the baseline of the same run, the incremental
  projector's per-batch path (``catch_up`` with Valkey round trips per batch) over the first
  ``--baseline-events`` events;
* host catch-up: an agent host (the real ``AgentHostCore``, its market view and brains)
  folding the store's history until it is ready to decide.

Goal (issue 16): rebuild >= 100,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _replay_log import LOG_VERSION, generate
from redis.asyncio import Redis

from agents.market import MarketView
from agents.runtime.feed import Admit, Delivery, FeedCounts, StoreHistory
from agents.runtime.host import AgentHostCore, HostOptions
from hero.config import HeroSettings
from hero.gcpause import collections_paused
from hero.readmodels.projector import Projector
from hero.store import READ_BATCH, EventStore, SqliteEventStore, decode_event, open_store
from schemas import Command

GOAL_REBUILD = 100_000


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
    return parser.parse_args(argv)


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
    """Wall-clock and this process's CPU seconds: on a shared machine the CPU time is the
    steadier figure of the two (the other processes' load leaves it alone)."""

    wall: float
    cpu: float

    def rate(self, events: int) -> str:
        return f"{events / self.wall:,.0f} events/s ({events / self.cpu:,.0f} per CPU second)"


@contextmanager
def _timed(into: list[_Timed]) -> Iterator[None]:
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into.append(_Timed(time.perf_counter() - wall, time.process_time() - cpu))


def _read(store: EventStore, decode: bool) -> _Timed:
    timed: list[_Timed] = []
    with _timed(timed), collections_paused():
        for rows in store.read_batches(1, READ_BATCH):
            if decode:
                for row in rows:
                    decode_event(row)
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


async def _rebuilds(store: EventStore, baseline: EventStore, redis_url: str) -> list[_Timed]:
    """The rebuild of every projection, then the incremental projector's path (the
    baseline) on the ``baseline`` store."""
    redis = Redis.from_url(redis_url)
    timed: list[_Timed] = []
    try:
        with _timed(timed):
            report = await Projector(store, redis, prefix="bench").rebuild()
        docs = sum(report.documents.values())
        print(f"rebuild: {docs:,} documents in {len(report.documents)} projections")
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


async def _host_catch_up(store: EventStore) -> tuple[_Timed, int]:
    stop = asyncio.Event()
    feed = _ReadyFeed(stop)
    core = AgentHostCore(
        shard=0,
        shards=1,
        market=MarketView(),
        history=StoreHistory(store),
        feed=feed,
        sink=_no_sends,
        options=HostOptions(resume_decide=False),
    )
    timed: list[_Timed] = []
    with _timed(timed):
        await core.run(stop)  # returns once the host starts its live feed: ready to decide
    return timed[0], core.stats().events_history


# -- restart with a snapshot ----------------------------------------------------------------
# TODO(lead, after the merge of the snapshot work): restart-to-deciding *with* a snapshot.
# Save the host's market state with hero.model.snapshot.encode_state and
# hero.store.snapshots.SnapshotStore.save(name, schema_version) at the log's end, then time a
# fresh host that loads SnapshotStore.latest(...) (decode_state) and replays only the tail,
# until it is ready to decide (the _ReadyFeed above notes that moment). Print it beside
# "host restart-to-deciding, no snapshot" below, at 100k and 1M events (goal: <= 5 s at 1M
# and not growing with the length of history).


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    with _store(args) as store:
        count = store.current_position()
        plain = _read(store, decode=False)
        decoded = _read(store, decode=True)
        base_count = min(args.baseline_events, count)
        baseline = SqliteEventStore(_cached(args.cache_dir, base_count, args.seed))
        try:
            with _valkey() as redis_url:
                rebuild, old = asyncio.run(_rebuilds(store, baseline, redis_url))
        finally:
            baseline.close()
        host, host_events = asyncio.run(_host_catch_up(store))
    figures = [
        ("events in the log", f"{count:,}"),
        ("raw read, no decode", plain.rate(count)),
        ("raw read + decode", decoded.rate(count)),
        ("rebuild, every projection", rebuild.rate(count)),
        (f"baseline: incremental projector, first {base_count:,}", old.rate(base_count)),
        ("host catch-up", host.rate(count) + f", {host_events:,} events of its topics"),
        ("host restart-to-deciding, no snapshot", f"{host.wall:.2f} s"),
        ("host restart-to-deciding, with a snapshot", "(after the merge of the snapshot work)"),
        ("peak memory of this process", f"{_peak_mb():,.0f} MB"),
    ]
    width = max(len(label) for label, _ in figures)
    for label, value in figures:
        print(f"{label:{width}} | {value}")
    verdict = "met" if count / rebuild.wall >= GOAL_REBUILD else "NOT met"
    print(f"goal: rebuild >= {GOAL_REBUILD:,} events/s (wall clock): {verdict}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
