"""The PostgreSQL store's schema: versioned SQL files applied once each, and the few server
chores around them (connect, probe, create the database)."""

from __future__ import annotations

from importlib import resources

import psycopg
from psycopg import sql

from hero.store.port import StoreError

__all__ = [
    "Conn",
    "applied_migrations",
    "connect",
    "create_database",
    "migrate",
    "migrate_connection",
    "migrations",
    "server_answers",
]

#: Taken by :func:`migrate` so that processes starting together apply each file once.
_MIGRATION_LOCK = 0x4845524F  # "HERO"

Conn = psycopg.Connection[tuple[object, ...]]


def migrations() -> list[tuple[int, str, str]]:
    """The versioned schema files, in order: (version, name, SQL)."""
    found = []
    for entry in resources.files("hero.store.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql"):
            version = int(name.split("_", 1)[0])
            found.append((version, name, entry.read_text()))
    return sorted(found)


def applied_migrations(conn: Conn) -> list[int]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    return [int(str(row[0])) for row in conn.execute("SELECT version FROM schema_migrations")]


def migrate(url: str) -> list[str]:
    """Apply the schema files the database lacks; returns their names (empty: up to date)."""
    with connect(url) as conn:
        return migrate_connection(conn)


def migrate_connection(conn: Conn) -> list[str]:
    applied: list[str] = []
    if {version for version, _, _ in migrations()} <= set(applied_migrations(conn)):
        return applied  # up to date: no lock, no DDL (a user without CREATE may open it)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = set(applied_migrations(conn))
        for version, name, script in migrations():
            if version in done:
                continue
            conn.execute(script.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name)
            )
            applied.append(name)
    return applied


def server_answers(url: str, timeout: float = 2.0) -> bool:
    """True when a PostgreSQL server accepts this URL's login and answers a query."""
    try:
        with psycopg.connect(url, connect_timeout=max(1, round(timeout)), autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


_NOT_STARTED = "not_started=run_hero_up"


def create_database(admin_url: str, name: str) -> bool:
    """Create database ``name`` (a plain identifier) if missing; True when it was created."""
    if not name.isidentifier() or not name.isascii():
        raise StoreError(f"a database name must be a plain identifier, got {name!r}")
    with connect(admin_url) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def connect(url: str) -> Conn:
    if _NOT_STARTED in url:
        # HeroSettings' stand-in for the embedded server's URL before `hero up` wrote it:
        # libpq would only complain about the query parameter that marks it.
        raise StoreError(
            "the embedded PostgreSQL store under the data dir is not running (no run/"
            "postgres.url): run `hero up --store postgres`, or set HERO_STORE_URL"
        )
    try:
        return psycopg.connect(url, autocommit=True)
    except psycopg.Error as error:  # libpq's messages name host and port, never the password
        raise StoreError(f"cannot connect to the PostgreSQL store: {error}") from error
