"""The event store contract on a real PostgreSQL (the embedded one infra starts), and what only
PostgreSQL needs proving: concurrent writer processes never make a follower miss or reorder an
event, and LISTEN/NOTIFY wakes a follower."""

from __future__ import annotations

import json
import multiprocessing
import random
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from hero.config import HeroSettings, mask_url
from hero.domain.clock import ManualClock, SystemClock
from hero.store import (
    ANY_VERSION,
    NO_STREAM,
    NewEvent,
    PostgresCheckpointStore,
    PostgresEventStore,
    StoreError,
    StreamAppend,
    migrate,
    open_checkpoints,
    open_store,
    recorded_after,
)
from hero.store.follow import next_batch
from infra import LocalStack
from infra.postgres import PostgresProcess
from tests._engines import PostgresDatabases, reachable_dir
from tests._wait import wait_until
from tests.e2e._cli import hero_json
from tests.unit.store_contract import (
    EventStoreContract,
    assert_gap_free,
    new_event,
    race_same_expected_version,
    race_with_retries,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.embedded_only(reason="starts a PostgreSQL of its own already"),
]

WRITERS = 8
EVENTS_PER_WRITER = 500
FOLLOW_TIMEOUT_S = 240.0


@pytest.fixture(scope="module")
def databases() -> Iterator[PostgresDatabases]:
    """An embedded PostgreSQL of this module's own, started as ``hero up --store postgres``
    starts it, with a fresh database for each test that asks for one."""
    databases = PostgresDatabases()
    try:
        yield databases
    finally:
        databases.close()


@pytest.fixture(scope="module")
def postgres(databases: PostgresDatabases) -> PostgresProcess:
    server = databases.server()
    server.ensure_database()
    return server


@pytest.fixture
def database_url(databases: PostgresDatabases) -> str:
    """A fresh database for one test: no test sees another's events."""
    return databases.new()


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, clock, database_url):
        store = PostgresEventStore(database_url, clock)
        yield store
        store.close()

    @pytest.fixture
    def second_store(self, clock, database_url, store):
        """Another store object on the same database: what a second process would hold."""
        other = PostgresEventStore(database_url, clock)
        yield other
        other.close()

    def test_a_second_store_sees_the_first_ones_appends(self, store, second_store, clock):
        store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
        assert second_store.stream_version("s1") == 1
        assert second_store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1").duplicate

    def test_two_stores_racing_with_one_expected_version(self, store, second_store, clock):
        won, lost = race_same_expected_version([store, second_store], clock, "race", 20)
        assert (len(won), len(lost)) == (1, 19)

    def test_two_stores_retrying_leave_a_gap_free_stream(self, store, second_store, clock):
        race_with_retries([store, second_store], clock, "race", threads=10, appends=10)
        assert_gap_free(store, "race", writers=10, appends=10)

    def test_nothing_of_a_group_is_visible_to_others_before_it_ends(
        self, store, second_store, clock
    ):
        with store.group_commit():
            store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
            assert store.current_position() == 1
            assert second_store.current_position() == 0
        assert second_store.current_position() == 1

    def test_an_error_escaping_a_group_undoes_it_and_gives_its_positions_back(
        self, store, second_store, clock
    ):
        def dies_half_way() -> None:
            with store.group_commit():
                store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
                raise RuntimeError("the process dies here")

        with pytest.raises(RuntimeError):
            dies_half_way()
        assert store.command_result("s1", "cmd-1") is None
        # The rolled-back position is handed out again: no gap, as a sequence would leave.
        assert second_store.append("s2", NO_STREAM, [new_event(clock)], "cmd-2").first_position == 1

    def test_events_and_commands_survive_reopening(self, store, clock, database_url):
        original = store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
        store.close()
        reopened = PostgresEventStore(database_url, clock)
        try:
            assert reopened.current_position() == 1
            again = reopened.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
            assert again.duplicate
            assert again.event_ids == original.event_ids
        finally:
            reopened.close()


