"""The engines a test run uses, chosen once per pytest session.

``embedded`` (the default): SQLite and Tansu, what ``hero up`` runs out of the box.
``production``: PostgreSQL 18 (the embedded server infra starts) and Apache Kafka 4.4 (KRaft,
started by infra too), what a grid operator runs. Chosen with ``pytest --engines NAME`` or
``HERO_TEST_ENGINES=NAME``; the fixtures in tests/conftest.py build on what is here.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg
import pytest

from hero.config import HeroSettings, embedded_postgres_url_file
from hero.domain.clock import Clock
from hero.store import (
    CheckpointStore,
    EventStore,
    PostgresEventStore,
    SqliteEventStore,
    open_checkpoints,
    sqlite_path_from_url,
)
from infra import Endpoints, LocalStack, UpReport
from infra.postgres import PostgresProcess

__all__ = [
    "ENGINES",
    "FAILOVER_MARKS",
    "PRODUCTION_ENV",
    "SESSION",
    "Engines",
    "PostgresDatabases",
    "ReachableTempPathFactory",
    "RunningStack",
    "TestStore",
    "engines_of",
    "kafka_missing",
    "provide_store",
    "reachable_dir",
    "stack_of_its_own",
    "stack_settings",
]

Engines = Literal["embedded", "production"]
ENGINES: tuple[Engines, ...] = ("embedded", "production")

# What the child `hero` processes (and every HeroSettings() of the tests) see in the
# production pass: `hero up` then starts the embedded PostgreSQL and Apache Kafka. Kafka's JVM
# alone may take most of the default 60 s to start on a loaded 2-core CI box.
PRODUCTION_ENV = {"HERO_STORE": "postgres", "HERO_BROKER": "kafka", "HERO_UP_TIMEOUT_S": "180"}


def engines_of(config: pytest.Config) -> Engines:
    """The session's engines: the option, else HERO_TEST_ENGINES, else embedded."""
    chosen = config.getoption("engines") or os.environ.get("HERO_TEST_ENGINES") or "embedded"
    if chosen not in ENGINES:
        raise pytest.UsageError(
            f"unknown engines {chosen!r} (from --engines or HERO_TEST_ENGINES): "
            f"use one of {', '.join(ENGINES)}"
        )
    return chosen  # type: ignore[return-value]


def kafka_missing() -> str | None:
    """Why Apache Kafka cannot start here, or None."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "Apache Kafka needs Java 17+ (no java on the PATH, no JAVA_HOME)"
    if os.environ.get("HERO_KAFKA_HOME") or shutil.which("mvn") is not None:
        return None
    cached = HeroSettings().cache_dir.expanduser() / "kafka-4.4.0" / ".complete"
    return None if cached.is_file() else "no HERO_KAFKA_HOME, no Maven to fetch Kafka, no cache"


def reachable_dir(prefix: str) -> Path:
    """A fresh directory in /tmp that others may pass through (not list): as root, the
    embedded PostgreSQL runs as a service user that must reach its data dir."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


class ReachableTempPathFactory(pytest.TempPathFactory):
    """pytest's temporary directories, each one passable by the PostgreSQL service user
    (pytest makes them 0700), under a base of their own in /tmp (pytest resets the mode of
    /tmp/pytest-of-USER to 0700 at each session start)."""

    def getbasetemp(self) -> Path:
        base = super().getbasetemp()
        if base.stat().st_mode & 0o011 != 0o011:
            base.chmod(0o711)
        return base

    def mktemp(self, basename: str, numbered: bool = True) -> Path:
        path = super().mktemp(basename, numbered)
        path.chmod(0o711)
        return path


@dataclass(frozen=True)
class RunningStack:
    """A stack started for the test session; ``settings`` points every piece at it."""

    settings: HeroSettings
    endpoints: Endpoints
    launcher: LocalStack
    report: UpReport


