"""Two relays, one lease: kill -9 the one that publishes, the standby takes over within 5 s,
and the topic ends up holding every event exactly once, in order per stream.

On PostgreSQL + Apache Kafka, as ``hero up --store postgres --broker kafka --replicas 2`` runs
them: in the production pass, on a database of its session PostgreSQL and a Kafka of the
module's own (``broker_factory``), the relays started by infra's own class. A
writer appends to many streams all along; each of KILLS rounds kills the active relay, times
the standby's takeover and starts the killed replica again as the new standby. Then the
topic is read back. The figures are printed (run with ``-s``) and written to
``<tmp>/failover-figures.json``. Also here: the relay lease contract on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from hero.config import HeroSettings
from hero.store import (
    PostgresEventStore,
    PostgresLease,
    StreamAppend,
    migrate,
)
from infra import KafkaProcess
from infra.hero_processes import RelayProcess
from schemas import Topic, new_id
from tests._engines import FAILOVER_MARKS
from tests.integration._failover import successor_leaves_out_what_was_published
from tests.integration._kafka import read_topic_until, status_event
from tests.unit.lease_contract import LeaseContract

pytestmark = FAILOVER_MARKS

KILLS = 3
STREAMS = 40
STREAMS_PER_APPEND = 10
EVENTS_PER_STREAM = 3
TAKEOVER_BOUND_S = 5.0
PROGRESS_BEFORE_KILL = 2000  # events the active relay publishes before it is killed
TOPIC = Topic.UTILIZATION.value  # where NodeStatusChanged lives


@pytest.fixture(scope="module")
def kafka(broker_factory) -> KafkaProcess:
    broker = broker_factory()
    assert isinstance(broker, KafkaProcess)
    return broker


@pytest.fixture
def database_url(store_factory) -> str:
    return store_factory().url


class TestPostgresLease(LeaseContract):
    @pytest.fixture
    def holder_url(self, database_url):
        return database_url

    @pytest.fixture
    def new_lease(self, database_url):
        return lambda: PostgresLease(database_url)

    def test_a_holder_whose_session_ends_no_longer_holds(self, leases, database_url):
        first, second = leases(), leases()
        assert first.try_acquire()
        with psycopg.connect(database_url, autocommit=True) as conn:
            ended = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'hero-relay-lease' AND datname = current_database()"
            ).fetchall()
        assert ended == [(True,)]
        assert not first.held()
        assert second.try_acquire()
        assert not first.try_acquire()

    def test_leases_of_two_databases_are_independent(self, database_url, store_factory):
        other = store_factory().url
        with PostgresLease(database_url) as here, PostgresLease(other) as there:
            assert here.try_acquire()
            assert there.try_acquire()


async def test_a_successor_leaves_out_what_a_dead_relay_published_past_its_checkpoint(
    kafka, store_factory
):
    figures = await successor_leaves_out_what_was_published(
        str(kafka.address), store_factory(), idempotent=True
    )
    print("\ncheckpoint behind the broker, Apache Kafka:", figures)


# -- the failover ---------------------------------------------------------------------------


class _Writer(threading.Thread):
    """Appends one event at a time round-robin over STREAMS streams until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.store = PostgresEventStore(url)
        tag = new_id("f")
        self.streams = [f"node-{tag}-{i}" for i in range(STREAMS)]
        self.versions = dict.fromkeys(self.streams, 0)
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        """Several streams per transaction, a few events each: fast enough that the relay
        always has a backlog, so a kill lands between a batch's acknowledgement and its
        checkpoint now and then."""
        try:
            while not self.halt.is_set():
                for first in range(0, STREAMS, STREAMS_PER_APPEND):
                    chunk = self.streams[first : first + STREAMS_PER_APPEND]
                    appends = [
                        StreamAppend(
                            stream,
                            self.versions[stream],
                            [status_event(stream) for _ in range(EVENTS_PER_STREAM)],
                        )
                        for stream in chunk
                    ]
                    self.store.append_many(appends, new_id("cmd"))
                    for stream in chunk:
                        self.versions[stream] += EVENTS_PER_STREAM
        except BaseException as error:  # reported by the test, never swallowed
            self.error = error

    @property
    def appended(self) -> int:
        return sum(self.versions.values())


def _until(condition: Callable[[], Any], timeout_s: float, what: str, step_s: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s} s for {what}")
        time.sleep(step_s)  # polling a health file, bounded by the deadline above


def _role(relay: RelayProcess) -> str | None:
    health = relay.health()
    return None if health is None else health.get("role")


def _active(relays: dict[int, RelayProcess]) -> RelayProcess | None:
    found = [relay for relay in relays.values() if _role(relay) == "active"]
    return found[0] if len(found) == 1 else None


def _position(relay: RelayProcess) -> int:
    health = relay.health() or {}
    return int(health.get("position", -1))


def _start_relay(settings: HeroSettings, bootstrap: str, replica: int) -> RelayProcess:
    relay = RelayProcess(settings, bootstrap, replica=replica)
    relay.start(timeout=60)
    return relay


