"""A rebuild's fold: the whole log into one market model in memory, then every document once.

The incremental projector reads each batch's documents and links from Valkey, renders them
and writes them back, a few round trips per batch; a rebuild starts from nothing, so none of
that is needed. Here the log is read in large batches, each row decoded once and applied to
one :class:`~hero.model.MarketState` (the trusted way, :func:`hero.store.trusted_decoder`;
rows of a type no projection nor the model reads are not decoded at all); per projection
only *which* documents the rows touch (and the last position touching each) is tracked,
with the links as the rows move them. At the end each touched document is rendered once
from the model, and everything is written pipelined, in large chunks, into the generation
the rebuild fills. Nobody reads that generation before the swap, so writing it in several
pipelines is safe.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields

from redis.asyncio import Redis

from hero.model import (
    HOLDS,
    LEDGER,
    MarketState,
    join_parts,
    part_apply,
    part_types,
    seen_types,
)
from hero.model import apply as model_apply
from hero.model.gcpause import collections_paused
from hero.readmodels.projections import Doc, Projection, encode_doc, projection
from hero.store import (
    READ_BATCH,
    EventStore,
    PoisonRow,
    RecordedEvent,
    open_store,
    skip_row,
    trusted_decoder,
)
from schemas import Envelope, Event

__all__ = ["PARTITION_FROM", "Folded", "fold_away", "fold_log", "write_folded"]

log = logging.getLogger(__name__)


class _AwayFailed(RuntimeError):
    """The rebuild's second process ended without its fold (its error is on stderr)."""


#: Hash fields per HSET when writing: a few MB per command at most.
_WRITE_CHUNK = 5000


@dataclass
class _Touched:
    """One projection's share of the fold: the documents touched, and its links."""

    projection: Projection
    last: dict[str, int] = field(default_factory=dict)
    links: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    aliased: bool = field(init=False)
    """Whether the projection has links at all (most have none: no calls per row then)."""

    def __post_init__(self) -> None:
        self.aliased = self.projection.via is not _NO_VIA or self.projection.links is not _NO_LINKS


_DEFAULTS = {f.name: f.default for f in fields(Projection)}
_NO_VIA, _NO_LINKS = _DEFAULTS["via"], _DEFAULTS["links"]


@dataclass
class Folded:
    """The fold of the log through ``position``: the model, and per projection its touched
    documents (key -> last position touching it) and links."""

    model: MarketState
    position: int
    touched: dict[str, _Touched]

    def documents(self, name: str) -> dict[str, Doc]:
        """Projection ``name``'s documents as the model has them (deleted ones left out)."""
        share = self.touched[name]
        rendered = (
            (key, share.projection.rendered(self.model, key, at)) for key, at in share.last.items()
        )
        return {key: doc for key, doc in rendered if doc is not None}

    def links(self, name: str) -> dict[str, tuple[str, ...]]:
        return {a: v for a, v in self.touched[name].links.items() if v is not None}


#: From this many positions on, a rebuild folds some parts of the model in a second
#: process: below it, starting that process costs more than it saves.
PARTITION_FROM = 40_000

#: The parts of the model the second process folds: the ledger's transfers are about 45%
#: of a long log's fold and the holds about 10%, which with the rendering left to this
#: process evens the two out; their state (balances, books, matched transfer ids, the holds
#: not yet taken) is small to send back, unlike the negotiations' or the usage facts' (see
#: hero.model.parts).
AWAY = (LEDGER, HOLDS)
_AWAY_TYPES = part_types(AWAY)
"""The events only the second process applies (this one does not read them)."""
_AWAY_READS = seen_types(AWAY)
"""What the second process reads: those, and the events of the rest it also sees."""


