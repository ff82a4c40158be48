"""The read models as they were at a log position, folded in memory (the gateway's ``?as_of=``).

The same projections as the Valkey copy (:mod:`hero.readmodels.projections`) fold the log cut
at the position, so an as-of answer has the documents the live read models had then, and the
gateway filters and masks them as it does live ones. The past does not change: a fold is kept
and reused for the same projection and position (the last ``kept`` of them), and requests that
arrive together for one cut share one fold. See docs/architecture.md ("Time travel").
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any

from hero.model import HANDLERS
from hero.readmodels.projections import Doc, Folded, fold
from hero.store import EventStore, readable_events, recorded_after, skip_row
from hero.store.as_of import LogCut

__all__ = ["AsOfReadModels"]

_SOURCE = "gateway-as-of"
#: Every event the model folds, as the live projector reads them: a document renders from the
#: whole model (a node's from its contracts' too), not from its projection's events alone.
_FOLDED = frozenset(t.__name__ for t in HANDLERS)


class AsOfReadModels:
    """Folds of ``store`` cut at a position, by projection; ``at(position)`` gives the port."""

    def __init__(self, store: EventStore, kept: int = 8):
        self._store, self._kept = store, kept
        self._folds: OrderedDict[tuple[str, int], Folded] = OrderedDict()
        self._pending: dict[tuple[str, int], Future[Folded]] = {}
        """Folds under way: a request for the same cut waits for it instead of folding again."""
        self._lock = threading.Lock()

    def _fold(self, name: str, position: int) -> Folded:
        key = (name, position)
        with self._lock:
            if key in self._folds:
                self._folds.move_to_end(key)
                return self._folds[key]
            pending = self._pending.get(key)
            if pending is None:
                self._pending[key] = mine = Future[Folded]()
        if pending is not None:
            return pending.result()
        try:
            folded = self._fold_cut(name, position)
        except BaseException as error:
            mine.set_exception(error)
            raise
        finally:
            with self._lock:
                del self._pending[key]
                if not mine.done():
                    self._folds[key] = folded
                    self._folds.move_to_end(key)
                    while len(self._folds) > self._kept:
                        self._folds.popitem(last=False)
        mine.set_result(folded)
        return folded

    def _fold_cut(self, name: str, position: int) -> Folded:
        cut = LogCut(self._store, position)
        rows = readable_events(
            recorded_after(cut, 0, 5000),
            lambda row, error: skip_row(self._store, _SOURCE, row, error),
            types=_FOLDED,
        )
        folded = fold(name, ((envelope, event) for _, envelope, event in rows), upto=position)
        folded.position = position  # applied through the cut, as the live position says
        return folded

    async def folded(self, name: str, position: int) -> Folded:
        return await asyncio.to_thread(self._fold, name, position)

    def at(self, position: int) -> _AtPosition:
        return _AtPosition(self, position)


class _AtPosition:
    """The read-models port (``get``, ``all``, ``position``) of one cut."""

    def __init__(self, models: AsOfReadModels, position: int):
        self._models, self._position = models, position

    async def get(self, name: str, id: str) -> Doc | None:
        return (await self._models.folded(name, self._position)).docs.get(id)

    async def all(self, name: str, **equals: Any) -> list[Doc]:
        docs = (await self._models.folded(name, self._position)).docs
        return [
            doc
            for _, doc in sorted(docs.items())
            if all(doc.get(k) == v for k, v in equals.items())
        ]

    async def position(self, name: str) -> int:
        return self._position
