"""What both Faust workers share: the app's settings, a Faust message as the record a dead
letter names, and the health file."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import faust
from aiokafka import ConsumerRecord

from hero.config import LOOPBACK, HeroSettings
from hero.log.consumer import send_dead_letter
from hero.log.producer import new_producer
from hero.log.retry import RetryState

log = logging.getLogger(__name__)

STOP_GRACE_S = 5.0
"""How long a worker's stop may take before it exits anyway: well inside the 10 s that
``hero down`` and the supervisor give before SIGKILL."""


def exit_after(grace_s: float) -> threading.Timer:
    """Exit the process ``grace_s`` from now, whatever still runs then.

    Faust's stop waits about 2 s for tasks and its loop on a quiet machine, and the consumer
    thread it starts can outlive the loop, so on a loaded one a stop ran past 10 s. Nothing
    is lost by cutting it short: an offset is committed only once its record's effect is
    stored, and what comes again is counted once (docs/architecture.md, Supervision)."""

    def now() -> None:
        log.warning("stop took longer than %.1f s: exiting now", grace_s)
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(grace_s, now)
    timer.daemon = True
    timer.start()
    return timer


def new_app(
    settings: HeroSettings, *, group: str, name: str, loop: asyncio.AbstractEventLoop
) -> faust.App:
    """A Faust app that is consumer group ``group``; nothing in it needs what the embedded
    broker lacks: no tables (no changelog to restore), no transactions, no idempotent
    producer, no leader topic, no web server (DESIGN.md)."""
    if not settings.kafka_bootstrap:
        raise SystemExit("streams needs HERO_KAFKA_BOOTSTRAP")
    session_s = settings.kafka_session_timeout_ms / 1000
    datadir = settings.data_dir / "faust" / name
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust makes only the last part
    return faust.App(
        group,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        loop=loop,
        autodiscover=False,
        datadir=str(datadir),
        store="memory://",
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session_s,
        broker_heartbeat_interval=max(session_s / 3, 0.1),
        # Acked offsets go to Kafka soon: a restart redelivers little (and that little once).
        broker_commit_every=10_000,
        broker_commit_interval=0.5,
        stream_buffer_maxsize=16_384,
        stream_recovery_delay=0.0,
        stream_wait_empty=False,
        # An offset is acked by the agent once its record's effect is stored, never because
        # its task was cancelled or failed.
        stream_ack_cancelled_tasks=False,
        stream_ack_exceptions=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        producer_acks=-1,
        web_enabled=False,
        web_host=LOOPBACK,
        web_bind=LOOPBACK,
    )


def raw_topic(app: faust.App, topic: str) -> Any:
    """``topic`` as bytes in, bytes out: the records are decoded by HERO's codec."""
    return app.topic(
        topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


def as_record(message: Any) -> ConsumerRecord[bytes, bytes]:
    """A Faust message as the aiokafka record a dead letter is made of."""
    return ConsumerRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp=int(message.timestamp * 1000) if message.timestamp else 0,
        timestamp_type=message.timestamp_type or 0,
        key=message.key,
        value=message.value,
        checksum=None,
        serialized_key_size=message.serialized_key_size or 0,
        serialized_value_size=message.serialized_value_size or 0,
        headers=list(message.headers or []),
    )


class DeadLetters:
    """Sends a record the worker cannot use to ``hero.dlq`` (waiting out a broker that is
    away: the record is acked only once its letter is on the topic)."""

    def __init__(self, bootstrap: str, consumer: str, topic: str, retry: RetryState):
        self._bootstrap, self._consumer, self._topic, self._retry = (
            bootstrap,
            consumer,
            topic,
            retry,
        )
        self._producer: Any = None
        self.count = 0

    async def send(self, message: Any, reason: str, detail: str) -> None:
        if self._producer is None:
            producer = new_producer(self._bootstrap)
            await producer.start()
            self._producer = producer
        record = as_record(message)
        await send_dead_letter(
            self._producer, self._topic, record, self._consumer, reason, detail, state=self._retry
        )
        self.count += 1

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


def partitions_of(app: faust.App, topic: str) -> list[int]:
    """The partitions of ``topic`` assigned to this worker now (none before it joined)."""
    try:
        assigned = app.consumer.assignment()
    except Exception:  # the consumer is not started yet
        return []
    return sorted(tp.partition for tp in assigned if tp.topic == topic)


async def every(interval_s: float, action: Callable[[], None]) -> None:
    """``action`` every ``interval_s`` until cancelled (with the app)."""
    while True:
        action()
        await asyncio.sleep(interval_s)
