"""A poison row, written straight into a store (SQLite or PostgreSQL) as an older, laxer
version wrote it.

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

import psycopg

from hero.store import is_postgres_url, sqlite_path_from_url
from hero.store.postgres import CHANNEL
from schemas import new_id

POISON_STREAM = "farm-x\n"


FARM_PAYLOAD = {
    "farm_id": "farm-x",
    "name": "Poison",
    "grid": "grid4",
    "country": "BE",
    "region": "europe",
}


def insert_poison_row(db: Path | str, stream: str = POISON_STREAM) -> int:
    """Append the poison row after the last one; returns its position. ``db``: a SQLite
    file, or a store URL (sqlite:/// or postgresql://)."""
    return insert_raw_row(db, stream, "FarmRegistered", "hero.reservations", FARM_PAYLOAD)


def insert_raw_row(
    db: Path | str, stream: str, type_name: str, topic: str, payload: dict[str, Any]
) -> int:
    """Append one row as given, unchecked (a payload its schema refuses makes a poison row
    on a well-formed stream); returns its position."""
    if isinstance(db, str) and is_postgres_url(db):
        return _insert_postgres(db, stream, type_name, topic, payload)
    path = sqlite_path_from_url(db) if isinstance(db, str) else db
    conn = sqlite3.connect(path)
    try:
        with conn:
            position = conn.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()[0]
            position += 1
            row = _row(position, stream, type_name, topic, payload)
            conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            conn.execute("INSERT INTO streams VALUES (?, 1)", (stream,))
    finally:
        conn.close()
    return int(position)


def _insert_postgres(
    url: str, stream: str, type_name: str, topic: str, payload: dict[str, Any]
) -> int:
    """As the PostgreSQL store appends: the log head's row locked, moved, and a NOTIFY."""
    with psycopg.connect(url) as conn, conn.transaction():
        head = conn.execute("SELECT position FROM log_head FOR UPDATE").fetchone()
        assert head is not None
        position = int(head[0]) + 1
        row = _row(position, stream, type_name, topic, payload)
        conn.execute("INSERT INTO events VALUES (%s, %s, %s, %s, %s, %s, %s)", row)
        conn.execute("INSERT INTO streams VALUES (%s, 1)", (stream,))
        conn.execute("UPDATE log_head SET position = %s", (position,))
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(position)))
    return position


def _row(
    position: int, stream: str, type_name: str, topic: str, payload: dict[str, Any]
) -> tuple[Any, ...]:
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
    envelope_json = json.dumps(envelope, separators=(",", ":"))
    return (position, stream, 1, event_id, type_name, topic, envelope_json)
