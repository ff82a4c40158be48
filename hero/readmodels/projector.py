"""The read models in Valkey: a :class:`Projector` that folds the log into them, and the
:class:`ReadModels` the gateway queries.

Per projection ``NAME`` (``hero.readmodels.projections``), under a prefix (``hero`` by
default; a test uses one of its own):

* ``{prefix}:rm:NAME`` -- a hash, entity id -> the document as JSON;
* ``{prefix}:rm:NAME:position`` -- the last log position applied to it;
* ``{prefix}:rm:NAME:links`` -- a hash, alias -> JSON list of document ids (only for the
  projections whose events need one, such as a cancellation naming no workload);
* ``{prefix}:rm:NAME:live`` -- the generation being served, once a rebuild made one: then
  the three keys above are ``{prefix}:rm:NAME@GEN``, ``...@GEN:position``, ``...@GEN:links``.

A rebuild (``hero replay``) folds the whole log into a fresh generation nobody reads, then
points ``:live`` at it (every projection rebuilt, in one MULTI/EXEC) and deletes the old one.
A rebuild that fails half-way leaves the old generation serving and removes its own keys.
Readers (:class:`ReadModels`) and the following projector look ``:live`` up every time; the
projector also WATCHes it, so a write meant for a generation that was just replaced is
dropped, and the next pass folds into the new one.

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

from hero.model import HANDLERS, MarketState
from hero.model import apply as model_apply
from hero.model.snapshot import (
    MODEL_SCHEMA_VERSION,
    SnapshotUnreadable,
    decode_state,
    encode_state,
)
from hero.readmodels._rebuild import fold_log, write_folded
from hero.readmodels.projections import (
    PROJECTIONS,
    Doc,
    Projection,
    decode_doc,
    encode_doc,
    projection,
)
from hero.store import (
    READ_BATCH,
    EventStore,
    PoisonRow,
    RecordedEvent,
    SnapshotCadence,
    SnapshotKeeper,
    SnapshotStore,
    decode_event,
    skip_row,
)
from schemas import Envelope, Event

__all__ = [
    "DEFAULT_PREFIX",
    "SNAPSHOT_NAME",
    "SOURCE",
    "Projector",
    "ReadModels",
    "RebuildReport",
    "keys_for",
    "live_generations",
    "live_key",
    "live_keys",
    "model_snapshots",
]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "hero"
#: The name the projector's skipped rows are recorded under.
SOURCE = "read-models"
#: The name the projector's market model is snapshotted under (one for every projector of a
#: store: the model is a fold of the store alone, whatever the projections or the prefix).
SNAPSHOT_NAME = "projector"
_ATTEMPTS = 100  # WATCH failures in a row before giving up: a sign of a runaway writer


def model_snapshots(store: SnapshotStore, cadence: SnapshotCadence | None = None) -> SnapshotKeeper:
    """The keeper of the projectors' market model snapshots in ``store``."""
    return SnapshotKeeper(store, SNAPSHOT_NAME, MODEL_SCHEMA_VERSION, cadence)


@dataclass(frozen=True)
class _Keys:
    docs: str
    position: str
    links: str


def keys_for(name: str, prefix: str = DEFAULT_PREFIX, generation: str | None = None) -> _Keys:
    """The keys of projection ``name`` in ``generation`` (None: the one before any rebuild)."""
    base = f"{prefix}:rm:{name}" + (f"@{generation}" if generation else "")
    return _Keys(docs=base, position=f"{base}:position", links=f"{base}:links")


