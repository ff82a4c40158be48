"""What one stream subscriber is shown, and how each frame is rendered once per class.

Every subscriber of a topic shares the broadcaster's items; a :class:`Renderer` makes the
frames of one visibility class (admin, developer, or one tenant set) once per item and keeps
them on it, and :class:`Shown` runs one subscriber's scope check and filters over those shared
views. :func:`shown_batches` turns the broadcaster's batches into what the subscriber is sent,
with a heartbeat. The routes that serve them are in :mod:`hero.gateway.streams`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from hero.access import Principal, Role
from hero.gateway._stream_rules import (
    DEVELOPER_VIEW,
    FULL_VIEW,
    StartSpec,
    StreamFilter,
    in_scope,
    rendered,
    sse_frame,
    visibility_class,
)
from hero.gateway.broadcast import Broadcaster, LogItem, SlowConsumer
from hero.gateway.offtakers import OfftakerDirectory

__all__ = ["Renderer", "Shown", "StreamRequest", "shown_batches"]


@dataclass(frozen=True)
class StreamRequest:
    """A subscription as asked: its topic, filters and where it starts."""

    topic: str
    filter: StreamFilter
    start: StartSpec
    last_event_id: int | None


_UNSEEN = object()


class Renderer:
    """The frames of one visibility class (:func:`visibility_class`), made once per shared
    item and class and memoized on it. A developer's rendering is keyed by the generation of
    the pseudonyms too: one made before an offtaker was learned is not reused after."""

    def __init__(self, principal: Principal, directory: OfftakerDirectory):
        self.principal = principal
        self.view = visibility_class(principal)
        self.directory = directory

    def _key(self) -> Any:
        if self.view == DEVELOPER_VIEW:
            return (self.view, self.directory.pseudonyms.generation)
        return self.view

    def _forget_stale(self, item: LogItem, key: Any) -> None:
        """Drop a developer rendering of an older generation: one per item at most is kept."""
        if self.view != DEVELOPER_VIEW:
            return
        kept = item.memo.get(DEVELOPER_VIEW)
        if kept != key:
            if kept is not None:
                for stale in (kept, ("sse", kept), ("ws", kept)):
                    item.memo.pop(stale, None)
            item.memo[DEVELOPER_VIEW] = key

    def view_of(self, item: LogItem) -> dict[str, Any] | None:
        """The shared, read-only form of ``item`` this class is shown; None: not sent."""
        if self.view == FULL_VIEW:
            return item.envelope
        key = self._key()
        shown: Any = item.memo.get(key, _UNSEEN)
        if shown is _UNSEEN:
            self._forget_stale(item, key)
            shown = item.memo[key] = rendered(
                self.principal, item.envelope, self.directory.pseudonyms
            )
        return cast(dict[str, Any] | None, shown)

    def sse(self, item: LogItem) -> bytes:
        """``item``'s SSE frame for this class (an item it is shown), rendered once."""
        key = ("sse", self._key())
        frame: bytes | None = item.memo.get(key)
        if frame is None:
            frame = item.memo[key] = sse_frame(item.position, item.type, self._shown(item))
        return frame

    def ws(self, item: LogItem) -> str:
        """``item``'s WebSocket text frame for this class, rendered once."""
        key = ("ws", self._key())
        text: str | None = item.memo.get(key)
        if text is None:
            frame = {"id": item.position, "event": item.type, "data": self._shown(item)}
            text = item.memo[key] = json.dumps(frame, separators=(",", ":"))
        return text

    def _shown(self, item: LogItem) -> dict[str, Any]:
        shown = self.view_of(item)
        if shown is None:  # never asked: Shown leaves such items out
            raise ValueError(f"position {item.position} is not shown to {self.view} keys")
        return shown


class Shown:
    """What one subscriber is shown of the shared items: its scope and filters, run on the
    shared views (no copies)."""

    def __init__(self, renderer: Renderer, request: StreamRequest):
        self.principal = renderer.principal
        self.filter = request.filter
        self.renderer = renderer
        self.everything = not (
            self.filter.types
            or self.filter.farm
            or self.filter.node
            or self.filter.offtaker
            or self.filter.grid
        )

    def __call__(self, batch: Sequence[LogItem]) -> list[LogItem]:
        if self.everything and self.principal.role == Role.ADMIN:
            return list(batch)  # in scope, unfiltered, unredacted: every item as it is
        shown: list[LogItem] = []
        types, principal, filter_ = self.filter.types, self.principal, self.filter
        view_of = self.renderer.view_of
        for item in batch:
            if types and item.type not in types:
                continue
            if not in_scope(principal, item.envelope):
                continue
            view = view_of(item)
            if view is not None and (self.everything or filter_.matches(view)):
                shown.append(item)
        return shown


async def shown_batches(
    broadcaster: Broadcaster,
    renderer: Renderer,
    request: StreamRequest,
    after: int,
    heartbeat_s: float,
) -> AsyncGenerator[list[LogItem] | None, None]:
    """What the subscriber is shown after position ``after``, in order, as batches of what is
    ready (never empty; the shared items); None every ``heartbeat_s``, busy or idle (a
    heartbeat is due: the key is checked then). Raises :class:`SlowConsumer` if the subscriber
    fell behind."""
    batches = broadcaster.subscribe_batches(request.topic, after)
    shown = Shown(renderer, request)
    masked = renderer.view == DEVELOPER_VIEW
    loop = asyncio.get_running_loop()

    async def next_batch() -> Sequence[LogItem]:
        return await anext(batches)

    pending: asyncio.Task[Sequence[LogItem]] | None = None
    beat = loop.time() + heartbeat_s
    try:
        while True:
            if pending is None:
                pending = asyncio.create_task(next_batch())
            done, _ = await asyncio.wait({pending}, timeout=max(0.0, beat - loop.time()))
            if done:
                batch, pending = pending.result(), None
                if masked:  # every offtaker named up to the batch's last row is known
                    await renderer.directory.ensure(batch[-1].position)
                ready = shown(batch)
                if ready:
                    yield ready
            if loop.time() >= beat:
                beat = loop.time() + heartbeat_s
                yield None
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, SlowConsumer):
                await pending
        await batches.aclose()