def fold_log(
    store: EventStore,
    projections: Sequence[Projection],
    wanted: frozenset[str],
    source: str,
    *,
    through: int,
    batch: int = READ_BATCH,
    partition_from: int | None = None,
) -> Folded:
    """Fold the log through position ``through`` (blocking: run it in a thread). A row of a
    ``wanted`` type that does not decode is recorded as skipped under ``source``.

    From ``partition_from`` positions on (:data:`PARTITION_FROM` by default), and when
    another process can open the store, the events of the parts :data:`AWAY` are folded by
    a second process, each process reading only its own rows from the store, and those
    parts of the model and of the touched documents come back once at the end: the same
    result as one fold, on two cores (the model's parts touch disjoint state,
    :mod:`hero.model.parts`)."""
    least = PARTITION_FROM if partition_from is None else partition_from
    url = store.reader_url() if through >= least else None
    split = _away_split(projections, wanted) if url is not None else None
    if url is not None and split is not None:
        try:
            return _fold_split(store, url, projections, split, wanted, source, through, batch)
        except (_AwayFailed, OSError) as error:  # no second process: one does it all
            log.warning("rebuild: the second process failed (%r); folding in one", error)
    shares = {p.name: _Touched(p) for p in projections}
    model = MarketState()
    with collections_paused():
        rows = store.read_batches(1, batch, through)
        position = _fold_rows(store, rows, model_apply, model, _readers(shares), wanted, source)
    return Folded(model, position, shares)


