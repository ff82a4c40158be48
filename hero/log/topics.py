"""Topic administration: create the platform's topics, and the relay's broker-epoch marker.

The marker topic is created only by the relay (never by producing to it, never by the
launcher), right after it has reset its position; so its absence means the broker does not
hold what the relay confirmed: a memory-only broker that restarted, or a cluster that was
wiped. The relay then refills the broker from the store.

The telemetry marker says the same for samples, which are not in the store: the usage worker
creates it before it sends the telemetry spool's uncounted samples again (``streams.redrive``);
its absence means the broker may have lost samples it had taken.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from schemas.topics import Topic

__all__ = [
    "EPOCH_MARKER_TOPIC",
    "PLATFORM_TOPICS",
    "TELEMETRY_MARKER_TOPIC",
    "TopicAdmin",
    "wait_for_partitions",
]

EPOCH_MARKER_TOPIC = "hero.relay.epoch"
TELEMETRY_MARKER_TOPIC = "hero.telemetry.epoch"
_MARKERS = (EPOCH_MARKER_TOPIC, TELEMETRY_MARKER_TOPIC)
PLATFORM_TOPICS: tuple[str, ...] = tuple(topic.value for topic in Topic)
_TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno
T = TypeVar("T")


class TopicAdmin:
    """A thin async wrapper over the Kafka admin client, for the topics HERO owns."""

    def __init__(self, bootstrap: str, *, partitions: int = 3, request_timeout_ms: int = 10_000):
        self._bootstrap = bootstrap
        self._partitions = partitions
        self._timeout = request_timeout_ms
        self._admin: AIOKafkaAdminClient | None = None

    async def _client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._bootstrap, request_timeout_ms=self._timeout
            )
            await admin.start()
            self._admin = admin
        return self._admin

    async def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            await admin.close()

    async def _call(self, action: Callable[[AIOKafkaAdminClient], Awaitable[T]]) -> T:
        """Run ``action`` on the shared client; a failure drops it so the next call reconnects."""
        admin = await self._client()
        try:
            return await action(admin)
        except BaseException:
            await self.close()
            raise

    async def list_topics(self) -> set[str]:
        async def listing(admin: AIOKafkaAdminClient) -> set[str]:
            return set(await admin.list_topics())

        return await self._call(listing)

    async def create(self, names: Iterable[str], *, partitions: int | None = None) -> set[str]:
        """Create the topics that do not exist yet; returns the names it created."""
        existing = await self.list_topics()
        missing = [name for name in dict.fromkeys(names) if name not in existing]
        if not missing:
            return set()
        count = partitions or self._partitions
        specs = [NewTopic(name, 1 if name in _MARKERS else count, 1) for name in missing]

        async def creating(admin: AIOKafkaAdminClient) -> object:
            return await admin.create_topics(specs)

        created: set[str] = set()
        for name, code, message in _topic_errors(await self._call(creating)):
            if code == 0:
                created.add(name)
            elif code != _TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"cannot create topic {name!r}: error {code} {message}")
        return created

    async def delete(self, names: Iterable[str]) -> None:
        existing = await self.list_topics()
        doomed = [name for name in names if name in existing]
        if not doomed:
            return

        async def deleting(admin: AIOKafkaAdminClient) -> object:
            return await admin.delete_topics(doomed)

        await self._call(deleting)

    async def ensure_topics(self) -> set[str]:
        """Create every platform topic that is missing (not the relay's epoch marker)."""
        return await self.create(PLATFORM_TOPICS)

    async def mark_epoch(self) -> None:
        """Create the epoch marker. Only the relay calls this, right after it has forgotten
        its position: the marker then means 'this broker holds what the relay confirmed'."""
        await self.create(PLATFORM_TOPICS)
        await self.create([EPOCH_MARKER_TOPIC])

    async def marker_present(self) -> bool:
        return EPOCH_MARKER_TOPIC in await self.list_topics()

    async def mark_telemetry_epoch(self) -> None:
        """Create the telemetry marker (and any missing platform topic). Only the usage
        worker's redrive calls this, right before it sends the spool's uncounted samples."""
        await self.create(PLATFORM_TOPICS)
        await self.create([TELEMETRY_MARKER_TOPIC])

    async def telemetry_marker_present(self) -> bool:
        return TELEMETRY_MARKER_TOPIC in await self.list_topics()


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    rows: list[tuple[str, int, str | None]] = []
    for entry in getattr(response, "topic_errors", []):
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        rows.append((str(name), int(code), message))
    return rows


async def wait_for_partitions(
    consumer: AIOKafkaConsumer, topic: str, timeout_s: float = 10.0
) -> set[int]:
    """The topic's partitions, waiting (bounded) for the metadata of a topic just created."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        if asyncio.get_running_loop().time() > deadline:
            raise LookupError(f"topic {topic!r} has no partitions (is the stack up?)")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