def test_open_store_and_checkpoints_pick_postgres(database_url):
    store = open_store(database_url)
    checkpoints = open_checkpoints(database_url)
    try:
        assert isinstance(store, PostgresEventStore)
        assert isinstance(checkpoints, PostgresCheckpointStore)
        assert checkpoints.load("relay") == 0
        checkpoints.save("relay", 42)
        checkpoints.save("relay", 7)
        assert checkpoints.load("relay") == 7
    finally:
        store.close()
        checkpoints.close()


def test_a_url_the_store_cannot_use_is_refused_without_its_password(postgres):
    url = postgres.url("no_such_database")
    assert url is not None
    with pytest.raises(StoreError, match="cannot connect to the PostgreSQL store") as refused:
        open_store(url)
    assert postgres.password not in str(refused.value)
    with pytest.raises(StoreError, match="cannot connect") as refused:
        open_store("postgresql://hero:hunter2@127.0.0.1:1/hero?no_such_option=1")
    assert "hunter2" not in str(refused.value)


def test_hero_store_migrate_on_an_external_url(database_url, tmp_path):
    env = {"HERO_STORE_URL": database_url}
    first = hero_json("store", "migrate", data_dir=tmp_path / "hero", env=env)
    assert first["applied"] == ["0001_events.sql", "0002_snapshots.sql"]
    assert "***" in first["store_url"]
    assert urlsplit(database_url).password not in first["store_url"]
    assert hero_json("store", "migrate", data_dir=tmp_path / "hero", env=env)["applied"] == []


def test_migrate_applies_each_file_once(database_url):
    assert migrate(database_url) == ["0001_events.sql", "0002_snapshots.sql"]
    assert migrate(database_url) == []
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations").fetchall()
    assert sorted(rows) == [(1, "0001_events.sql"), (2, "0002_snapshots.sql")]


def test_a_follower_waiting_is_woken_by_the_commit_not_by_its_timeout(database_url):
    store, writer = PostgresEventStore(database_url), PostgresEventStore(database_url)
    try:
        woke: list[float] = []
        waiting = threading.Event()

        def follow() -> None:
            waiting.set()
            began = time.monotonic()
            if store.wait_for_new(0, timeout=30.0):
                woke.append(time.monotonic() - began)

        follower = threading.Thread(target=follow)
        follower.start()
        assert waiting.wait(10)
        writer.append("s1", NO_STREAM, [new_event(ManualClock())], "cmd-1")
        follower.join(30)
        assert woke, "the follower was not woken"
        assert woke[0] < 10.0  # NOTIFY, long before the 30 s timeout
        assert not store.wait_for_new(1, timeout=0.2)  # nothing past 1: the timeout answers
    finally:
        store.close()
        writer.close()


# --- many writer processes, one follower ---------------------------------------------------


def _write(url: str, writer: int, events: int, seed: int) -> None:
    """One writer process: single appends, append_many and group commits, mixed at random."""
    rng = random.Random(seed * 1000 + writer)
    store = PostgresEventStore(url, SystemClock(), pool_size=2)
    clock = ManualClock()
    written = 0
    command = 0

    def batch(count: int) -> list[NewEvent]:
        nonlocal written
        made = [
            new_event(clock, f"n{writer}", reason=f"{writer}/{written + i}") for i in range(count)
        ]
        written += count
        return made

    try:
        while written < events:
            left = events - written
            streams = [f"s{rng.randrange(16)}" for _ in range(2)]
            choice = rng.randrange(3)
            command += 1
            if choice == 0 or left < 2:
                store.append(
                    streams[0],
                    ANY_VERSION,
                    batch(min(left, rng.randint(1, 3))),
                    f"c{writer}-{command}",
                )
            elif choice == 1 and streams[0] != streams[1]:
                store.append_many(
                    [
                        StreamAppend(streams[0], ANY_VERSION, batch(1)),
                        StreamAppend(streams[1], ANY_VERSION, batch(1)),
                    ],
                    f"c{writer}-{command}",
                )
            else:
                with store.group_commit():
                    for part in range(min(left, rng.randint(2, 4))):
                        store.append(
                            streams[0], ANY_VERSION, batch(1), f"c{writer}-{command}-{part}"
                        )
    finally:
        store.close()