def _fold_split(
    store: EventStore,
    url: str,
    projections: Sequence[Projection],
    split: list[_Touched],
    wanted: frozenset[str],
    source: str,
    through: int,
    batch: int,
) -> Folded:
    """:func:`fold_log` on two processes, the second one folding the parts :data:`AWAY`."""
    shares = {p.name: _Touched(p) for p in projections}
    model = MarketState()
    names = [share.projection.name for share in split]
    worker = subprocess.Popen(
        [sys.executable, "-m", "hero.readmodels._fold_away"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert worker.stdin is not None
        assert worker.stdout is not None
        worker.stdin.write(pickle.dumps((url, names, wanted, source, through, batch)))
        worker.stdin.close()
        with collections_paused():
            rows = store.read_typed_batches(_AWAY_TYPES, exclude=True, batch=batch, through=through)
            position = _fold_rows(store, rows, model_apply, model, _readers(shares), wanted, source)
            sent = worker.stdout.read()
            if worker.wait() != 0:
                raise _AwayFailed(f"it exited with {worker.returncode}")
            away, touched, last = pickle.loads(sent)  # our own child's
            join_parts(model, away, AWAY)
            _join_touched(shares, touched)
    finally:
        if worker.poll() is None:  # this fold failed: its second process is of no use
            worker.kill()
            worker.wait()
    return Folded(model, max(position, last), shares)


def _readers(
    shares: dict[str, _Touched], only: frozenset[str] | None = None
) -> dict[str, list[_Touched]]:
    readers: dict[str, list[_Touched]] = {}
    for share in shares.values():
        for kind in share.projection.types if only is None else share.projection.types & only:
            readers.setdefault(kind, []).append(share)
    return readers


def _away_split(projections: Sequence[Projection], wanted: frozenset[str]) -> list[_Touched] | None:
    """The shares the second process touches (the projections reading an event of
    :data:`AWAY`), or None when the fold cannot be split: none of those events is wanted, a
    projection is not the registered one of its name (the other process knows projections
    by name only), or one reading those events has links (moved by the events of both
    processes, in log order)."""
    if not wanted & _AWAY_TYPES:
        return None
    split = []
    for each in projections:
        if not each.types & _AWAY_TYPES:
            continue
        share = _Touched(each)
        if share.aliased or _registered(each.name) is not each:
            return None
        split.append(share)
    return split


def _registered(name: str) -> Projection | None:
    try:
        return projection(name)
    except LookupError:
        return None


_Away = tuple[MarketState, dict[str, dict[str, int]], int]


def fold_away(
    url: str, names: list[str], wanted: frozenset[str], source: str, through: int, batch: int
) -> _Away:
    """The second process: the parts :data:`AWAY` folded from the store into a model of
    their own, the documents of ``names`` their events touch (key -> last position: the
    events they also see are this process's to touch), and the position of the last row
    read."""
    store = open_store(url)
    shares = {n: _Touched(projection(n)) for n in names}
    model = MarketState()
    apply = part_apply(AWAY)
    readers = _readers(shares, _AWAY_TYPES)
    with collections_paused():
        rows = store.read_typed_batches(_AWAY_READS, batch=batch, through=through)
        position = _fold_rows(store, rows, apply, model, readers, wanted, source)
    return model, {n: s.last for n, s in shares.items()}, position


def _join_touched(shares: dict[str, _Touched], touched: dict[str, dict[str, int]]) -> None:
    """The second process's touched documents into ``shares``: a document touched by both
    processes keeps the later position (linkless projections only: see _away_split)."""
    for name, last in touched.items():
        mine = shares[name].last
        for key, at in last.items():
            if mine.get(key, 0) < at:
                mine[key] = at


def _fold_rows(
    store: EventStore,
    batches: Iterable[list[RecordedEvent]],
    apply: Callable[[MarketState, Envelope, Event], None],
    model: MarketState,
    readers: dict[str, list[_Touched]],
    wanted: frozenset[str],
    source: str,
) -> int:
    position = 0
    decode = trusted_decoder()  # our store validated every row on append
    for rows in batches:
        position = rows[-1].position
        for row in rows:
            kind = row.type
            if kind not in wanted:
                continue
            try:
                envelope, event = decode(row)
            except PoisonRow as error:
                skip_row(store, source, row, error)
                continue
            apply(model, envelope, event)
            for share in readers.get(kind, ()):
                _touch(share, envelope, event)
    return position


def _touch(share: _Touched, envelope: Envelope, event: Event) -> None:
    """As the incremental projector's batch does: the event's own keys, and the documents
    its aliases point at before the event moves them."""
    proj, links, last = share.projection, share.links, share.last
    position = envelope.position
    for key in proj.keys(envelope, event):
        last[key] = position
    if not share.aliased:
        return
    for alias in proj.via(envelope, event):
        for key in links.get(alias) or ():
            last[key] = position
    links.update(proj.links(envelope, event))


async def write_folded(
    redis: Redis, folded: Folded, keys: Iterable[tuple[str, str, str, str]]
) -> None:
    """Write every projection's documents, links and position: ``keys`` gives per projection
    (name, documents key, links key, position key). Pipelined, not transactional: the keys
    belong to a generation nobody reads before the swap."""
    keys = list(keys)
    encoded = await asyncio.to_thread(_encoded, folded, [name for name, *_ in keys])
    async with redis.pipeline(transaction=False) as pipe:
        for (_name, docs_key, links_key, position_key), (documents, links) in zip(
            keys, encoded, strict=True
        ):
            for start in range(0, len(documents), _WRITE_CHUNK):
                pipe.hset(docs_key, mapping=dict(documents[start : start + _WRITE_CHUNK]))
            for start in range(0, len(links), _WRITE_CHUNK):
                pipe.hset(links_key, mapping=dict(links[start : start + _WRITE_CHUNK]))
            if folded.position:  # as the incremental projector: no position before an event
                pipe.set(position_key, folded.position)
            await pipe.execute()


_Encoded = list[tuple[str, str]]


def _encoded(folded: Folded, names: list[str]) -> list[tuple[_Encoded, _Encoded]]:
    """Each projection's documents and links as JSON (blocking: run it in a thread). With the
    collector paused, as for the fold: rendering allocates a dict per field while the whole
    model is alive, and each full pass would walk it (at 1M events that tripled the render)."""
    with collections_paused():
        return [
            (
                [(k, encode_doc(d)) for k, d in folded.documents(name).items()],
                [
                    (a, json.dumps(list(v), separators=(",", ":")))
                    for a, v in folded.links(name).items()
                ],
            )
            for name in names
        ]
