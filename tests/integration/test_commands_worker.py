"""The command processor (``python -m streams commands``, a Faust worker) on the session's
broker, with a store of each test's own: a command sent twice is applied once, a refused one
is answered with ``CommandRejected``, a record that is not a command is dead-lettered, and a
kill -9 mid-stream loses and doubles nothing."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hero.log.commands import encode_command, send_commands
from hero.log.producer import new_producer
from hero.store import EventStore
from schemas import FarmRegistered, RegisterFarm, Topic
from streams.commands import REJECTIONS_STREAM
from tests._wait import wait_until
from tests.integration._kafka import read_topic_until

pytestmark = pytest.mark.integration


def _farm(tag: str, i: int, command_id: str | None = None) -> RegisterFarm:
    return RegisterFarm(
        command_id=command_id or f"{tag}-reg-{i}",
        farm_id=f"{tag}f{i}"[:24],
        name=f"farm {i}",
        grid="grid4",
        country="BE",
        region="Ghent",
    )


class Worker:
    """One commands worker of the test's own group, over its own store and data dir."""

    def __init__(self, stack: Any, store_url: str, data_dir: Path, tag: str):
        self.stack, self.store_url, self.data_dir, self.tag = stack, store_url, data_dir, tag
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        env = {
            **os.environ,
            "HERO_DATA_DIR": str(self.data_dir),
            "HERO_STORE_URL": self.store_url,
            "HERO_KAFKA_BOOTSTRAP": self.stack.endpoints.kafka_bootstrap,
        }
        log = (self.data_dir / "commands.log").open("ab")
        command = [sys.executable, "-m", "streams", "commands", "--group", self.tag]
        self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        return self.proc.pid

    def health(self) -> dict[str, Any]:
        if self.proc is None:
            return {}
        try:
            health = json.loads((self.data_dir / "run" / "commands.health").read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return health if health.get("pid") == self.proc.pid else {}

    def kill_9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@pytest.fixture
def worker(stack: Any, store_factory: Any, tmp_path: Path) -> Iterator[tuple[Worker, EventStore]]:
    handle = store_factory()
    store = handle.open()
    tag = f"cmd{random.randrange(10**8)}"
    running = Worker(stack, handle.url, tmp_path, tag)
    try:
        yield running, store
    finally:
        running.stop()


def _rows(store: EventStore, type_name: str, tag: str) -> list[Any]:
    """The test's own rows of ``type_name``: a worker of a new group reads ``hero.commands``
    from its start, the other tests' commands included."""
    rows = [row for row in store.read_all(1, 100_000) if row.type == type_name]
    return [row for row in rows if (row.envelope().causation_id or "").startswith(f"{tag}-")]


async def test_a_command_sent_twice_is_applied_once_and_a_refused_one_is_answered(
    stack: Any, worker: tuple[Worker, EventStore]
) -> None:
    running, store = worker
    tag = running.tag
    first = _farm(tag, 1)
    again = _farm(tag, 1, command_id=f"{tag}-reg-1-again")  # a new id: the farm exists
    running.start()
    bootstrap = stack.endpoints.kafka_bootstrap
    await send_commands(bootstrap, [first], actor="test", key=first.farm_id)
    await send_commands(bootstrap, [first, again], actor="test", key=first.farm_id)
    wait_until(lambda: _rows(store, "CommandRejected", tag), 60, "the refused command")
    wait_until(lambda: running.health().get("rejected", 0) >= 1, 10, "the report of it")

    health = running.health()
    print(f"\ncommands: {health}")
    assert health["applied"] >= 1
    assert health["duplicates"] >= 1
    assert health["rejected"] >= 1
    registered = _rows(store, "FarmRegistered", tag)
    assert [row.envelope().causation_id for row in registered] == [first.command_id]
    assert registered[0].envelope().decode() == FarmRegistered(
        **first.model_dump(exclude={"command_id"})
    )
    (rejected,) = _rows(store, "CommandRejected", tag)
    envelope = rejected.envelope()
    assert (rejected.stream, envelope.causation_id, envelope.actor) == (
        REJECTIONS_STREAM,
        again.command_id,
        "test",
    )
    answer = envelope.decode()
    assert (answer.command_type, answer.reason) == ("RegisterFarm", "already_registered")  # type: ignore[attr-defined]


async def test_a_record_that_is_not_a_command_is_dead_lettered_and_the_next_applied(
    stack: Any, worker: tuple[Worker, EventStore]
) -> None:
    running, store = worker
    tag = running.tag
    bootstrap = stack.endpoints.kafka_bootstrap
    running.start()
    good = _farm(tag, 2)
    event_as_command = json.loads(encode_command(good, actor="test"))
    event_as_command["type"] = "FarmRegistered"  # an event, not a command
    bad_payload = json.loads(encode_command(good, actor="test"))
    bad_payload["payload"]["farm_id"] = "no spaces allowed"
    key = f"{tag}-poison".encode()
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        for value in (
            b"{not json",
            json.dumps(event_as_command).encode(),
            json.dumps(bad_payload).encode(),
        ):
            await producer.send_and_wait(Topic.COMMANDS.value, value=value, key=key)
    finally:
        await producer.stop()
    await send_commands(bootstrap, [good], actor="test", key=key.decode())
    wait_until(lambda: _rows(store, "FarmRegistered", tag), 60, "the good command")

    letters = await read_topic_until(
        bootstrap,
        Topic.DLQ.value,
        lambda seen: len(seen) >= 3,
        keep=lambda row: row.get("consumer") == tag,
        timeout_s=30,
    )
    print(f"\ndead letters: {[(row['reason'], row['detail'][:60]) for row in letters]}")
    assert [row["reason"] for row in letters] == ["undecodable", "unknown_type", "schema_invalid"]
    assert all(row["topic"] == Topic.COMMANDS.value for row in letters)
    wait_until(lambda: running.health().get("dead_lettered", 0) >= 3, 10, "their report")
    assert [row.envelope().causation_id for row in _rows(store, "FarmRegistered", tag)] == [
        good.command_id
    ]
    assert _rows(store, "CommandRejected", tag) == []


async def test_kill_9_mid_stream_loses_and_doubles_no_command(
    stack: Any, worker: tuple[Worker, EventStore]
) -> None:
    running, store = worker
    tag = running.tag
    count = 1000
    commands = [_farm(tag, i) for i in range(count)]
    # Keyed by their ids: the commands spread over every partition.
    await send_commands(stack.endpoints.kafka_bootstrap, commands, actor="test")
    running.start()
    wait_until(lambda: running.health().get("applied", 0) >= 30, 60, "some commands applied")
    running.kill_9()
    applied_before = len(_rows(store, "FarmRegistered", tag))
    running.start()
    wait_until(
        lambda: len(_rows(store, "FarmRegistered", tag)) >= count, 120, "every command applied"
    )
    wait_until(lambda: running.health().get("applied", 0) > 0, 30, "the second life's report")

    registered = _rows(store, "FarmRegistered", tag)
    causes = [row.envelope().causation_id for row in registered]
    lost = count - len(set(causes))
    doubled = len(causes) - len(set(causes))
    health = running.health()
    print(
        f"\ncommands kill -9: sent {count}, applied before the kill {applied_before}, "
        f"after {len(registered)}; lost {lost}, doubled {doubled}; second life: "
        f"{health['applied']} applied, {health['duplicates']} redelivered found applied"
    )
    assert 0 < applied_before < count
    assert sorted(causes) == sorted(c.command_id for c in commands)
    assert _rows(store, "CommandRejected", tag) == []


def test_a_bad_worker_name_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streams", "commands", "--name", "usage"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HERO_KAFKA_BOOTSTRAP": "127.0.0.1:1"},
    )
    assert result.returncode == 2
    assert "--name usage is not a commands worker" in result.stderr
