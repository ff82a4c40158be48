"""The relay and ledger benchmarks' quick modes run on both stacks in one run: each starts its
own servers (Tansu, Apache Kafka, an embedded PostgreSQL) through the launcher, prints one
column per stack, and stops what it started. The negotiation benchmark's quick mode takes
over a minute (two whole stacks) and is not run here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests._engines import kafka_missing

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 180


pytestmark = [
    pytest.mark.integration,
    pytest.mark.kafka,
    pytest.mark.embedded_only(reason="starts a PostgreSQL and an Apache Kafka of its own already"),
    pytest.mark.skipif(kafka_missing() is not None, reason=kafka_missing() or ""),
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
