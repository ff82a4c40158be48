"""The read models in Valkey: a :class:`Projector` that folds the log into them, and the
:class:`ReadModels` the gateway queries.

Per projection ``NAME`` (``hero.readmodels.projections``), under a prefix (``hero`` by
default; a test uses one of its own):

* ``{prefix}:rm:NAME`` -- a hash, entity id -> the document as JSON;
* ``{prefix}:rm:NAME:position`` -- the last log position applied to it;
* ``{prefix}:rm:NAME:links`` -- a hash, alias -> JSON list of document ids (only for the
  projections whose events need one, such as a cancellation naming no workload).

The position is written in the same MULTI/EXEC as the documents, under WATCH of the position
key: if anyone else (another projector, a rebuild) moved it in between, nothing is written,
and the batch is folded again on fresh documents from the new position. So the position is
never ahead of the documents, an event is applied once however often it is delivered, and
two projectors racing on the same keys end where one would. The store is read in a thread:
its adapters are synchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, WatchError

from hero.readmodels.projections import (
    PROJECTIONS,
    Doc,
    Projection,
    decode_doc,
    encode_doc,
    projection,
)
from hero.store import EventStore, PoisonRow, RecordedEvent, decode_event, skip_row
from schemas import Envelope, Event

__all__ = ["DEFAULT_PREFIX", "Projector", "ReadModels", "RebuildReport", "keys_for"]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "hero"
#: The name the projector's skipped rows are recorded under.
SOURCE = "read-models"
_ATTEMPTS = 100  # WATCH failures in a row before giving up: a sign of a runaway writer


@dataclass(frozen=True)
class _Keys:
    docs: str
    position: str
    links: str


def keys_for(name: str, prefix: str = DEFAULT_PREFIX) -> _Keys:
    base = f"{prefix}:rm:{name}"
    return _Keys(docs=base, position=f"{base}:position", links=f"{base}:links")


@dataclass(frozen=True)
class _Row:
    """A row of the log, decoded once for every projection that reads its type."""

    position: int
    type: str
    envelope: Envelope | None
    event: Event | None


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild reached: per projection its position and how many documents it holds."""

    positions: dict[str, int]
    documents: dict[str, int]
    seconds: float


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _position(raw: Any) -> int:
    return int(_text(raw)) if raw is not None else 0


def _decoded(
    rows: Sequence[RecordedEvent], wanted: frozenset[str], store: EventStore
) -> list[_Row]:
    """Decode only the rows some projection reads; the rest only move the positions. A row
    that does not decode is recorded as skipped and only moves the positions too."""
    out = []
    for row in rows:
        if row.type in wanted:
            try:
                envelope, event = decode_event(row)
            except PoisonRow as error:
                skip_row(store, SOURCE, row, error)
            else:
                out.append(_Row(row.position, row.type, envelope, event))
                continue
        out.append(_Row(row.position, row.type, None, None))
    return out


@dataclass
class _Batch:
    """One projection's share of a batch, folded in memory before it is written."""

    projection: Projection
    rows: list[_Row]
    docs: dict[str, Doc | None] = field(default_factory=dict)
    links: dict[str, tuple[str, ...] | None] = field(default_factory=dict)

    def aliases(self) -> list[str]:
        found: dict[str, None] = {}
        for row in self._relevant():
            found.update(dict.fromkeys(self.projection.via(*row)))
        return list(found)

    def _relevant(self) -> Iterable[tuple[Envelope, Event]]:
        for row in self.rows:
            if row.type in self.projection.types and row.envelope and row.event:
                yield row.envelope, row.event

    def touched(self) -> list[str]:
        """Every document the batch touches, resolving links as the batch itself moves them."""
        links = dict(self.links)
        keys: dict[str, None] = {}
        for envelope, event in self._relevant():
            keys.update(dict.fromkeys(self.projection.keys(envelope, event)))
            for alias in self.projection.via(envelope, event):
                keys.update(dict.fromkeys(links.get(alias) or ()))
            links.update(self.projection.links(envelope, event))
        return list(keys)

    def fold(self) -> None:
        """Reduce every relevant row, in order, over ``docs`` and ``links`` (both loaded)."""
        for envelope, event in self._relevant():
            keys = dict.fromkeys(self.projection.keys(envelope, event))
            for alias in self.projection.via(envelope, event):
                keys.update(dict.fromkeys(self.links.get(alias) or ()))
            for key in keys:
                self.docs[key] = self.projection.reduce(key, self.docs.get(key), envelope, event)
            self.links.update(self.projection.links(envelope, event))