@dataclass(frozen=True)
class TestStore:
    """An empty event store of one test's own: a SQLite file, or a fresh PostgreSQL database."""

    __test__ = False  # not a test class, whatever its name

    url: str

    @property
    def engine(self) -> Literal["sqlite", "postgres"]:
        return "sqlite" if self.url.startswith("sqlite:///") else "postgres"

    def open(self, clock: Clock | None = None) -> EventStore:
        if self.engine == "sqlite":
            return SqliteEventStore(sqlite_path_from_url(self.url), clock)
        return PostgresEventStore(self.url, clock)

    def checkpoints(self) -> CheckpointStore:
        return open_checkpoints(self.url)

    def env(self) -> dict[str, str]:
        """For a child hero process that must use this store."""
        return {"HERO_STORE_URL": self.url}


class PostgresDatabases:
    """One embedded PostgreSQL for the session, started on first use; a fresh database for
    each store a test asks for, so tests never see each other's events."""

    def __init__(self) -> None:
        self._home: Path | None = None
        self._server: PostgresProcess | None = None
        self._names: list[str] = []

    def server(self) -> PostgresProcess:
        """The server, started now if it was not."""
        return self._started()

    def new(self) -> str:
        server = self._started()
        name = f"t_{random.getrandbits(48):012x}"
        with psycopg.connect(self._admin(server), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        self._names.append(name)
        url = server.url(name)
        assert url is not None
        return url

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)

    def _started(self) -> PostgresProcess:
        if self._server is None:
            self._home = reachable_dir("hero-pg-tests-")
            server = PostgresProcess(self._home / "data")
            server.start(timeout=120)
            self._server = server
        return self._server

    @staticmethod
    def _admin(server: PostgresProcess) -> str:
        url = server.url("postgres")
        assert url is not None
        return url


class _Session:
    """What plain helpers (tests/e2e/_cli.py's ``hero``) need of the session's fixtures."""

    databases: PostgresDatabases | None = None


SESSION = _Session()


def provide_store(data_dir: Path) -> None:
    """In the production pass, a data dir the CLI is pointed at without a ``hero up`` gets a
    fresh database on the session's PostgreSQL, left where ``hero up --store postgres``
    leaves its server's URL (a later ``hero up`` there starts its own and overwrites it)."""
    if SESSION.databases is None or os.environ.get("HERO_STORE_URL"):
        return
    path = embedded_postgres_url_file(data_dir)
    if path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(SESSION.databases.new() + "\n")
    path.chmod(0o600)


def stack_settings(data_dir: Path, engines: Engines, **extra: Any) -> HeroSettings:
    if engines == "production":
        return HeroSettings(data_dir=data_dir, store="postgres", broker="kafka", **extra)
    return HeroSettings(data_dir=data_dir, store="sqlite", broker="tansu", **extra)


#: The marks of a failover test (point 5 of issue 14): it kills processes of a PostgreSQL +
#: Apache Kafka stack, so it runs in the production pass, on that pass's session PostgreSQL
#: (``store_factory``) and Kafka (``broker_factory``, or a stack's own), and the embedded
#: pass, which has neither, reports it skipped; `-m "not kafka"` leaves it out.
FAILOVER_MARKS = [
    pytest.mark.integration,
    pytest.mark.kafka,
    pytest.mark.production_only(reason="a failover test, on PostgreSQL + Apache Kafka"),
]


@contextmanager
def stack_of_its_own(
    prefix: str, store_url: str, *, logs_to: Path | None = None, **extra: Any
) -> Iterator[LocalStack]:
    """A production stack of the test's own (copies or Ray nodes the session's stack does not
    run, to kill) on ``store_url`` (a database of the session's PostgreSQL) and a Kafka it
    starts; stopped and removed afterwards, its logs first copied to ``logs_to`` if given.
    Its data dir is under /tmp, passable: as root, Kafka's and the relays' files live there
    beside what the PostgreSQL service user must reach."""
    home = reachable_dir(prefix)
    settings = stack_settings(
        home / "data", "production", store_url=store_url, up_timeout_s=300, **extra
    )
    launcher = LocalStack(settings)
    try:
        launcher.up()
        yield launcher
    finally:
        try:
            launcher.down()
        finally:
            if logs_to is not None and (home / "data" / "logs").is_dir():
                shutil.copytree(home / "data" / "logs", logs_to, dirs_exist_ok=True)
                print(f"\nthe stack's logs: {logs_to}")
            shutil.rmtree(home, ignore_errors=True)