def _attribute(positions: list[int], kills: list[dict[str, Any]]) -> list[int]:
    """How many of ``positions`` fall after each kill's confirmed position (before the next)."""
    counts = [0] * len(kills)
    for position in positions:
        for index in reversed(range(len(kills))):
            if position > kills[index]["confirmed_at_kill"]:
                counts[index] += 1
                break
    return counts


def test_two_relays_one_lease_kill_the_active_one_repeatedly(kafka, database_url, tmp_path):
    migrate(database_url)
    bootstrap = str(kafka.address)
    data_dir = tmp_path / "hero"
    settings = HeroSettings(
        data_dir=data_dir,
        store_url=database_url,
        broker="kafka",
        kafka_bootstrap=bootstrap,
        relay_batch_size=200,
    )
    writer = _Writer(database_url)
    relays: dict[int, RelayProcess] = {}
    kills: list[dict[str, Any]] = []
    try:
        relays[1] = _start_relay(settings, bootstrap, 1)
        _until(lambda: _role(relays[1]) == "active", 30, "relay 1 to take the free lease")
        relays[2] = _start_relay(settings, bootstrap, 2)
        assert _role(relays[2]) == "standby"
        writer.start()
        for _ in range(KILLS):
            victim = _until(lambda: _active(relays), 30, "one active relay")
            standby = next(r for r in relays.values() if r is not victim)
            assert _role(standby) == "standby"
            start = _position(victim)
            _until(
                lambda v=victim, s=start: _position(v) >= s + PROGRESS_BEFORE_KILL,
                30,
                "the active relay to publish",
            )
            confirmed = _position(victim)
            killed_at = time.monotonic()
            victim.kill()  # SIGKILL to the pid this test started, and waits until it is gone
            _until(
                lambda s=standby, c=confirmed: _role(s) == "active" and _position(s) > c,
                TAKEOVER_BOUND_S + 5,
                "the standby to publish",
                step_s=0.005,
            )
            takeover = time.monotonic() - killed_at
            skipped = int((standby.health() or {}).get("skipped", 0))
            kills.append(
                {
                    "killed_replica": victim.replica,
                    "confirmed_at_kill": confirmed,
                    "takeover_s": round(takeover, 3),
                    "rows_left_out_by_new_leader": skipped,
                }
            )
            relays[victim.replica] = _start_relay(settings, bootstrap, victim.replica)
            assert _role(relays[victim.replica]) == "standby"
        writer.halt.set()
        writer.join(timeout=30)
        assert writer.error is None, writer.error
        total = writer.appended
        last = writer.store.current_position()
        leader = _until(lambda: _active(relays), 30, "one active relay")
        _until(lambda: _position(leader) >= last, 60, "the relay to publish the last event")
    finally:
        writer.halt.set()
        writer.join(timeout=30)
        for relay in relays.values():
            relay.stop()
        writer.store.close()

    ours = set(writer.streams)
    rows = read_topic_until_all(bootstrap, ours, total)
    figures = _figures(rows, writer, kills)
    (tmp_path / "failover-figures.json").write_text(json.dumps(figures, indent=2))
    print("\nrelay failover on PostgreSQL + Apache Kafka:", json.dumps(figures, indent=2))
    assert len(kills) == KILLS
    assert all(kill["takeover_s"] < TAKEOVER_BOUND_S for kill in kills), kills
    assert figures["lost"] == 0
    assert figures["duplicates"] == 0
    assert figures["out_of_order_streams"] == 0


def read_topic_until_all(bootstrap: str, streams: set[str], total: int) -> list[dict[str, Any]]:
    return asyncio.run(
        read_topic_until(
            bootstrap,
            TOPIC,
            lambda seen: len(seen) >= total,
            keep=lambda row: row.get("stream") in streams,
            timeout_s=60,
        )
    )


def _figures(
    rows: list[dict[str, Any]], writer: _Writer, kills: list[dict[str, Any]]
) -> dict[str, Any]:
    seen: dict[tuple[str, int], int] = {}
    for row in rows:
        key = (row["stream"], row["version"])
        seen[key] = seen.get(key, 0) + 1
    duplicate_positions = [
        row["position"] for row in rows if seen[(row["stream"], row["version"])] > 1
    ]
    expected = {(s, v) for s, n in writer.versions.items() for v in range(1, n + 1)}
    lost = expected - set(seen)
    out_of_order = 0
    by_stream: dict[str, list[int]] = {}
    for row in sorted(rows, key=lambda r: (r["_partition"], r["_offset"])):
        by_stream.setdefault(row["stream"], []).append(row["version"])
    for versions in by_stream.values():
        if versions != sorted(versions) or len(set(versions)) != len(versions):
            out_of_order += 1
    dup_per_kill = _attribute(duplicate_positions, kills)
    for kill, dups in zip(kills, dup_per_kill, strict=True):
        kill["duplicates"] = dups
        kill["lost"] = 0 if not lost else "see total"
    return {
        "kills": kills,
        "events": len(expected),
        "records_read": len(rows),
        "lost": len(lost),
        "duplicates": len(rows) - len(seen),
        "out_of_order_streams": out_of_order,
        "streams": len(writer.streams),
    }
