"""API keys of the gateway, kept in Valkey: only a SHA-256 of each secret, never the secret.

A key reads ``hero_<key_id>_<secret>``: ``key_id`` (16 hex digits) names the record, the
secret is 32 bytes of :mod:`secrets` (URL-safe base64). The record is the hash
``<prefix>:apikey:<key_id>`` (role, tenants, secret hash, created/revoked times), and the set
``<prefix>:apikeys`` lists the ids. A revoked key stays listed, marked revoked, and never
verifies again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from hero.access import Principal, Role
from schemas.ids import FARM_ID_MAX, ID_MAX, OFFTAKER_ID_MAX, is_id

__all__ = [
    "DEFAULT_PREFIX",
    "ApiKeys",
    "KeyRecord",
    "KeyRefused",
    "check_tenants",
    "format_key",
    "hash_secret",
    "new_key",
    "parse_key",
]

DEFAULT_PREFIX = "hero"
KEY_SCHEME = "hero"
SECRET_BYTES = 32
_KEY_ID_HEX = 16
# A key's tenants are the ids its requests name: no longer than those may be.
_TENANT_MAX = {Role.FARMER: FARM_ID_MAX, Role.OFFTAKER: OFFTAKER_ID_MAX}
# Compared against when the key id is unknown, so that the answer takes as long either way.
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


class KeyRefused(Exception):
    """A presented key that does not authenticate; ``reason`` is a short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    role: Role
    tenants: tuple[str, ...]
    created_at: str
    revoked_at: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def principal(self) -> Principal:
        return Principal(key_id=self.key_id, role=self.role, tenants=frozenset(self.tenants))

    def as_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "role": self.role.value,
            "tenants": list(self.tenants),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


def new_key() -> tuple[str, str]:
    """A fresh ``(key_id, secret)``: 8 random bytes of id, 32 of secret."""
    return secrets.token_hex(_KEY_ID_HEX // 2), secrets.token_urlsafe(SECRET_BYTES)


def format_key(key_id: str, secret: str) -> str:
    return f"{KEY_SCHEME}_{key_id}_{secret}"


def parse_key(presented: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed key, else None."""
    scheme, _, rest = presented.strip().partition("_")
    key_id, _, secret = rest.partition("_")
    if scheme != KEY_SCHEME or len(key_id) != _KEY_ID_HEX or len(secret) < 32:
        return None
    if any(c not in "0123456789abcdef" for c in key_id):
        return None
    return key_id, secret


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_tenants(role: Role, tenants: Iterable[str]) -> tuple[str, ...]:
    """The tenants a key of ``role`` may carry, or ValueError: a farmer key names one or more
    farms, an offtaker key exactly one offtaker, developer and admin keys none."""
    unique = tuple(dict.fromkeys(tenants))
    bad = [t for t in unique if not is_id(t)]  # the whole string: no trailing newline
    if bad:
        raise ValueError(f"not an id: {', '.join(repr(t) for t in bad)}")
    longest = _TENANT_MAX.get(role, ID_MAX)
    if any(len(t) > longest for t in unique):
        raise ValueError(f"{role.value} ids have at most {longest} characters (schemas.ids)")
    if role == Role.FARMER and not unique:
        raise ValueError("a farmer key needs one or more farm ids (--tenant FARM)")
    if role == Role.OFFTAKER and len(unique) != 1:
        raise ValueError("an offtaker key needs exactly one offtaker id (--tenant OFFTAKER)")
    if role in (Role.DEVELOPER, Role.ADMIN) and unique:
        raise ValueError(f"a {role.value} key takes no tenants")
    return unique


class ApiKeys:
    """Create, verify, list and revoke keys in Valkey under ``prefix``."""

    def __init__(self, redis: Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self._redis = redis
        self._prefix = prefix

    def _key(self, key_id: str) -> str:
        return f"{self._prefix}:apikey:{key_id}"

    @property
    def _index(self) -> str:
        return f"{self._prefix}:apikeys"

    async def create(self, role: Role | str, tenants: Iterable[str] = ()) -> tuple[str, KeyRecord]:
        """A new key: ``(the key to hand over once, its record)``; ValueError for bad tenants."""
        role = Role(role)
        record = KeyRecord(
            key_id="",
            role=role,
            tenants=check_tenants(role, tenants),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        key_id, secret = new_key()  # 64 random bits of id: no clash to fear
        fields = {
            "hash": hash_secret(secret),
            "role": role.value,
            "tenants": json.dumps(list(record.tenants)),
            "created_at": record.created_at,
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(key_id), mapping=fields)  # type: ignore[arg-type]
            pipe.sadd(self._index, key_id)
            await pipe.execute()
        return format_key(key_id, secret), KeyRecord(
            key_id, role, record.tenants, record.created_at
        )

    async def authenticate(self, presented: str) -> Principal:
        """The key's holder, or KeyRefused (malformed_key, unknown_key, revoked_key)."""
        parsed = parse_key(presented)
        if parsed is None:
            raise KeyRefused("malformed_key", "an API key reads hero_<key id>_<secret>")
        key_id, secret = parsed
        fields = _fields(await self._redis.hgetall(self._key(key_id)))
        stored = fields.get("hash")
        matches = hmac.compare_digest(hash_secret(secret), stored or _DUMMY_HASH)
        if stored is None or "role" not in fields or not matches:
            raise KeyRefused("unknown_key", "no such API key")
        record = _record(key_id, fields)
        if record.revoked:
            raise KeyRefused("revoked_key", f"API key {key_id} was revoked at {record.revoked_at}")
        return record.principal()

    async def verify(self, presented: str) -> Principal | None:
        try:
            return await self.authenticate(presented)
        except KeyRefused:
            return None

    async def still_valid(self, key_id: str) -> KeyRefused | None:
        """Why the key ``key_id`` no longer authenticates (revoked, or its record gone), or
        None while it does. One HMGET: cheap enough for every open stream's heartbeat."""
        role, revoked_at = await self._redis.hmget(self._key(key_id), ["role", "revoked_at"])
        if role is None:
            return KeyRefused("key_revoked", f"API key {key_id} no longer exists")
        if revoked_at is not None:
            return KeyRefused("key_revoked", f"API key {key_id} was revoked at {_text(revoked_at)}")
        return None

    async def get(self, key_id: str) -> KeyRecord | None:
        fields = _fields(await self._redis.hgetall(self._key(key_id)))
        return _record(key_id, fields) if "role" in fields else None

    async def list(self) -> list[KeyRecord]:
        ids = sorted(_text(member) for member in await self._redis.smembers(self._index))
        records = [await self.get(key_id) for key_id in ids]
        return [record for record in records if record is not None]

    async def revoke(self, key_id: str) -> KeyRecord | None:
        """Mark the key revoked (kept in the list); None when there is no such key."""
        record = await self.get(key_id)
        if record is None:
            return None
        if not record.revoked:
            revoked_at = datetime.now(UTC).isoformat(timespec="seconds")
            await self._redis.hsetnx(self._key(key_id), "revoked_at", revoked_at)
        return await self.get(key_id)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _fields(raw: dict[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


def _record(key_id: str, fields: dict[str, str]) -> KeyRecord:
    return KeyRecord(
        key_id=key_id,
        role=Role(fields["role"]),
        tenants=tuple(json.loads(fields.get("tenants", "[]"))),
        created_at=fields.get("created_at", ""),
        revoked_at=fields.get("revoked_at"),
    )
