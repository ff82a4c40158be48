"""Hourly usage facts from utilization samples: Kafka in, Valkey windows, the store out.

``python -m streams.usage`` consumes ``hero.utilization`` as group ``hero-usage``. Each sample
is added to its contract-hour window in Valkey (counted once, by sample id); an hour closes
when every partition's samples have moved past it by ``HERO_USAGE_LATENESS_S`` (samplers
report as time passes, so a partition's samples arrive in time order, give or take that), or at the
latest ``HERO_USAGE_IDLE_CLOSE_S`` after it by the wall clock; it then enters the store as
one ``UsageRecorded`` per contract and hour (the command id is the contract and the hour, so
a close repeated after a crash writes nothing). A kill -9 at any point loses nothing: the
windows live in Valkey, and Kafka redelivers what was not committed.

Why a plain consumer group and not a Faust table: a table is restored from its changelog
topic, and the embedded broker's wrong end offsets break that restore (DESIGN.md); the
windows' home is Valkey, which the stack already runs with its append-only file on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hero.config import HeroSettings
from hero.domain.clock import Clock, SystemClock
from hero.domain.usage import usage_fact, usage_stream
from hero.log.codec import Decoded
from hero.log.consumer import EventConsumer
from hero.log.positions import NothingApplied
from hero.readmodels.usage import ADDED, DUPLICATE, UsageWindows
from hero.store import ANY_VERSION, EventStore, NewEvent, open_store, recorded_after
from schemas import ContractCreated, Topic, UtilizationSampled

__all__ = ["UsageAggregator", "UsageCounts", "main"]

log = logging.getLogger("streams.usage")
HOUR = timedelta(hours=1)


@dataclass
class UsageCounts:
    added: int = 0
    duplicates: int = 0
    late: int = 0
    facts: int = 0


class UsageAggregator:
    def __init__(
        self,
        store: EventStore,
        windows: UsageWindows,
        clock: Clock | None = None,
        *,
        lateness: timedelta = timedelta(minutes=5),
        idle_close: timedelta = timedelta(hours=1),
        actor: str = "usage",
    ):
        self._store, self._windows = store, windows
        self._clock = clock or SystemClock()
        self._lateness, self._idle_close, self._actor = lateness, idle_close, actor
        self._contracts: dict[str, ContractCreated] = {}
        self._position = 0
        self.counts = UsageCounts()

    async def add(self, sample: UtilizationSampled, partition: int) -> None:
        outcome = await self._windows.add(sample, partition)
        if outcome == ADDED:
            self.counts.added += 1
        elif outcome == DUPLICATE:
            self.counts.duplicates += 1
        else:
            self.counts.late += 1
            log.warning(
                "late sample %s for %s: its hour is closed", sample.sample_id, sample.contract_id
            )

    async def close_due(self) -> int:
        """Record every window that may close now; returns how many facts were written."""
        now = self._clock.now()
        watermark = await self._windows.watermark()
        by_events = watermark - self._lateness if watermark is not None else None
        by_clock = now - self._idle_close
        limit = max(by_clock, by_events) if by_events is not None else by_clock
        written = 0
        for contract_id, hour in await self._windows.open_before(
            limit - HOUR + timedelta(seconds=1)
        ):
            contract = self._contract(contract_id)
            if contract is None:
                continue  # its contract is not in the store yet: keep the window open
            window = await self._windows.read(contract_id, hour)
            fact = usage_fact(contract, hour, window.seconds, window.network_bytes, window.samples)
            command_id = f"usage-{contract_id}-{hour:%Y%m%dT%H}"
            event = NewEvent.of(fact, actor=self._actor, occurred_at=now, causation_id=command_id)
            result = self._store.append(usage_stream(contract_id), ANY_VERSION, [event], command_id)
            await self._windows.close(contract_id, hour)
            if not result.duplicate:
                written += 1
        self.counts.facts += written
        return written

    def _contract(self, contract_id: str) -> ContractCreated | None:
        if contract_id not in self._contracts:
            for row in recorded_after(self._store, self._position):
                self._position = row.position
                if row.type == "ContractCreated":
                    event = row.envelope().decode()
                    assert isinstance(event, ContractCreated)
                    self._contracts[event.contract_id] = event
        return self._contracts.get(contract_id)


def _health(path: Path, counts: UsageCounts) -> None:
    body = {"pid": os.getpid(), "updated_at": datetime.now(UTC).isoformat(), **asdict(counts)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    tmp.replace(path)


async def serve(
    settings: HeroSettings,
    stop: asyncio.Event,
    *,
    group: str = "hero-usage",
    namespace: str = "usage",
) -> None:
    from redis.asyncio import Redis

    if not settings.kafka_bootstrap or not settings.redis_url:
        raise SystemExit("streams.usage needs HERO_KAFKA_BOOTSTRAP and HERO_REDIS_URL")
    redis = Redis.from_url(settings.redis_url)
    aggregator = UsageAggregator(
        open_store(settings.effective_store_url),
        UsageWindows(redis, namespace),
        lateness=timedelta(seconds=settings.usage_lateness_s),
        idle_close=timedelta(seconds=settings.usage_idle_close_s),
    )

    async def handle(decoded: Decoded) -> None:
        if isinstance(decoded.message, UtilizationSampled):
            assert consumer.current is not None
            await aggregator.add(decoded.message, consumer.current.partition)

    consumer = EventConsumer(
        name=group,
        topics=[Topic.UTILIZATION.value],
        bootstrap=settings.kafka_bootstrap,
        handler=handle,
        positions=NothingApplied(),  # the windows' sample sets dedupe; a backfill must pass
        session_timeout_ms=settings.kafka_session_timeout_ms,
    )
    health = settings.data_dir / "run" / "usage.health"
    await consumer.start()
    try:
        while not stop.is_set():
            await consumer.poll(timeout_ms=200)
            await aggregator.close_due()
            _health(health, aggregator.counts)
    finally:
        await consumer.stop()
        await redis.aclose()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--group", default="hero-usage", help="the Kafka consumer group")
    parser.add_argument("--namespace", default="usage", help="the windows' Valkey key prefix")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = HeroSettings()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop, group=args.group, namespace=args.namespace)

    asyncio.run(run())


if __name__ == "__main__":
    main()
