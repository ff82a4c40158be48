"""The relay and ledger benchmarks' quick modes run on both stacks in one run: each starts its
own servers (Tansu, Apache Kafka, an embedded PostgreSQL) through the launcher, prints one
column per stack, and stops what it started. The negotiation benchmark's quick mode takes
over a minute (two whole stacks) and is not run here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hero.config import HeroSettings

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 180


def _missing() -> str | None:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "Apache Kafka needs Java 17+ (no java on the PATH, no JAVA_HOME)"
    if os.environ.get("HERO_KAFKA_HOME") or shutil.which("mvn") is not None:
        return None
    cached = HeroSettings().cache_dir.expanduser() / "kafka-4.4.0" / ".complete"
    return None if cached.is_file() else "no HERO_KAFKA_HOME, no Maven to fetch Kafka, no cache"


pytestmark = [
    pytest.mark.integration,
    pytest.mark.kafka,
    pytest.mark.embedded_only(reason="starts a PostgreSQL and an Apache Kafka of its own already"),
    pytest.mark.skipif(_missing() is not None, reason=_missing() or ""),
]


def _quick(script: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    print(done.stdout)
    return done.stdout


def _row(output: str, label: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.startswith(label))
    return [cell.strip() for cell in line.split("|")[1:]]


def test_the_relay_benchmark_quick_mode_prints_both_stacks() -> None:
    output = _quick("relay.py")
    header = _row(output, " ")
    assert header == ["SQLite + Tansu", "PostgreSQL + Kafka"]
    ratios = _row(output, "ratio relay/plain")
    assert all(re.fullmatch(r"\d+\.\d\d", ratio) and float(ratio) > 0 for ratio in ratios)


def test_the_ledger_benchmark_quick_mode_prints_both_stores_and_balanced_books() -> None:
    output = _quick("ledger.py")
    assert _row(output, " ") == ["SQLite", "PostgreSQL"]
    assert _row(output, "zero-sum") == ["ok", "ok"]
