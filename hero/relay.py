"""The relay process: ``python -m hero.relay`` (started by ``hero up``, once per replica).

Reads HERO_* settings and publishes the store's events to Kafka until SIGTERM. Several relays
may run against one store (``hero up --replicas N``): each waits on the store's relay lease
(:func:`hero.store.open_relay_lease`); the one holding it publishes, the others stand by and
take over when it dies. Each writes ``<data_dir>/run/relay.health`` (replica 1) or
``relay-N.health`` (pid, role, confirmed position) so the launcher and ``hero status`` can see
it is alive, which one publishes and how far it got.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from hero.config import HeroSettings, mask_url
from hero.log.producer import KafkaPublisher, store_owns
from hero.signals import stop_on_signals
from hero.store import (
    EventStore,
    LeaseLost,
    OutboxRelay,
    RelayLease,
    RelayProgress,
    StoreError,
    open_checkpoints,
    open_relay_lease,
    open_store,
)

__all__ = ["health_path", "health_paths", "main", "relay_name", "serve"]

log = logging.getLogger("hero.relay")

Role = Literal["active", "standby"]
_MAX_REPLICAS = 8  # HeroSettings.relay_replica's bound


def relay_name(replica: int) -> str:
    """``relay`` for the first replica, ``relay-2``, ``relay-3``... for the others."""
    return "relay" if replica == 1 else f"relay-{replica}"


def health_path(settings: HeroSettings, replica: int | None = None) -> Path:
    name = relay_name(settings.relay_replica if replica is None else replica)
    return settings.data_dir / "run" / f"{name}.health"


def health_paths(settings: HeroSettings) -> list[Path]:
    """Every replica's health file (replica 1's first); the one whose role is ``active`` is
    the relay that publishes."""
    return [health_path(settings, replica) for replica in range(1, _MAX_REPLICAS + 1)]


class _HealthFile:
    """Rewritten at most once a second (and at once when the role changes), atomically, so
    readers never see half a file."""

    def __init__(self, path: Path, *, idempotent: bool, replica: int):
        self._path = path
        self._idempotent = idempotent
        self._replica = replica
        self._written = 0.0
        self._position = -1
        self._role: Role | None = None
        self.skipped: Callable[[], int] = lambda: 0
        """Rows the active relay left out because the broker held them already."""
        path.parent.mkdir(parents=True, exist_ok=True)

    def standby(self, reason: str | None = None) -> None:
        self._write("standby", RelayProgress(-1, 0, 0), reason)

    def __call__(self, progress: RelayProgress) -> None:
        self._write("active", progress, None)

    def _write(self, role: Role, progress: RelayProgress, reason: str | None) -> None:
        now = time.monotonic()
        fresh = now - self._written < 1.0
        if role == self._role and progress.position == self._position and fresh:
            return
        body: dict[str, object] = {
            "pid": os.getpid(),
            "replica": self._replica,
            "role": role,
            "idempotent": self._idempotent,
            "updated_at": datetime.now(UTC).isoformat(),
        }
        if role == "active":
            body |= {
                "position": progress.position,
                "published": progress.published,
                "refills": progress.refills,
                "skipped": self.skipped(),
            }
        if reason is not None:
            body["reason"] = reason
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        tmp.replace(self._path)
        self._written, self._position, self._role = now, progress.position, role


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return


@dataclass
class _Kit:
    """What the active relay publishes with, made while standing by so a takeover is quick."""

    store: EventStore
    publisher: KafkaPublisher

    async def close(self) -> None:
        await self.publisher.close()
        self.store.close()


async def _make_kit(settings: HeroSettings, bootstrap: str) -> _Kit:
    store = await asyncio.to_thread(open_store, settings.effective_store_url)
    publisher = KafkaPublisher(
        bootstrap,
        partitions=settings.kafka_partitions,
        purge_on_reset=settings.relay_purge_on_refill,
        idempotent=settings.broker == "kafka",
        owns=store_owns(store),
    )
    try:
        await publisher.warm_up()
    except Exception as error:  # the broker away: the leader's first batch retries it
        log.warning("could not connect to the broker ahead of a takeover: %s", error)
        await publisher.close()
    return _Kit(store, publisher)


async def _take_lease(
    lease: RelayLease,
    settings: HeroSettings,
    health: _HealthFile,
    stop: asyncio.Event,
    kit: Callable[[], Awaitable[object]],
) -> bool:
    """Stand by until the lease is ours (True) or ``stop`` is set (False); ``kit`` makes
    ready what the leader needs, once, while waiting."""
    waiting = False
    while not stop.is_set():
        reason = None
        try:
            if await asyncio.to_thread(lease.try_acquire):
                return True
        except StoreError as error:  # the store is down: keep waiting, say why
            reason = f"cannot reach the store for the lease: {error}"
            log.warning("%s", reason)
        if not waiting:
            log.info("standing by: another relay holds the lease")
            waiting = True
        health.standby(reason)
        if reason is None:
            try:
                await kit()
            except StoreError as error:
                log.warning("cannot open the store ahead of a takeover: %s", error)
        await _wait(stop, settings.relay_lease_poll_s)
    return False


async def _lead(
    settings: HeroSettings, kit: _Kit, lease: RelayLease, health: _HealthFile, stop: asyncio.Event
) -> None:
    """Publish while the lease is ours; returns on ``stop``, raises LeaseLost when it goes."""
    publisher = kit.publisher
    health.skipped = lambda: publisher.skipped
    took = time.monotonic()

    def progress(done: RelayProgress) -> None:
        nonlocal took
        if took and done.published:
            # How long a takeover takes on this side: the partitions' tails, the first batch.
            log.info(
                "first batch confirmed %.3f s after taking the lease (left out %d rows the "
                "broker held)",
                time.monotonic() - took,
                publisher.skipped,
            )
            took = 0.0
        health(done)

    # Built once the lease is ours: the checkpoint it loads is the last leader's.
    relay = OutboxRelay(
        kit.store,
        open_checkpoints(settings.effective_store_url),
        publisher,
        batch_size=settings.relay_batch_size,
        poll_interval_s=settings.relay_poll_interval_s,
        epoch_check_interval_s=settings.relay_epoch_check_interval_s,
        on_progress=progress,
        holds_lease=lease.held,
    )
    log.info("took the lease: publishing from position %d", relay.position)
    try:
        await relay.run(stop)
    finally:
        if publisher.skipped:
            log.info("left out %d rows the broker already held", publisher.skipped)
        # The next batch, as leader again, reads the partitions' tails first.
        await publisher.close()


async def serve(settings: HeroSettings, stop: asyncio.Event) -> None:
    bootstrap = settings.kafka_bootstrap
    if not bootstrap:
        raise SystemExit("hero.relay needs HERO_KAFKA_BOOTSTRAP (hero up sets it)")
    replica = settings.relay_replica
    health = _HealthFile(
        health_path(settings), idempotent=settings.broker == "kafka", replica=replica
    )
    lease = open_relay_lease(settings.effective_store_url)
    ready: list[_Kit] = []

    async def kit() -> _Kit:
        if not ready:
            ready.append(await _make_kit(settings, bootstrap))
        return ready[0]

    try:
        while await _take_lease(lease, settings, health, stop, kit):
            try:
                await _lead(settings, await kit(), lease, health, stop)
            except LeaseLost as error:
                log.error("%s: standing by again", error)
                lease.release()
    finally:
        lease.close()
        for made in ready:
            await made.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = HeroSettings()

    async def run() -> None:
        stop = stop_on_signals()
        log.info(
            "relay %s starting: store=%s kafka=%s",
            relay_name(settings.relay_replica),
            mask_url(settings.effective_store_url),
            settings.kafka_bootstrap,
        )
        await serve(settings, stop)
        log.info("relay stopped")

    asyncio.run(run())


if __name__ == "__main__":
    main()