class Projector:
    """Folds the log into the read models of ``projections`` (all of them by default)."""

    def __init__(
        self,
        store: EventStore,
        redis: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        projections: Iterable[Projection] | None = None,
        batch: int = 500,
    ):
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self._store = store
        self._redis = redis
        self._prefix = prefix
        self._projections = list(projections or PROJECTIONS.values())
        self._wanted = frozenset().union(*(p.types for p in self._projections))
        self._batch = batch
        self.conflicts = 0
        """Transactions refused because the position moved under them (then folded again)."""

    @property
    def names(self) -> list[str]:
        return [p.name for p in self._projections]

    async def positions(self) -> dict[str, int]:
        keys = [keys_for(p.name, self._prefix).position for p in self._projections]
        raws = await self._redis.mget(keys)
        return {p.name: _position(raw) for p, raw in zip(self._projections, raws, strict=True)}

    async def apply(self, rows: Sequence[RecordedEvent]) -> dict[str, int]:
        """Fold consecutive log ``rows`` into every projection still short of them; rows at
        or before a projection's position are skipped there. Returns the positions after."""
        if not rows:
            return await self.positions()
        decoded = _decoded(rows, self._wanted, self._store)
        return {p.name: await self._apply_one(p, decoded) for p in self._projections}

    async def _apply_one(self, proj: Projection, rows: list[_Row]) -> int:
        keys = keys_for(proj.name, self._prefix)
        for _ in range(_ATTEMPTS):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    return await self._attempt(pipe, proj, keys, rows)
                except WatchError:
                    self.conflicts += 1
                    continue  # someone moved the position: fold again from theirs
        raise RuntimeError(f"read model {proj.name}: the position kept moving; gave up")

    async def _attempt(
        self, pipe: Pipeline, proj: Projection, keys: _Keys, rows: list[_Row]
    ) -> int:
        await pipe.watch(keys.position)
        position = _position(await pipe.get(keys.position))
        batch = _Batch(proj, [r for r in rows if r.position > position])
        if not batch.rows:
            return position
        aliases = batch.aliases()
        if aliases:
            raws = await pipe.hmget(keys.links, aliases)
            batch.links = {a: _alias(raw) for a, raw in zip(aliases, raws, strict=True)}
        touched = batch.touched()
        if touched:
            raws = await pipe.hmget(keys.docs, touched)
            batch.docs = {
                k: decode_doc(r) if r else None for k, r in zip(touched, raws, strict=True)
            }
        before = {k: encode_doc(d) if d is not None else None for k, d in batch.docs.items()}
        before_links = dict(batch.links)
        batch.fold()
        end = batch.rows[-1].position
        pipe.multi()  # type: ignore[no-untyped-call]
        _write_docs(pipe, keys.docs, before, batch.docs)
        _write_links(pipe, keys.links, before_links, batch.links)
        pipe.set(keys.position, end)
        await pipe.execute()
        return end

    async def catch_up(self) -> dict[str, int]:
        """Apply everything committed up to now (the store's position at the call), once."""
        target = await asyncio.to_thread(self._store.current_position)
        positions = await self.positions()
        while positions and min(positions.values()) < target:
            start = min(positions.values())
            rows = await asyncio.to_thread(self._store.read_all, start + 1, self._batch)
            if not rows:
                break
            positions = await self.apply(rows)
        return positions

    async def run(self, stop: asyncio.Event, poll_s: float = 0.2) -> None:
        """Follow the log until ``stop`` is set: catch up, then wait ``poll_s`` (or the stop)
        before looking again. A Valkey or store outage is logged and retried, not fatal."""
        while not stop.is_set():
            try:
                await self.catch_up()
            except (RedisError, OSError) as error:
                log.warning("read models: %s; retrying in %.1f s", error, poll_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)

    async def rebuild(self, name: str | None = None) -> RebuildReport:
        """Wipe projection ``name`` (all of this projector's for None), documents and position
        in one transaction, then catch up. The wipe moves the position key, so a projector
        racing with it starts over too rather than writing into the empty collection."""
        started = time.perf_counter()
        names = self.names if name is None else [projection(name).name]
        if name is not None and name not in self.names:
            raise ValueError(f"this projector does not run {name!r}")
        async with self._redis.pipeline(transaction=True) as pipe:
            for each in names:
                keys = keys_for(each, self._prefix)
                pipe.delete(keys.docs, keys.links, keys.position)
            await pipe.execute()
        positions = await self.catch_up()
        counts = await self._counts(names)
        return RebuildReport(
            positions={n: positions[n] for n in names},
            documents=counts,
            seconds=time.perf_counter() - started,
        )

    async def _counts(self, names: list[str]) -> dict[str, int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for each in names:
                pipe.hlen(keys_for(each, self._prefix).docs)
            counts = await pipe.execute()
        return {n: int(c) for n, c in zip(names, counts, strict=True)}


def _alias(raw: Any) -> tuple[str, ...] | None:
    return tuple(str(v) for v in json.loads(raw)) if raw is not None else None


def _write_docs(
    pipe: Pipeline, key: str, before: dict[str, str | None], after: dict[str, Doc | None]
) -> None:
    """Only the documents that changed: a batch of no-ops writes nothing but the position."""
    upserts: dict[str, str] = {}
    deletes: list[str] = []
    for doc_id, doc in after.items():
        encoded = encode_doc(doc) if doc is not None else None
        if encoded == before.get(doc_id):
            continue
        if encoded is None:
            deletes.append(doc_id)
        else:
            upserts[doc_id] = encoded
    if upserts:
        pipe.hset(key, mapping=upserts)  # type: ignore[arg-type]
    if deletes:
        pipe.hdel(key, *deletes)


def _write_links(
    pipe: Pipeline,
    key: str,
    before: dict[str, tuple[str, ...] | None],
    after: dict[str, tuple[str, ...] | None],
) -> None:
    upserts = {
        alias: json.dumps(list(value), separators=(",", ":"))
        for alias, value in after.items()
        if value is not None and value != before.get(alias)
    }
    deletes = [alias for alias, value in after.items() if value is None]  # HDEL of none is fine
    if upserts:
        pipe.hset(key, mapping=upserts)  # type: ignore[arg-type]
    if deletes:
        pipe.hdel(key, *deletes)


class ReadModels:
    """Queries over the stored documents: what the gateway calls."""

    def __init__(self, redis: Redis, prefix: str = DEFAULT_PREFIX):
        self._redis = redis
        self._prefix = prefix

    def _keys(self, name: str) -> _Keys:
        return keys_for(projection(name).name, self._prefix)  # UnknownProjection if none

    async def get(self, name: str, id: str) -> Doc | None:
        raw = await self._redis.hget(self._keys(name).docs, id)
        return decode_doc(raw) if raw is not None else None

    async def all(self, name: str, **equals: Any) -> list[Doc]:
        """Every document of ``name`` whose fields equal ``equals`` (all of them for none), by
        id; read in one HGETALL, so from one moment of the collection."""
        raw = await self._redis.hgetall(self._keys(name).docs)
        docs = (decode_doc(value) for _, value in sorted(raw.items(), key=lambda kv: _text(kv[0])))
        return [d for d in docs if all(d.get(k) == v for k, v in equals.items())]

    async def position(self, name: str) -> int:
        return _position(await self._redis.get(self._keys(name).position))
