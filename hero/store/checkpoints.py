"""Where the relay remembers the last position the broker confirmed."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from pathlib import Path

from hero.store.sqlite import WriteLock, connect, write_transaction

__all__ = ["CheckpointStore", "MemoryCheckpointStore", "SqliteCheckpointStore"]


class CheckpointStore(ABC):
    @abstractmethod
    def load(self, name: str) -> int:
        """The saved position for ``name``; 0 when none was saved."""

    @abstractmethod
    def save(self, name: str, position: int) -> None: ...


class MemoryCheckpointStore(CheckpointStore):
    def __init__(self) -> None:
        self._positions: dict[str, int] = {}

    def load(self, name: str) -> int:
        return self._positions.get(name, 0)

    def save(self, name: str, position: int) -> None:
        self._positions[name] = position


class SqliteCheckpointStore(CheckpointStore):
    """Kept in the event store's own file, so a store and its relay move together."""

    def __init__(self, path: Path | str):
        self._conn = connect(Path(path))
        self._lock = threading.Lock()
        self._write_lock = WriteLock(Path(path))

    def load(self, name: str) -> int:
        with self._lock:
            row = self._conn.execute("SELECT position FROM checkpoints WHERE name = ?", (name,))
            found = row.fetchone()
        return int(found[0]) if found else 0

    def save(self, name: str, position: int) -> None:
        with self._lock, write_transaction(self._conn, self._write_lock) as conn:
            conn.execute(
                "INSERT INTO checkpoints (name, position) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (name, position),
            )

    def close(self) -> None:
        self._conn.close()
