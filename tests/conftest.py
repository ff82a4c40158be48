"""The engines a run tests against, and the fixtures that follow them.

``pytest --engines embedded`` (the default; or ``HERO_TEST_ENGINES=embedded``) runs on SQLite
and Tansu. ``pytest --engines production`` runs on PostgreSQL 18 and Apache Kafka 4.4, both
started by infra as ``hero up --store postgres --broker kafka`` does, and selects only the
engine tests: every test under tests/integration and tests/e2e, except those marked
``embedded_only`` (about Tansu or SQLite themselves, or starting their own Kafka or PostgreSQL
already), which it reports skipped with their reason. A test marked ``production_only`` (the
failover tests: they kill PostgreSQL + Apache Kafka stacks' processes) runs in the production
pass only, on its servers, and the embedded pass reports it skipped with its reason. ``./run
test`` runs both passes.

Fixtures (keep the names: other test files build on them):

- ``engines``: "embedded" or "production".
- ``stack``: the session's full stack (:class:`tests._engines.RunningStack`) on the engines.
- ``broker_factory(port=None, *, start=True)``: a broker of the test's own, to kill and
  restart: Tansu, or Apache Kafka (which keeps its log across a restart, unlike Tansu).
- ``store_factory()``: an empty event store of the test's own (:class:`TestStore`: ``url``,
  ``open(clock)``, ``checkpoints()``, ``env()``): a SQLite file, or a fresh database on the
  session's one embedded PostgreSQL.

In the production pass HERO_STORE=postgres and HERO_BROKER=kafka are set for the whole
session, so every ``hero`` the e2e tests run, and every ``HeroSettings()``, uses them; a data
dir the CLI uses without a ``hero up`` gets a fresh database on the session's PostgreSQL
(:func:`tests._engines.provide_store`), as an external server would be given.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infra import BrokerProcess, KafkaProcess, LocalStack, ManagedProcess, configure_ray_client
from tests._engines import (
    ENGINES,
    PRODUCTION_ENV,
    SESSION,
    Engines,
    PostgresDatabases,
    ReachableTempPathFactory,
    RunningStack,
    TestStore,
    engines_of,
    kafka_missing,
    reachable_dir,
    stack_settings,
)

_ENGINE_DIRS = ("integration", "e2e")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--engines",
        choices=ENGINES,
        default=None,
        help="embedded: SQLite + Tansu (default, or HERO_TEST_ENGINES); production: "
        "PostgreSQL + Apache Kafka, and only the engine tests (integration, e2e)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "embedded_only(reason): runs in the embedded pass only (about Tansu or SQLite "
        "themselves, or it starts the production engines of its own already)",
    )
    config.addinivalue_line(
        "markers",
        "production_only(reason): runs in the production pass only, on its PostgreSQL and "
        "Apache Kafka (the failover tests)",
    )
    # The stacks of the tests run without a supervisor unless a test asks for one
    # (supervise=True; tests/integration/test_supervisor.py): the crash and failover tests
    # kill processes and drive the restarts themselves.
    os.environ.setdefault("HERO_SUPERVISE", "false")
    engines = engines_of(config)
    if engines == "production":
        missing = kafka_missing()
        if missing is not None:
            raise pytest.UsageError(f"--engines production: {missing}")
        os.environ.update({**PRODUCTION_ENV, **_kept(os.environ)})


def _kept(environ: os._Environ[str]) -> dict[str, str]:
    """A timeout the caller chose wins over the production pass's."""
    value = environ.get("HERO_UP_TIMEOUT_S")
    return {"HERO_UP_TIMEOUT_S": value} if value else {}


def pytest_report_header(config: pytest.Config) -> str:
    engines = engines_of(config)
    if engines == "production":
        return "engines: production (PostgreSQL 18 + Apache Kafka 4.4), engine tests only"
    return "engines: embedded (SQLite + Tansu)"


def _is_engine_test(item: pytest.Item) -> bool:
    parts = Path(str(item.path)).parts
    return any(part in parts for part in _ENGINE_DIRS) and "tests" in parts


def _reason(marker: pytest.Mark) -> str:
    return str(marker.kwargs.get("reason") or (marker.args[0] if marker.args else ""))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if engines_of(config) != "production":
        for item in items:
            marker = item.get_closest_marker("production_only")
            if marker is not None:
                reason = f"production pass only (--engines production): {_reason(marker)}"
                item.add_marker(pytest.mark.skip(reason=reason))
        return
    kept, dropped = [], []
    for item in items:
        (kept if _is_engine_test(item) else dropped).append(item)
        marker = item.get_closest_marker("embedded_only")
        if marker is not None:
            item.add_marker(pytest.mark.skip(reason=f"embedded pass only: {_reason(marker)}"))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def engines(pytestconfig: pytest.Config) -> Engines:
    return engines_of(pytestconfig)


