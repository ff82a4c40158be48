"""The relay process: ``python -m hero.relay`` (started by ``hero up``).

Reads HERO_* settings, publishes the store's events to Kafka until SIGTERM, and writes
``<data_dir>/run/relay.health`` (pid, confirmed position) so the launcher and ``hero status``
can see it is alive and how far it got.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from hero.config import HeroSettings, mask_url
from hero.log.producer import KafkaPublisher
from hero.store import OutboxRelay, RelayProgress, open_checkpoints, open_store

__all__ = ["health_path", "main", "serve"]

log = logging.getLogger("hero.relay")


def health_path(settings: HeroSettings) -> Path:
    return settings.data_dir / "run" / "relay.health"


class _HealthFile:
    """Rewritten at most once a second, atomically, so readers never see half a file."""

    def __init__(self, path: Path, *, idempotent: bool):
        self._path = path
        self._idempotent = idempotent
        self._written = 0.0
        self._position = -1
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, progress: RelayProgress) -> None:
        now = time.monotonic()
        if progress.position == self._position and now - self._written < 1.0:
            return
        body = {
            "pid": os.getpid(),
            "position": progress.position,
            "published": progress.published,
            "refills": progress.refills,
            "idempotent": self._idempotent,
            "updated_at": datetime.now(UTC).isoformat(),
        }
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        tmp.replace(self._path)
        self._written, self._position = now, progress.position


async def serve(settings: HeroSettings, stop: asyncio.Event) -> None:
    if not settings.kafka_bootstrap:
        raise SystemExit("hero.relay needs HERO_KAFKA_BOOTSTRAP (hero up sets it)")
    store = open_store(settings.effective_store_url)
    idempotent = settings.broker == "kafka"
    publisher = KafkaPublisher(
        settings.kafka_bootstrap,
        partitions=settings.kafka_partitions,
        purge_on_reset=settings.relay_purge_on_refill,
        idempotent=idempotent,
    )
    health = _HealthFile(health_path(settings), idempotent=idempotent)
    relay = OutboxRelay(
        store,
        open_checkpoints(settings.effective_store_url),
        publisher,
        batch_size=settings.relay_batch_size,
        poll_interval_s=settings.relay_poll_interval_s,
        epoch_check_interval_s=settings.relay_epoch_check_interval_s,
        on_progress=health,
    )
    try:
        await relay.run(stop)
    finally:
        await publisher.close()
        store.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = HeroSettings()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info(
            "relay starting: store=%s kafka=%s",
            mask_url(settings.effective_store_url),
            settings.kafka_bootstrap,
        )
        await serve(settings, stop)
        log.info("relay stopped")

    asyncio.run(run())


if __name__ == "__main__":
    main()
