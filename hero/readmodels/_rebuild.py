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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields

from redis.asyncio import Redis

from hero.model import MarketState
from hero.model import apply as model_apply
from hero.model.gcpause import collections_paused
from hero.readmodels.projections import Doc, Projection, encode_doc
from hero.store import READ_BATCH, EventStore, PoisonRow, skip_row, trusted_decoder
from schemas import Envelope, Event

__all__ = ["Folded", "fold_log", "write_folded"]

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


def fold_log(
    store: EventStore,
    projections: Sequence[Projection],
    wanted: frozenset[str],
    source: str,
    *,
    through: int,
    batch: int = READ_BATCH,
) -> Folded:
    """Fold the log through position ``through`` (blocking: run it in a thread). A row of a
    ``wanted`` type that does not decode is recorded as skipped under ``source``."""
    shares = {p.name: _Touched(p) for p in projections}
    readers: dict[str, list[_Touched]] = {}
    for share in shares.values():
        for kind in share.projection.types:
            readers.setdefault(kind, []).append(share)
    model = MarketState()
    with collections_paused():
        position = _fold_rows(store, model, readers, wanted, source, through, batch)
    return Folded(model, position, shares)


def _fold_rows(
    store: EventStore,
    model: MarketState,
    readers: dict[str, list[_Touched]],
    wanted: frozenset[str],
    source: str,
    through: int,
    batch: int,
) -> int:
    position = 0
    decode = trusted_decoder()  # our store validated every row on append
    for rows in store.read_batches(1, batch, through):
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
            model_apply(model, envelope, event)
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
