"""The usage worker on its plain consumer loop (``HERO_USAGE_RUNNER=plain``, the default):
``streams.usage``'s ``UsageWorker`` over an aiokafka group, with the spool's redrive and the
health file the Faust agent keeps too.

Why not the Faust agent (``HERO_USAGE_RUNNER=faust``): Faust moves every record through its
pipeline alone, some 550 Python calls each, so a Faust agent that does no work at all reads a
topic at 0.06-0.08 of a plain consumer's rate (``benchmarks/faust_ceiling.py``, the
reproduction); the usage goal is 0.5 of it. The command processor stays a Faust agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict
from datetime import timedelta

from redis.asyncio import Redis

from hero.config import HeroSettings
from hero.log.retry import retry_infrastructure
from hero.log.telemetry import TelemetryPublisher
from hero.log.topics import TopicAdmin
from hero.readmodels.usage import UsageWindows
from hero.signals import stop_on_signals
from hero.store import open_store
from hero.store.spool import SampleSpool, spool_path
from streams._health import write_health
from streams.redrive import SpoolRedriver
from streams.usage import SampleConsumer, UsageAggregator, UsageWorker

__all__ = ["run_plain", "serve"]

log = logging.getLogger("streams.usage")
REPORT_EVERY_S = 0.25


async def serve(
    settings: HeroSettings,
    stop: asyncio.Event,
    *,
    group: str = "hero-usage",
    namespace: str = "usage",
    name: str = "usage",
) -> None:
    """Consume until ``stop`` is set; the batch in flight lands and commits before it ends."""
    if not settings.kafka_bootstrap or not settings.redis_url:
        raise SystemExit("streams usage needs HERO_KAFKA_BOOTSTRAP and HERO_REDIS_URL")
    redis = Redis.from_url(settings.redis_url)
    windows = UsageWindows(redis, namespace)
    aggregator = UsageAggregator(
        open_store(settings.effective_store_url),
        windows,
        lateness=timedelta(seconds=settings.usage_lateness_s),
        idle_close=timedelta(seconds=settings.usage_idle_close_s),
    )
    consumer = SampleConsumer(
        name=group,
        bootstrap=settings.kafka_bootstrap,
        handler=aggregator.add_rows,  # the windows' sample sets dedupe; a backfill must pass
        session_timeout_ms=settings.kafka_session_timeout_ms,
    )
    worker = UsageWorker(consumer, aggregator)
    health = settings.data_dir / "run" / f"{name}.health"
    spool = SampleSpool(spool_path(settings.data_dir))
    admin = TopicAdmin(settings.kafka_bootstrap)
    resender = TelemetryPublisher(settings.kafka_bootstrap, actor="usage", retry_for_s=10)
    redriver = SpoolRedriver(spool, windows, admin, resender)
    redriving = asyncio.create_task(redriver.run(stop))

    def report() -> None:
        body = {
            **asdict(aggregator.counts),
            "dead_lettered": consumer.stats.dead_lettered,
            "spool_counted": redriver.counts.counted,
            "spool_resent": redriver.counts.resent,
            # What Kafka gave this member of the group: replicas share the partitions out.
            "partitions": consumer.partitions(),
            "engine": "plain",
        }
        write_health(health, consumer.retry, body)

    async def reporting() -> None:
        # Also while a step waits on Valkey or the broker: the health says why it waits.
        while not stop.is_set():
            report()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REPORT_EVERY_S)

    reporter = asyncio.create_task(reporting())
    try:
        # A broker that came back empty has no topics yet: the group would wait for them.
        await retry_infrastructure(admin.ensure_topics, f"{group}: topics")
        await retry_infrastructure(consumer.start, f"{group}: joining")
        try:
            while not stop.is_set():
                await worker.step(timeout_ms=200)
        finally:
            await worker.flush()  # the batch in flight lands (and commits) before the stop
    finally:
        stop.set()
        await redriving
        await reporter
        report()
        await consumer.stop()
        await resender.close()
        await admin.close()
        spool.close()
        await redis.aclose()


def run_plain(
    settings: HeroSettings, *, group: str | None, namespace: str, name: str | None
) -> None:
    """Run the plain usage worker until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def run() -> None:
        await serve(
            settings,
            stop_on_signals(),
            group=group or "hero-usage",
            namespace=namespace,
            name=name or "usage",
        )

    asyncio.run(run())
