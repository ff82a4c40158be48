"""A poison row, written straight into a SQLite store as an older, laxer version wrote it.

After the fix the store refuses such a row at the door, so a test that needs one in the log
inserts it with SQL: a ``FarmRegistered`` on the stream ``"farm-x\\n"`` (a trailing newline
that ``re``'s ``$`` let through), which no longer validates when it is read back.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas import new_id

POISON_STREAM = "farm-x\n"


FARM_PAYLOAD = {
    "farm_id": "farm-x",
    "name": "Poison",
    "grid": "grid4",
    "country": "BE",
    "region": "europe",
}


def insert_poison_row(db: Path, stream: str = POISON_STREAM) -> int:
    """Append the poison row after the last one; returns its position."""
    return insert_raw_row(db, stream, "FarmRegistered", "hero.reservations", FARM_PAYLOAD)


def insert_raw_row(
    db: Path, stream: str, type_name: str, topic: str, payload: dict[str, Any]
) -> int:
    """Append one row as given, unchecked (a payload its schema refuses makes a poison row
    on a well-formed stream); returns its position."""
    conn = sqlite3.connect(db)
    try:
        with conn:
            position = conn.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()[0]
            position += 1
            now = datetime.now(UTC).isoformat()
            event_id = new_id("evt")
            envelope = {
                "id": event_id,
                "type": type_name,
                "schema_version": 1,
                "stream": stream,
                "version": 1,
                "position": position,
                "occurred_at": now,
                "recorded_at": now,
                "causation_id": None,
                "correlation_id": None,
                "actor": "cli",
                "payload": payload,
            }
            conn.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    position,
                    stream,
                    1,
                    event_id,
                    type_name,
                    topic,
                    json.dumps(envelope, separators=(",", ":")),
                ),
            )
            conn.execute("INSERT INTO streams VALUES (?, 1)", (stream,))
    finally:
        conn.close()
    return int(position)