def live_key(name: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Where the generation served for ``name`` is named (absent: the first one)."""
    return f"{prefix}:rm:{name}:live"


async def live_generations(
    redis: Redis, names: Sequence[str], prefix: str
) -> dict[str, str | None]:
    raws = await redis.mget([live_key(n, prefix) for n in names])
    return {n: _text(raw) if raw is not None else None for n, raw in zip(names, raws, strict=True)}


async def live_keys(redis: Redis, name: str, prefix: str = DEFAULT_PREFIX) -> _Keys:
    """The keys of the generation of ``name`` being served now."""
    generation = (await live_generations(redis, [name], prefix))[name]
    return keys_for(name, prefix, generation)


class _Replaced(Exception):
    """The generation a write was meant for is no longer the live one: look it up again."""


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
    rows: Sequence[RecordedEvent], wanted: frozenset[str], store: EventStore, *, record: bool = True
) -> list[_Row]:
    """Decode only the rows some projection reads; the rest only move the positions. A row
    that does not decode is recorded as skipped and only moves the positions too."""
    out = []
    for row in rows:
        if row.type in wanted:
            try:
                envelope, event = decode_event(row)
            except PoisonRow as error:
                if record:
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

    def fold(self, model: MarketState) -> None:
        """Render from ``model`` (which has applied the batch) every document the relevant
        rows touch, each once, stamped with the last row touching it; ``links`` follow."""
        last: dict[str, int] = {}
        for envelope, event in self._relevant():
            keys = dict.fromkeys(self.projection.keys(envelope, event))
            for alias in self.projection.via(envelope, event):
                keys.update(dict.fromkeys(self.links.get(alias) or ()))
            for key in keys:
                last[key] = envelope.position
            self.links.update(self.projection.links(envelope, event))
        for key, position in last.items():
            self.docs[key] = self.projection.rendered(model, key, position)


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
        generation: str | None = None,
        snapshots: SnapshotKeeper | None = None,
        rebuild_batch: int = READ_BATCH,
        partition_from: int | None = None,
    ):
        """``generation`` pins the projector to one generation (what a rebuild fills);
        without it, it follows whichever generation is live. ``batch`` rows are applied per
        Valkey transaction when following; a rebuild reads ``rebuild_batch`` rows at a time,
        and folds the ledger in a second process from ``partition_from`` positions on
        (hero.readmodels._rebuild.PARTITION_FROM by default).
        With ``snapshots`` its market model starts from the newest snapshot (the log replayed
        only after it) and is saved there as the keeper's cadence says."""
        if batch < 1 or rebuild_batch < 1:
            raise ValueError(f"batches must be >= 1, got {batch} and {rebuild_batch}")
        self._rebuild_batch = rebuild_batch
        self._partition_from = partition_from
        self._store = store
        self._redis = redis
        self._prefix = prefix
        self._projections = list(projections or PROJECTIONS.values())
        self._wanted = frozenset().union(*(p.types for p in self._projections))
        # The market model every projection renders from: applied once per row, shared by
        # them all, and brought up to the rows given from the log on first use.
        self._model = MarketState()
        self._model_at = 0
        self._snapshots = snapshots
        self.model_rows = 0
        """Rows of the log folded into the model: after a snapshot, only the tail's."""
        self._wanted |= {t.__name__ for t in HANDLERS}
        self._batch = batch
        self._pinned = generation
        self.failing: str | None = None
        """Why the last pass of :meth:`run` failed (a fixed sentence; the log has the
        details), None once a pass succeeds."""
        self.conflicts = 0
        """Transactions refused because the position moved under them (then folded again)."""

    @property
    def names(self) -> list[str]:
        return [p.name for p in self._projections]

    async def _generations(self) -> dict[str, str | None]:
        if self._pinned is not None:
            return dict.fromkeys(self.names, self._pinned)
        return await live_generations(self._redis, self.names, self._prefix)

    async def positions(self) -> dict[str, int]:
        generations = await self._generations()
        keys = [
            keys_for(p.name, self._prefix, generations[p.name]).position for p in self._projections
        ]
        raws = await self._redis.mget(keys)
        return {p.name: _position(raw) for p, raw in zip(self._projections, raws, strict=True)}

    async def apply(self, rows: Sequence[RecordedEvent]) -> dict[str, int]:
        """Fold consecutive log ``rows`` into every projection still short of them; rows at
        or before a projection's position are skipped there. Returns the positions after."""
        if not rows:
            return await self.positions()
        decoded = _decoded(rows, self._wanted, self._store)
        await self._model_through(rows[0].position - 1)
        self._apply_model(decoded)
        for _ in range(_ATTEMPTS):
            generations = await self._generations()
            try:
                positions = {
                    p.name: await self._apply_one(p, decoded, generations[p.name])
                    for p in self._projections
                }
            except _Replaced:
                continue  # a rebuild swapped generations: fold into the new one
            await self._snapshot_if_due()
            return positions
        raise RuntimeError("read models: the live generation kept changing; gave up")

    def _apply_model(self, rows: Iterable[_Row]) -> None:
        for row in rows:
            if row.position <= self._model_at:
                continue
            if row.envelope is not None and row.event is not None:
                model_apply(self._model, row.envelope, row.event)
            self._model_at = row.position
            self.model_rows += 1

    async def _model_through(self, position: int) -> None:
        """Apply the log through ``position`` to the model (a projector started on documents
        others wrote), from the newest snapshot when there is one. Rows that do not decode
        were recorded by whoever first met them."""
        if self._model_at == 0 < position:
            await self._load_snapshot(position)
        while self._model_at < position:
            limit = min(self._batch, position - self._model_at)
            rows = await asyncio.to_thread(self._store.read_all, self._model_at + 1, limit)
            if not rows:
                return
            self._apply_model(_decoded(rows, self._wanted, self._store, record=False))

    async def _load_snapshot(self, at_most: int) -> None:
        """Start the model from the newest snapshot at or before ``at_most`` (the documents'
        position: a model ahead of them would render their later state too early)."""
        keeper = self._snapshots
        if keeper is None:
            return
        found = await asyncio.to_thread(keeper.newest, at_most)
        if found is None:
            return
        try:
            model = await asyncio.to_thread(decode_state, found.body)
        except SnapshotUnreadable as error:
            keeper.unreadable(found, str(error))
            return
        self._model, self._model_at = model, found.position
        keeper.started_from(found.position)
        log.info("read models: the market model starts from its snapshot at %d", found.position)

    async def _snapshot_if_due(self) -> None:
        """Save the model when the cadence says so: after the batch is written everywhere,
        so a snapshot is never ahead of the documents."""
        keeper = self._snapshots
        if keeper is None or not keeper.due(self._model_at):
            return
        # Off the loop (the gateway shares it); nothing else touches the model meanwhile:
        # this task is the one that folds into it, and it waits here.
        position = self._model_at
        body = await asyncio.to_thread(encode_state, self._model)
        await asyncio.to_thread(keeper.save, position, body)

    async def _apply_one(self, proj: Projection, rows: list[_Row], generation: str | None) -> int:
        keys = keys_for(proj.name, self._prefix, generation)
        for _ in range(_ATTEMPTS):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    return await self._attempt(pipe, proj, keys, rows, generation)
                except WatchError:
                    self.conflicts += 1
                    continue  # someone moved the position: fold again from theirs
        raise RuntimeError(f"read model {proj.name}: the position kept moving; gave up")

    async def _attempt(
        self,
        pipe: Pipeline,
        proj: Projection,
        keys: _Keys,
        rows: list[_Row],
        generation: str | None,
    ) -> int:
        if self._pinned is None:
            live = live_key(proj.name, self._prefix)
            await pipe.watch(keys.position, live)
            raw = await pipe.get(live)
            if (_text(raw) if raw is not None else None) != generation:
                raise _Replaced
        else:
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
        batch.fold(self._model)
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
        before looking again. A failure (a Valkey or store outage, a projection that raises)
        is logged, kept in :attr:`failing` for health, and retried: never fatal."""
        while not stop.is_set():
            try:
                await self.catch_up()
                self.failing = None
            except (RedisError, OSError) as error:
                self.failing = "Valkey or the event store does not answer"
                log.warning("read models: %s; retrying in %.1f s", error, poll_s)
            except Exception:  # a bug in a projection must not end the task: say so, retry
                self.failing = "a batch of the log could not be applied"
                log.exception("read models: applying the log failed; retrying in %.1f s", poll_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)

    async def rebuild(self, name: str | None = None) -> RebuildReport:
        """Fold projection ``name`` (all of this projector's for None) from the first event
        into a fresh generation, then make it the live one, for every projection at once,
        and delete the generation it replaces. Until that swap the old documents are served,
        and if the fold fails they stay: the fresh keys are removed and the error raised."""
        started = time.perf_counter()
        names = self.names if name is None else [projection(name).name]
        if name is not None and name not in self.names:
            raise ValueError(f"this projector does not run {name!r}")
        generation = f"g{await self._redis.incr(f'{self._prefix}:rm:generations')}"
        builder = Projector(
            self._store,
            self._redis,
            prefix=self._prefix,
            projections=[projection(n) for n in names],
            batch=self._batch,
            generation=generation,
            rebuild_batch=self._rebuild_batch,
            partition_from=self._partition_from,
        )
        try:
            positions = await builder._fold_fresh()
            counts = await builder._counts(generation)
            old = await self._swap(names, generation)
        except BaseException:
            await _delete_generation(self._redis, names, self._prefix, generation)
            raise
        await _delete_old(self._redis, self._prefix, old)
        return RebuildReport(
            positions={n: positions[n] for n in names},
            documents=counts,
            seconds=time.perf_counter() - started,
        )

    async def _fold_fresh(self) -> dict[str, int]:
        """Fill this (pinned, empty) generation from the whole log committed now: folded in
        memory and written once (see :mod:`hero.readmodels._rebuild`)."""
        assert self._pinned is not None, "only a rebuild's own generation is filled this way"
        target = await asyncio.to_thread(self._store.current_position)
        folded = await asyncio.to_thread(
            fold_log,
            self._store,
            self._projections,
            self._wanted,
            SOURCE,
            through=target,
            batch=self._rebuild_batch,
            partition_from=self._partition_from,
        )
        keys = [keys_for(p.name, self._prefix, self._pinned) for p in self._projections]
        await write_folded(
            self._redis,
            folded,
            [
                (p.name, k.docs, k.links, k.position)
                for p, k in zip(self._projections, keys, strict=True)
            ],
        )
        return dict.fromkeys(self.names, folded.position)

    async def _swap(self, names: list[str], generation: str) -> dict[str, str | None]:
        """Point every one of ``names`` at ``generation`` in one transaction; returns the
        generations they pointed at before."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.mget([live_key(n, self._prefix) for n in names])
            for each in names:
                pipe.set(live_key(each, self._prefix), generation)
            before, *_ = await pipe.execute()
        return {
            n: _text(raw) if raw is not None else None for n, raw in zip(names, before, strict=True)
        }

    async def _counts(self, generation: str | None) -> dict[str, int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for each in self.names:
                pipe.hlen(keys_for(each, self._prefix, generation).docs)
            counts = await pipe.execute()
        return {n: int(c) for n, c in zip(self.names, counts, strict=True)}


async def _delete_generation(
    redis: Redis, names: Sequence[str], prefix: str, generation: str | None
) -> None:
    keys = [keys_for(n, prefix, generation) for n in names]
    await redis.delete(*(k for each in keys for k in (each.docs, each.links, each.position)))


async def _delete_old(redis: Redis, prefix: str, old: dict[str, str | None]) -> None:
    for name, generation in old.items():
        await _delete_generation(redis, [name], prefix, generation)


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

    async def _keys(self, name: str) -> _Keys:
        """The keys of the live generation (UnknownProjection if there is no ``name``)."""
        return await live_keys(self._redis, projection(name).name, self._prefix)

    async def get(self, name: str, id: str) -> Doc | None:
        raw = await self._redis.hget((await self._keys(name)).docs, id)
        return decode_doc(raw) if raw is not None else None

    async def all(self, name: str, **equals: Any) -> list[Doc]:
        """Every document of ``name`` whose fields equal ``equals`` (all of them for none), by
        id; read in one HGETALL, so from one moment of the collection."""
        raw = await self._redis.hgetall((await self._keys(name)).docs)
        docs = (decode_doc(value) for _, value in sorted(raw.items(), key=lambda kv: _text(kv[0])))
        return [d for d in docs if all(d.get(k) == v for k, v in equals.items())]

    async def position(self, name: str) -> int:
        return _position(await self._redis.get((await self._keys(name)).position))