def _follow(store: PostgresEventStore, total: int, seen: list[tuple[int, str]]) -> None:
    position = 0
    deadline = time.monotonic() + FOLLOW_TIMEOUT_S
    while position < total and time.monotonic() < deadline:
        for row in next_batch(store, position, batch=500, wait_s=1.0):
            seen.append((row.position, row.envelope().id))
            position = row.position


@pytest.mark.parametrize("run", [1, 2, 3])
def test_concurrent_writer_processes_and_a_follower_that_sees_every_event_once_in_order(
    database_url: str, run: int
) -> None:
    total = WRITERS * EVENTS_PER_WRITER
    follower_store = PostgresEventStore(database_url)
    seen: list[tuple[int, str]] = []
    follower = threading.Thread(target=_follow, args=(follower_store, total, seen))
    follower.start()
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_write, args=(database_url, index, EVENTS_PER_WRITER, run))
        for index in range(WRITERS)
    ]
    began = time.monotonic()
    for process in writers:
        process.start()
    for process in writers:
        process.join(FOLLOW_TIMEOUT_S)
    try:
        assert [process.exitcode for process in writers] == [0] * WRITERS
        follower.join(FOLLOW_TIMEOUT_S)
        assert not follower.is_alive(), f"the follower saw {len(seen)} of {total}"
        seconds = time.monotonic() - began
        positions = [position for position, _ in seen]
        # Every event once, in one order, no gap: a late commit under a lower position would
        # show as a gap here (the follower already moved past it) and as a missing id below.
        assert positions == list(range(1, total + 1))
        ids = {event_id for _, event_id in seen}
        stored = {row.envelope().id for row in recorded_after(follower_store)}
        assert len(ids) == total
        assert ids == stored
        print(f"run {run}: {WRITERS} writers x {EVENTS_PER_WRITER} events, {seconds:.1f} s")
    finally:
        for process in writers:
            if process.is_alive():
                process.kill()
        follower_store.close()


# --- the launcher ---------------------------------------------------------------------------


def test_hero_up_with_store_postgres_runs_it_and_a_second_up_finds_the_data() -> None:
    home = reachable_dir("hero-pg-stack-")
    data_dir = home / "data"
    stack = LocalStack(HeroSettings(data_dir=data_dir, store="postgres"))
    report = stack.up()
    try:
        states = {c.name: c for c in report.components}
        assert states["postgres"].state == "up"
        assert states["postgres"].pid is not None
        url = stack.settings.effective_store_url
        assert url.startswith("postgresql://hero:")
        assert "***" in report.model_dump_json()
        assert stack.settings.masked()["store_url"] == mask_url(url)
        store = open_store(url)
        try:
            store.append("s1", NO_STREAM, [new_event(ManualClock())], "cmd-1")
        finally:
            store.close()
        # The relay carries it to the broker: it reads the PostgreSQL store like the SQLite one.
        wait_until(lambda: _relay_position(data_dir) >= 1, 60, "the relay to publish it")
        with psycopg.connect(url) as conn:  # TCP on the loopback only, no unix socket
            assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
            assert conn.execute("SHOW unix_socket_directories").fetchone() == ("",)
        # The client holding a session above is gone; one still connected must not stall down.
        lingering = psycopg.connect(url)
    finally:
        began = time.monotonic()
        stopped = {c.name: c.state for c in stack.down()}
    assert stopped["postgres"] == "down"
    assert {c.name: c.state for c in stack.status()}["postgres"] == "down"
    with pytest.raises(psycopg.OperationalError):
        lingering.execute("SELECT 1")  # its session was ended, not waited for
    lingering.close()
    password = PostgresProcess(data_dir).password
    logs = {path.name: path.read_text() for path in (data_dir / "logs").glob("*.log")}
    assert "relay.log" in logs
    assert [name for name, text in logs.items() if password in text] == []
    assert time.monotonic() - began < PostgresProcess.stop_timeout
    assert not PostgresProcess(data_dir).is_alive()
    # Without --store: the data dir's PostgreSQL is found again, data and all (no new initdb).
    again = LocalStack(HeroSettings(data_dir=data_dir))
    try:
        report = again.up()
        assert {c.name: c.state for c in report.components}["postgres"] == "up"
        store = open_store(again.settings.effective_store_url)
        try:
            assert store.stream_version("s1") == 1
        finally:
            store.close()
    finally:
        again.down()
        shutil.rmtree(home)


