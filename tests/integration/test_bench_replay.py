"""The replay benchmark (benchmarks/replay.py) at a small size, so it cannot rot: its seeded
generator makes a realistic log through the real store, and the whole run (raw read, rebuild
into a Valkey of its own, the baseline, the host's catch-up) prints every figure."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from hero.store import SqliteEventStore, decode_event

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


def _replay_log() -> ModuleType:
    """benchmarks/_replay_log.py by its path: the benchmarks are scripts, not a package, and
    putting their directory on sys.path would let their names shadow others."""
    spec = importlib.util.spec_from_file_location("_replay_log", BENCHMARKS / "_replay_log.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_log = _replay_log()
LOG_VERSION, generate, new_events = _log.LOG_VERSION, _log.generate, _log.new_events

#: One of each part of the market the issue asks the log to hold.
PARTS = {
    "fleet": {"FarmRegistered", "NodeRegistered", "FarmerPolicySet", "NodeStatusChanged"},
    "negotiations": {"RfqIssued", "OfferMade", "OfferDeclined", "OfferAccepted"},
    "holds": {"CapacityHeld", "HoldReleased"},
    "contracts": {"ContractCreated", "ContractCancelled", "NegotiationAwarded"},
    "usage": {"UsageRecorded"},
    "bills": {"UsageBilled"},
    "payments": {"FiatPaymentReceived", "QuoteIssued", "FiatConverted", "TransferPosted"},
    "scaling": {"ScaleDecided", "ReplicaPlaced", "ReplicaMigrated"},
}


def test_the_generator_is_seeded_and_holds_every_part_of_the_market() -> None:
    first = [(stream, e.id, e.type, e.payload) for stream, e in new_events(6000, seed=3)]
    again = [(stream, e.id, e.type, e.payload) for stream, e in new_events(6000, seed=3)]
    other = [(stream, e.id, e.type, e.payload) for stream, e in new_events(6000, seed=4)]
    assert first == again
    assert first != other
    assert [x[:3] for x in first[:3000]] == [  # a shorter log is a prefix of a longer one
        (stream, e.id, e.type) for stream, e in new_events(3000, seed=3)
    ]
    assert len(first) == 6000
    assert len({event_id for _, event_id, _, _ in first}) == 6000  # ids unique across copies
    types = Counter(kind for _, _, kind, _ in first)
    missing = {part: kinds - set(types) for part, kinds in PARTS.items() if kinds - set(types)}
    assert missing == {}


def test_a_generated_store_decodes_row_for_row(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "events.db", synchronous="OFF")
    try:
        assert generate(store, 2000, seed=1) == 2000
        rows = [row for rows in store.read_batches(1, 500) for row in rows]
    finally:
        store.close()
    assert [row.position for row in rows] == list(range(1, 2001))
    decoded = [decode_event(row) for row in rows]  # PoisonRow would fail the test
    assert len({envelope.stream for envelope, _ in decoded}) > 100


@pytest.mark.integration
def test_the_benchmark_runs_end_to_end_at_2000_events(tmp_path: Path) -> None:
    command = [
        sys.executable,
        str(BENCHMARKS / "replay.py"),
        "--events",
        "2000",
        "--baseline-events",
        "500",
        "--cache-dir",
        str(tmp_path),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    print(run.stdout)
    for figure in (
        "raw read, no decode",
        "raw read + validated decode",
        "raw read + trusted decode",
        "rebuild, every projection",
        "rebuild, in one process",
        "baseline: incremental projector, first 500",
        "host catch-up",
        "host restart-to-deciding, no snapshot",
    ):
        assert figure in run.stdout
    assert re.search(r"^events in the log +\| 2,000$", run.stdout, re.MULTILINE)
    # the host saved a snapshot on its catch-up, and a fresh host started from it
    assert re.search(r"^host restart-to-deciding, snapshot at [\d,]+ \((not )?compacted\) +"
                     r"\| [\d.]+ s \(0 events", run.stdout, re.MULTILINE)  # fmt: skip
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        f"events-2000-seed-1-v{LOG_VERSION}.db",
        f"events-500-seed-1-v{LOG_VERSION}.db",
    ]
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(cached)" in again.stdout
    assert "generated" not in again.stdout


@pytest.mark.integration
def test_the_benchmark_measures_the_rebuild_alone_when_asked(tmp_path: Path) -> None:
    command = [sys.executable, str(BENCHMARKS / "replay.py"), "--events", "1000",
               "--baseline-events", "200", "--cache-dir", str(tmp_path)]  # fmt: skip
    run = subprocess.run([*command, "--rebuild-only"], capture_output=True, text=True,
                         timeout=300, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert re.search(r"^rebuild, every projection +\| [\d,]+ events/s", run.stdout, re.MULTILINE)
    assert "host" not in run.stdout.replace("host restart-to-deciding <= 5 s", "")
    both = subprocess.run([*command, "--rebuild-only", "--host-only"], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert both.returncode == 2
    assert "--host-only and --rebuild-only" in both.stderr
