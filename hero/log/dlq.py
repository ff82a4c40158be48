"""The dead letters on ``hero.dlq``: read them, and send them back to where they came from.

A dead letter is named by the first 16 hex digits of the SHA-256 of its record, so its id is
the same on every read. Replaying one sends its record, as it was, to its source topic (the
same partition when the topic still has it) and then notes its id on
``hero.dlq.replayed``; a letter noted there is not replayed again (and the consumers' own
dedupe covers a replay repeated after a crash between the two). The note lives on the same
broker as the letter, so it goes where the letter goes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from hero.log.consumer import DeadLetter
from hero.log.producer import new_producer
from hero.log.topics import TopicAdmin, wait_for_partitions
from schemas import Topic

__all__ = ["REPLAYED_TOPIC", "StoredDeadLetter", "read_dead_letters", "replay_dead_letters"]

REPLAYED_TOPIC = "hero.dlq.replayed"
_FIELDS = tuple(f.name for f in fields(DeadLetter))


@dataclass(frozen=True)
class StoredDeadLetter:
    """A dead letter as read from ``hero.dlq``, with its id and whether it was replayed."""

    id: str
    letter: DeadLetter
    replayed: bool = False

    def original_value(self) -> bytes | None:
        value = self.letter.value
        if value is None:
            return None
        if self.letter.value_encoding == "base64":
            return base64.b64decode(value)
        return value.encode()

    def preview(self, width: int = 60) -> str:
        text = self.letter.value or ""
        if self.letter.value_encoding == "base64":
            text = f"(binary, {len(self.original_value() or b'')} bytes)"
        text = " ".join(text.split())
        return text if len(text) <= width else text[: width - 3] + "..."

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "replayed": self.replayed, **self.letter.__dict__}


def _letter(record: ConsumerRecord[Any, Any]) -> StoredDeadLetter | None:
    """The dead letter a record holds; None for a record that is not one."""
    raw = record.value
    try:
        data = json.loads(raw) if raw is not None else None
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or any(name not in data for name in _FIELDS):
        return None
    try:
        letter = DeadLetter(**{name: data[name] for name in _FIELDS})
    except TypeError:
        return None
    return StoredDeadLetter(hashlib.sha256(raw).hexdigest()[:16], letter)


async def _read_topic(bootstrap: str, topic: str, timeout_s: float) -> list[Any]:
    """Every record of ``topic`` as it is now; none when it does not exist. Read up to the end
    offsets taken at the start: a fetch returns whole batches, so stopping once past the
    embedded broker's end offset (the last batch's base + 1) still reads that batch whole."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return []
        partitions = await wait_for_partitions(consumer, topic, timeout_s)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = asyncio.get_running_loop().time() + timeout_s
        while left := [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{topic}: not read to its end within {timeout_s:g} s")
            batches = await consumer.getmany(*left, timeout_ms=300)
            for batch in batches.values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def read_dead_letters(
    bootstrap: str, *, topic: str = Topic.DLQ.value, timeout_s: float = 30.0
) -> list[StoredDeadLetter]:
    """The dead letters on ``topic``, oldest first, each marked if it was replayed."""
    records = await _read_topic(bootstrap, topic, timeout_s)
    records.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
    replayed = set()
    for record in await _read_topic(bootstrap, REPLAYED_TOPIC, timeout_s):
        try:
            replayed.add(json.loads(record.value)["id"])
        except (ValueError, TypeError, KeyError):
            continue
    found = []
    for record in records:
        letter = _letter(record)
        if letter is not None:
            found.append(StoredDeadLetter(letter.id, letter.letter, replayed=letter.id in replayed))
    return found


async def replay_dead_letters(bootstrap: str, letters: Sequence[StoredDeadLetter]) -> list[str]:
    """Send each letter's record back to its source topic, then note it replayed; returns the
    ids replayed (those already replayed are left out and not sent)."""
    todo = [letter for letter in letters if not letter.replayed]
    if not todo:
        return []
    admin = TopicAdmin(bootstrap)
    try:
        await admin.create([REPLAYED_TOPIC], partitions=1)
    finally:
        await admin.close()
    producer = new_producer(bootstrap)
    await producer.start()
    done = []
    try:
        for stored in todo:
            letter = stored.letter
            partitions = await producer.partitions_for(letter.topic)
            await producer.send_and_wait(
                letter.topic,
                value=stored.original_value(),
                key=letter.key.encode() if letter.key is not None else None,
                partition=letter.partition if letter.partition in partitions else None,
            )
            note = {
                "id": stored.id,
                "replayed_at": datetime.now(UTC).isoformat(),
                "topic": letter.topic,
                "partition": letter.partition,
                "offset": letter.offset,
            }
            await producer.send_and_wait(REPLAYED_TOPIC, value=json.dumps(note).encode())
            done.append(stored.id)
    finally:
        await producer.stop()
    return done