@pytest.fixture(scope="session")
def tmp_path_factory(
    engines: Engines, tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[pytest.TempPathFactory]:
    """pytest's own, or in the production pass run as root one whose directories the
    PostgreSQL service user can pass through (the stacks' data dirs are in them), removed at
    the end of the session."""
    if engines != "production" or os.geteuid() != 0 or pytestconfig.option.basetemp:
        yield tmp_path_factory
        return
    base = reachable_dir("hero-tests-")
    yield ReachableTempPathFactory(
        given_basetemp=base / "pytest",
        retention_count=3,
        retention_policy="all",
        trace=pytestconfig.trace.get("tmpdir"),
        _ispytest=True,
    )
    shutil.rmtree(base, ignore_errors=True)


# Stands in for `python -m hero.relay` in tests about the launcher itself: it does what the
# launcher relies on -- writes run/relay.health with its pid -- and exits on SIGTERM.
STANDIN_RELAY = """\
import datetime, json, os, pathlib, signal, threading

run = pathlib.Path(os.environ["HERO_DATA_DIR"]) / "run"
if not os.environ.get("HERO_KAFKA_BOOTSTRAP"):
    raise SystemExit("HERO_KAFKA_BOOTSTRAP is not set")
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
while not stop.is_set():
    report = {
        "pid": os.getpid(),
        "position": 0,
        "updated_at": datetime.datetime.now(datetime.UTC).isoformat(),
    }
    partial = run / f"relay.health.{os.getpid()}"
    partial.write_text(json.dumps(report))
    partial.replace(run / "relay.health")
    stop.wait(0.5)
"""


def standin_relay_command(directory: Path) -> list[str]:
    script = directory / "standin_relay.py"
    script.write_text(STANDIN_RELAY)
    return [sys.executable, str(script)]


@pytest.fixture(scope="session")
def relay_standin(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A relay command that always works, for tests about the launcher itself."""
    return standin_relay_command(tmp_path_factory.mktemp("relay-standin"))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, engines: Engines) -> Iterator[RunningStack]:
    """The full stack on the session's engines, its agent hosts included: real agents over
    the shared store and broker (tests use ids of their own; their AgentClusters use actor
    name prefixes of their own)."""
    data_dir = tmp_path_factory.mktemp("hero-stack")
    base = stack_settings(data_dir, engines)
    launcher = LocalStack(base)
    report = launcher.up()
    try:
        endpoints = launcher.endpoints()
        # This process and its children can now ray.init(address=endpoints.ray_address).
        configure_ray_client(endpoints.ray_env)
        settings = base.model_copy(
            update={
                "kafka_bootstrap": endpoints.kafka_bootstrap,
                "redis_url": endpoints.redis_url,
                "ray_address": endpoints.ray_address,
                "store_url": endpoints.store_url,
            }
        )
        yield RunningStack(settings=settings, endpoints=endpoints, launcher=launcher, report=report)
    finally:
        launcher.down()


@pytest.fixture(scope="session")
def broker_factory(
    tmp_path_factory: pytest.TempPathFactory, engines: Engines
) -> Iterator[Callable[..., ManagedProcess]]:
    """Makes a broker of the test's own (to kill and restart); all are stopped at the end.
    On Apache Kafka a restart keeps the log, as it would in production."""
    created: list[ManagedProcess] = []

    def make(port: int | None = None, *, start: bool = True) -> ManagedProcess:
        directory = tmp_path_factory.mktemp("broker")
        broker: ManagedProcess
        if engines == "production":
            settings = stack_settings(directory, engines)
            broker = KafkaProcess(
                directory, port, kafka_home=settings.kafka_home, cache_dir=settings.cache_dir
            )
        else:
            broker = BrokerProcess(directory, port=port)
        created.append(broker)
        if start:
            broker.start(timeout=120)
        return broker

    yield make
    for broker in created:
        broker.stop()


@pytest.fixture(scope="session", autouse=True)
def _postgres_databases(engines: Engines) -> Iterator[PostgresDatabases | None]:
    if engines != "production":
        yield None
        return
    databases = PostgresDatabases()
    SESSION.databases = databases
    try:
        yield databases
    finally:
        SESSION.databases = None
        databases.close()


@pytest.fixture(scope="session")
def store_factory(
    tmp_path_factory: pytest.TempPathFactory, _postgres_databases: PostgresDatabases | None
) -> Callable[[], TestStore]:
    """Makes an empty event store of the test's own (see the module docstring)."""

    def make() -> TestStore:
        if _postgres_databases is not None:
            return TestStore(_postgres_databases.new())
        return TestStore(f"sqlite:///{tmp_path_factory.mktemp('store') / 'events.db'}")

    return make


__all__ = ["RunningStack", "TestStore"]