def test_an_external_postgres_url_is_reported_as_external(postgres, tmp_path):
    url = postgres.url()
    assert url is not None
    stack = LocalStack(HeroSettings(data_dir=tmp_path / "hero", store_url=url))
    status = {c.name: c for c in stack.status()}["postgres"]
    assert status.state == "external"
    assert status.detail == "answers"
    assert status.address == mask_url(url)
    assert postgres.password not in (status.address or "")


def test_a_writer_that_commits_late_is_never_skipped_by_a_follower(database_url):
    """The interleaving a sequence gets wrong: A numbers its event first but commits last.

    With a sequence, B (started later) would commit position 2 while A still held 1, and a
    follower reading ``position > 0`` would move to 2 and never read 1. Here B waits on the
    log head until A commits, and takes 2 after it.
    """
    first, second, follower = (PostgresEventStore(database_url) for _ in range(3))
    clock = ManualClock()
    results: list[int] = []
    try:
        with first.group_commit():
            assert first.append("a", NO_STREAM, [new_event(clock)], "cmd-a").first_position == 1
            writer = threading.Thread(
                target=lambda: results.append(
                    second.append("b", NO_STREAM, [new_event(clock)], "cmd-b").first_position
                )
            )
            writer.start()
            _wait_until_blocked_on_a_lock(database_url)
            assert follower.read_all(1) == []  # nothing committed, and nothing skipped later
            assert results == []
        writer.join(30)
        assert results == [2]
        assert [(r.position, r.stream) for r in follower.read_all(1)] == [(1, "a"), (2, "b")]
    finally:
        for store in (first, second, follower):
            store.close()


def test_a_grouped_append_the_server_refuses_undoes_the_whole_group(database_url):
    """Inside a group an append sets no savepoint: a write the server refuses leaves the
    transaction aborted, so the group must fail as a whole, store nothing and say why,
    never commit what came before the failure as if the rest had been refused alone."""
    clock = ManualClock()
    # Every connection of this store gives up on a statement after 0.5 s.
    impatient = f"{database_url}?options=-c%20statement_timeout%3D500"
    store, locker = PostgresEventStore(impatient, clock), psycopg.connect(database_url)
    try:
        store.append("held", NO_STREAM, [new_event(clock)], "cmd-0")
        # Another session holds the stream's row: the group's write to it waits, then times out.
        locker.execute("SELECT version FROM streams WHERE stream = 'held' FOR UPDATE")

        def group() -> None:
            with store.group_commit():
                store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1")
                with pytest.raises(psycopg.errors.QueryCanceled):
                    store.append("held", 1, [new_event(clock)], "cmd-2")
                with pytest.raises(psycopg.Error):  # the transaction is aborted: nothing more
                    store.append("s3", NO_STREAM, [new_event(clock)], "cmd-3")

        with pytest.raises(StoreError, match="group commit was undone"):
            group()
        locker.rollback()
        assert [(r.position, r.stream) for r in store.read_all()] == [(1, "held")]
        assert store.command_result("s1", "cmd-1") is None
        assert store.append("s1", NO_STREAM, [new_event(clock)], "cmd-1").first_position == 2
    finally:
        locker.close()
        store.close()


def _relay_position(data_dir: Path) -> int:
    try:
        return int(json.loads((data_dir / "run" / "relay.health").read_text())["position"])
    except (OSError, ValueError, KeyError):
        return 0


def _wait_until_blocked_on_a_lock(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if row and row[0]:
                return
            conn.execute("SELECT pg_sleep(0.01)")  # a server-side pause between probes
    raise AssertionError("the second writer never waited on the log head")
