"""The relay's lease on PostgreSQL: a session advisory lock on a connection of its own.

The lock lives as long as the session: PostgreSQL drops it when the connection ends, also
when the holder is killed (the server sees the socket close). ``held`` asks the server on that
connection, bounded by a timeout, so a holder whose session died (network, server restart)
learns it lost the lease instead of publishing beside the next holder. Advisory locks are
per database: each store has its own relay lease.
"""

from __future__ import annotations

import hashlib
import logging

import psycopg

from hero.store.lease import RelayLease, check_lease_name
from hero.store.port import StoreError

__all__ = ["PostgresLease", "lease_key"]

log = logging.getLogger(__name__)

# Bounds a check of a session that no longer answers (a half-open TCP connection).
_CHECK_TIMEOUT_MS = 2000
_CONNECT_TIMEOUT_S = 5


def lease_key(name: str) -> int:
    """The advisory lock's 64-bit key for a lease name (stable across processes)."""
    digest = hashlib.sha256(f"hero.lease:{check_lease_name(name)}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresLease(RelayLease):
    def __init__(self, url: str, name: str = "relay"):
        self._url = url
        self._key = lease_key(name)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        try:
            return psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=_CONNECT_TIMEOUT_S,
                options=f"-c statement_timeout={_CHECK_TIMEOUT_MS}",
                # A dead peer is noticed within seconds, not after the kernel's two hours.
                keepalives=1,
                keepalives_idle=2,
                keepalives_interval=1,
                keepalives_count=3,
                application_name="hero-relay-lease",
            )
        except psycopg.Error as error:  # libpq's messages name host and port, never a password
            raise StoreError(f"cannot connect to the PostgreSQL store: {error}") from error

    def try_acquire(self) -> bool:
        if self._conn is not None and self.held():
            return True
        self._drop()
        conn = self._connect()
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        except psycopg.Error:
            conn.close()
            raise
        if row is None or row[0] is not True:
            conn.close()
            return False
        self._conn = conn
        return True

    def held(self) -> bool:
        conn = self._conn
        if conn is None or conn.closed:
            return False
        try:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid() AND database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())"
                " AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = %s",
                (self._key,),
            ).fetchone()
        except psycopg.Error:
            self._drop()
            return False
        return row is not None and int(str(row[0])) > 0

    def release(self) -> None:
        conn = self._conn
        if conn is not None and not conn.closed:
            try:
                conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
            except psycopg.Error:
                log.info("releasing the lease: its session is already gone, and the lock with it")
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
