"""The telemetry spool: samples on disk until the usage worker has counted them.

Samples go straight to Kafka, not through the event store, and the embedded broker keeps its
log in memory: a broker restart loses every sample not yet consumed. So a publisher writes
each sample here first (store first, as the outbox does for events) and only then sends it;
the usage worker removes a sample once its window in Valkey holds it (or its hour is closed),
and sends again what the broker lost (``streams.redrive``). A SQLite file of its own, beside
the data dir's other files, so the event store's writers never wait on telemetry.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SampleSpool", "SpooledSample", "spool_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sample_id TEXT NOT NULL UNIQUE,
    contract_id TEXT NOT NULL,
    hour INTEGER NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    sent_at REAL NOT NULL
)
"""


def spool_path(data_dir: Path) -> Path:
    """Where a stack's publishers and its usage worker share their spool."""
    return Path(data_dir) / "telemetry" / "spool.db"


@dataclass(frozen=True, slots=True)
class SpooledSample:
    """A sample as sent (its record's key and value) and what finds its window."""

    sample_id: str
    contract_id: str
    hour: int
    """The epoch second its UTC hour starts at."""
    key: bytes
    value: bytes


class SampleSpool:
    """Samples in the order they were spooled; one is kept once (by sample id)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Publishers and the worker are separate processes: WAL lets them read while one writes.
        self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(_SCHEMA)
        self._conn.commit()
        self._lock = threading.Lock()

    def add(self, samples: Sequence[SpooledSample], sent_at: float) -> None:
        """Keep ``samples`` (one already kept stays as it is); on disk when this returns."""
        rows = [(s.sample_id, s.contract_id, s.hour, s.key, s.value, sent_at) for s in samples]
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT OR IGNORE INTO samples (sample_id, contract_id, hour, key, value, sent_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    def pending(self, after: int = 0, limit: int = 1000) -> list[tuple[int, float, SpooledSample]]:
        """Up to ``limit`` kept samples past sequence number ``after``, oldest first, each with
        its sequence number and when it was last sent."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, sent_at, sample_id, contract_id, hour, key, value FROM samples"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        return [
            (seq, sent_at, SpooledSample(sample_id, contract_id, hour, bytes(key), bytes(value)))
            for seq, sent_at, sample_id, contract_id, hour, key, value in rows
        ]

    def sent_again(self, sample_ids: Iterable[str], sent_at: float) -> None:
        with self._lock, self._conn:
            self._conn.executemany(
                "UPDATE samples SET sent_at = ? WHERE sample_id = ?",
                [(sent_at, sample_id) for sample_id in sample_ids],
            )

    def remove(self, sample_ids: Iterable[str]) -> None:
        """Forget samples the usage worker has counted."""
        with self._lock, self._conn:
            self._conn.executemany(
                "DELETE FROM samples WHERE sample_id = ?", [(i,) for i in sample_ids]
            )

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
