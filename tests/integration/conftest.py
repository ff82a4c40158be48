"""Fixtures for tests that need the embedded stack: the same launcher a user runs (`hero up`)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hero.config import HeroSettings
from infra import BrokerProcess, Endpoints, LocalStack, UpReport, configure_ray_client

# Stands in for `python -m hero.relay` while that module does not exist yet: it does what the
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


@dataclass(frozen=True)
class RunningStack:
    """A stack started for the test session; ``settings`` points every piece at it."""

    settings: HeroSettings
    endpoints: Endpoints
    launcher: LocalStack
    report: UpReport


def standin_relay_command(directory: Path) -> list[str]:
    script = directory / "standin_relay.py"
    script.write_text(STANDIN_RELAY)
    return [sys.executable, str(script)]


def relay_command(directory: Path) -> list[str] | None:
    """None (the real relay) once hero/relay.py exists, the stand-in until then."""
    if importlib.util.find_spec("hero.relay") is not None:
        return None
    return standin_relay_command(directory)


@pytest.fixture(scope="session")
def relay_standin(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A relay command that always works, for tests about the launcher itself."""
    return standin_relay_command(tmp_path_factory.mktemp("relay-standin"))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The full stack, its agent hosts included: real agents over the shared store and broker
    (tests use ids of their own; their AgentClusters use actor name prefixes of their own)."""
    data_dir = tmp_path_factory.mktemp("hero-stack")
    base = HeroSettings(data_dir=data_dir)
    launcher = LocalStack(base, relay_command=relay_command(data_dir.parent))
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
            }
        )
        yield RunningStack(settings=settings, endpoints=endpoints, launcher=launcher, report=report)
    finally:
        launcher.down()


@pytest.fixture(scope="session")
def broker_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., BrokerProcess]]:
    """Makes a broker of the test's own (to kill and restart); all are stopped at the end."""
    created: list[BrokerProcess] = []

    def make(port: int | None = None, *, start: bool = True) -> BrokerProcess:
        broker = BrokerProcess(tmp_path_factory.mktemp("broker"), port=port)
        created.append(broker)
        if start:
            broker.start()
        return broker

    yield make
    for broker in created:
        broker.stop()
