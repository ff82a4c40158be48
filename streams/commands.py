"""The command processor: commands a client puts on ``hero.commands`` reach the market.

``python -m streams commands`` runs it as a Faust agent in its own worker (group
``hero-commands``). Each record is decoded with the schema registry
(``hero.log.commands.decode_command``); one that is not a command goes to ``hero.dlq`` with
the reason. A command is applied through the real ``MarketService`` against the real store,
once by its command id: the store keeps the id with what the command appended, so a command
redelivered (after a kill -9, or sent twice) writes nothing again. The answer is on the log:
the events the command caused (their causation id is the command id), or a
``CommandRejected`` naming the reason, appended to the stream ``command-rejections`` under
the command's id (so a rejection is recorded once, and a redelivered rejected command is not
tried again). A record is acked only once its answer is in the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust

from hero.config import HeroSettings
from hero.domain.clock import Clock, SystemClock
from hero.log.codec import DecodeError
from hero.log.commands import decode_command
from hero.log.retry import RetryState, retry_infrastructure
from hero.log.topics import TopicAdmin
from hero.market.service import CommandRejected as Refused
from hero.market.service import MarketService
from hero.store import ANY_VERSION, EventStore, NewEvent, open_store
from schemas import Command, CommandRejected, Topic
from streams._faust import DeadLetters, partitions_of, raw_topic
from streams._health import write_health

__all__ = ["REJECTIONS_STREAM", "CommandCounts", "CommandProcessor"]

log = logging.getLogger("streams.commands")

REJECTIONS_STREAM = "command-rejections"


@dataclass
class CommandCounts:
    applied: int = 0
    """Commands that appended their events now."""
    duplicates: int = 0
    """Commands applied (or rejected) before: nothing written again."""
    rejected: int = 0
    dead_lettered: int = 0


class CommandProcessor:
    """Applies one command at a time; the store is called in a thread (it is synchronous)."""

    def __init__(
        self,
        store: EventStore,
        dead_letters: DeadLetters,
        retry: RetryState,
        clock: Clock | None = None,
    ):
        self._store = store
        self._clock = clock or SystemClock()
        self._market = MarketService(store, self._clock)
        self._dead_letters = dead_letters
        self.retry = retry
        self.counts = CommandCounts()

    async def record(self, message: Any) -> None:
        """One record of ``hero.commands``: dead-lettered, or applied (or found applied)."""
        try:
            envelope, command = decode_command(message.value)
        except DecodeError as error:
            await self._dead_letters.send(message, error.failure.value, error.detail)
            self.counts.dead_lettered += 1
            return
        try:
            outcome = await retry_infrastructure(
                lambda: asyncio.to_thread(self._apply, command, envelope.actor),
                f"commands: applying {command.command_id}",
                state=self.retry,
            )
        except Exception as error:  # a fault of this record, not of a dependency
            log.exception("command %s failed", command.command_id)
            await self._dead_letters.send(
                message, "handler_failed", f"{type(error).__name__}: {error}"
            )
            self.counts.dead_lettered += 1
            return
        setattr(self.counts, outcome, getattr(self.counts, outcome) + 1)

    def _apply(self, command: Command, actor: str) -> str:
        """``applied``, ``duplicates`` or ``rejected``: which count the command adds to."""
        if self._store.command_result(REJECTIONS_STREAM, command.command_id) is not None:
            return "duplicates"
        try:
            result = self._market.handle(command, actor=actor)
        except Refused as error:
            self._reject(command, actor, error)
            return "rejected"
        return "duplicates" if result.duplicate else "applied"

    def _reject(self, command: Command, actor: str, error: Refused) -> None:
        detail = str(error).split(": ", 1)[-1]
        log.info("command %s (%s) rejected: %s", command.command_id, command.TYPE, error)
        answer = CommandRejected(
            command_id=command.command_id,
            command_type=command.TYPE,
            reason=error.reason,
            detail=" ".join(detail.split())[:2000],
        )
        event = NewEvent.of(
            answer,
            actor=actor,
            occurred_at=self._clock.now(),
            causation_id=command.command_id,
        )
        self._store.append(REJECTIONS_STREAM, ANY_VERSION, [event], command.command_id)


class CommandsAgent:
    """The command processor's worker: its Faust agent, health and resources."""

    def __init__(self, settings: HeroSettings, *, group: str, name: str, max_records: int = 200):
        if not settings.kafka_bootstrap:
            raise SystemExit("streams commands needs HERO_KAFKA_BOOTSTRAP")
        self.group, self.max_records = group, max_records
        self.retry = RetryState()
        self.dead_letters = DeadLetters(
            settings.kafka_bootstrap, group, Topic.DLQ.value, self.retry
        )
        self._store = open_store(settings.effective_store_url)
        self.processor = CommandProcessor(self._store, self.dead_letters, self.retry)
        self._admin = TopicAdmin(settings.kafka_bootstrap)
        self.health_path = settings.data_dir / "run" / f"{name}.health"

    async def batch(self, messages: Sequence[Any]) -> None:
        for message in messages:  # in order: one aggregate's commands share a partition
            await self.processor.record(message)

    def report(self, app: faust.App) -> None:
        counts = self.processor.counts
        body = {
            "applied": counts.applied,
            "duplicates": counts.duplicates,
            "rejected": counts.rejected,
            "dead_lettered": counts.dead_lettered,
            "partitions": partitions_of(app, Topic.COMMANDS.value),
            "engine": "faust",
        }
        write_health(self.health_path, self.retry, body)

    async def start(self) -> None:
        await retry_infrastructure(self._admin.ensure_topics, f"{self.group}: topics")

    async def close(self) -> None:
        await self.dead_letters.close()
        await self._admin.close()

    def install(self, app: faust.App) -> None:
        topic = raw_topic(app, Topic.COMMANDS.value)

        async def commands(stream: Any) -> None:
            async for events in stream.noack_take(self.max_records, within=0.02):
                for event in events:
                    await self.processor.record(event.message)
                    await stream.ack(event)  # its answer is in the store

        app.agent(topic, name="commands")(commands)

        async def background() -> None:
            try:
                while True:
                    self.report(app)
                    await asyncio.sleep(0.25)
            finally:
                self.report(app)
                await self.close()

        app.task(background)
