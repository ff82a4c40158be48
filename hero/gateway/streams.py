"""``GET /v1/streams/{topic}`` (Server-Sent Events) and ``WS /v1/streams/{topic}/ws``.

Query: ``types`` (comma list), ``farm``, ``node``, ``offtaker``, ``grid``, ``start``
(``earliest`` | ``latest`` | a position N, the first one sent). ``Last-Event-ID`` (header, or
the ``last_event_id`` query parameter for clients that cannot set headers) overrides
``start``: the stream resumes strictly after that position.

SSE: each event is ``id: POSITION`` / ``event: TYPE`` / ``data: ENVELOPE-JSON``; a comment
every ``heartbeat_s``; a slow consumer gets a last ``event: close`` with the reason.
WebSocket: a first frame ``{"event": "subscribed", "topic": T, "after": N}``, then each event
as a text frame ``{"id": POSITION, "event": TYPE, "data": ENVELOPE}``;
a slow consumer gets ``{"event": "close", "reason": ...}`` then a close frame (code 4429).
Refusals answer the handshake with the same HTTP status and JSON body as the SSE route.

Every subscriber shares the process's :class:`Broadcaster` (``context.extras["broadcaster"]``):
its catch-up blocks and live items are shared, and each event's frame is rendered once per
visibility class (full or developer-redacted, memoized on the shared item); a subscriber only
runs its own scope check and filters, then writes every frame that is ready in one chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import (
    APIRouter,
    Depends,
    Header,
    HTTPException,
    Query,
    WebSocket,
    status,
)
from fastapi.responses import StreamingResponse
from starlette.websockets import WebSocketDisconnect

from hero.gateway._broadcast import Broadcaster, LogItem, SlowConsumer
from hero.gateway._openapi import KEYED, KEYED_SECURITY, errors
from hero.gateway._stream_rules import (
    FULL_VIEW,
    StartSpec,
    StreamFilter,
    in_scope,
    parse_last_event_id,
    parse_start,
    parse_types,
    redacted_for_developer,
    resume_after,
    sse_comment,
    sse_frame,
    topic_refusal,
    visibility_class,
)
from hero.gateway.auth import api_keys, caller, presented_key, refuse
from hero.gateway.context import GatewayContext, Principal, Role
from hero.readmodels.keys import KeyRefused
from schemas import REGISTRY, Topic

__all__ = ["SLOW_CONSUMER_CLOSE", "StreamOptions", "broadcaster_for", "router", "ws_caller"]

#: WebSocket close code for a slow consumer (4000-4999: application codes).
SLOW_CONSUMER_CLOSE = 4429
_TOPICS = tuple(topic.value for topic in Topic)


@dataclass(frozen=True)
class StreamOptions:
    """Per-gateway stream settings: ``context.extras["stream_options"]`` overrides them."""

    queue_limit: int = 1000
    heartbeat_s: float = 15.0
    poll_interval_s: float = 0.1
    cache_rows: int = 10_000
    """Rows of the shared catch-up cache (parsed, with their rendered frames): its bound."""


def _options(context: GatewayContext) -> StreamOptions:
    options = context.extras.get("stream_options")
    return options if isinstance(options, StreamOptions) else StreamOptions()


def broadcaster_for(context: GatewayContext) -> Broadcaster:
    """The process's one broadcaster, made on first use (its thread starts with the first
    subscriber). The app's shutdown should call ``.close()`` on it."""
    broadcaster = context.extras.get("broadcaster")
    if not isinstance(broadcaster, Broadcaster):
        options = _options(context)
        broadcaster = Broadcaster(
            context.store,
            queue_limit=options.queue_limit,
            poll_interval_s=options.poll_interval_s,
            cache_rows=options.cache_rows,
        )
        context.extras["broadcaster"] = broadcaster
    return broadcaster


def _invalid(field: str, message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail={"error": "invalid_parameter", "message": message, "field": field},
    )


@dataclass(frozen=True)
class _Request:
    topic: str
    filter: StreamFilter
    start: StartSpec
    last_event_id: int | None


def _parse(
    topic: str,
    types: str | None,
    farm: str | None,
    node: str | None,
    offtaker: str | None,
    grid: str | None,
    start: str | None,
    last_event_id: str | None,
) -> _Request:
    """The request's topic and parameters, or the 404/422 that refuses them."""
    if topic not in _TOPICS:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail={
                "error": "unknown_topic",
                "message": f"unknown topic {topic!r}; known topics: {', '.join(_TOPICS)}",
                "topics": list(_TOPICS),
            },
        )
    known = [entry.type for entry in REGISTRY.entries() if entry.topic.value == topic]
    try:
        type_set = parse_types(types, known)
    except ValueError as error:
        raise _invalid("types", f"{error} (topic {topic} carries: {', '.join(known)})") from None
    try:
        start_spec = parse_start(start)
    except ValueError as error:
        raise _invalid("start", str(error)) from None
    try:
        resume = parse_last_event_id(last_event_id)
    except ValueError as error:
        raise _invalid("Last-Event-ID", str(error)) from None
    for name, value in (("farm", farm), ("node", node), ("offtaker", offtaker), ("grid", grid)):
        if value is not None and not (0 < len(value) <= 200):
            raise _invalid(name, f"{name} must be 1-200 characters")
    return _Request(
        topic=topic,
        filter=StreamFilter(types=type_set, farm=farm, node=node, offtaker=offtaker, grid=grid),
        start=start_spec,
        last_event_id=resume,
    )


def _check_topic(principal: Principal, topic: str) -> None:
    reason = topic_refusal(principal, topic)
    if reason is not None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail={"error": "topic_forbidden", "message": reason}
        )


def _view(item: LogItem, view: str) -> dict[str, Any]:
    """The shared, read-only form of ``item`` shown to the ``view`` class (made once)."""
    if view == FULL_VIEW:
        return item.envelope
    shown: dict[str, Any] | None = item.memo.get(view)
    if shown is None:
        shown = item.memo[view] = redacted_for_developer(item.envelope)
    return shown


def _sse_bytes(item: LogItem, view: str) -> bytes:
    """``item``'s SSE frame for the ``view`` class, rendered once for every subscriber."""
    key = ("sse", view)
    frame: bytes | None = item.memo.get(key)
    if frame is None:
        frame = item.memo[key] = sse_frame(item.position, item.type, _view(item, view))
    return frame


def _ws_text(item: LogItem, view: str) -> str:
    """``item``'s WebSocket text frame for the ``view`` class, rendered once."""
    key = ("ws", view)
    text: str | None = item.memo.get(key)
    if text is None:
        frame = {"id": item.position, "event": item.type, "data": _view(item, view)}
        text = item.memo[key] = json.dumps(frame, separators=(",", ":"))
    return text


class _Shown:
    """What one subscriber is shown of the shared items: its scope and filters, run on the
    shared views (no copies)."""

    def __init__(self, principal: Principal, request: _Request):
        self.principal = principal
        self.filter = request.filter
        self.view = visibility_class(principal)
        self.everything = not (
            self.filter.types
            or self.filter.farm
            or self.filter.node
            or self.filter.offtaker
            or self.filter.grid
        )

    def __call__(self, batch: Sequence[LogItem]) -> list[LogItem]:
        if self.everything and self.view == FULL_VIEW and self.principal.role == Role.ADMIN:
            return list(batch)  # in scope, unfiltered, unredacted: every item as it is
        shown: list[LogItem] = []
        types, principal, view, filter_ = self.filter.types, self.principal, self.view, self.filter
        for item in batch:
            if types and item.type not in types:
                continue
            if not in_scope(principal, item.envelope):
                continue
            if self.everything or filter_.matches(_view(item, view)):
                shown.append(item)
        return shown


async def _after(broadcaster: Broadcaster, request: _Request) -> int:
    """The position the subscription reads after (``latest``: the store's head now)."""
    head = 0
    if request.last_event_id is None and request.start.latest:
        head = await asyncio.to_thread(broadcaster.store.current_position)
    return resume_after(request.start, request.last_event_id, head)


async def _items(
    broadcaster: Broadcaster,
    principal: Principal,
    request: _Request,
    after: int,
    heartbeat_s: float,
) -> AsyncGenerator[list[LogItem] | None, None]:
    """What the subscriber is shown after position ``after``, in order, as batches of what is
    ready (never empty; the shared items); None when ``heartbeat_s`` passed without any.
    Raises :class:`SlowConsumer` if the subscriber fell behind."""
    batches = broadcaster.subscribe_batches(request.topic, after)
    shown = _Shown(principal, request)

    async def next_batch() -> Sequence[LogItem]:
        return await anext(batches)

    pending: asyncio.Task[Sequence[LogItem]] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.create_task(next_batch())
            done, _ = await asyncio.wait({pending}, timeout=heartbeat_s)
            if not done:
                yield None
                continue
            batch, pending = pending.result(), None
            ready = shown(batch)
            if ready:
                yield ready
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, SlowConsumer):
                await pending
        await batches.aclose()


async def _sse(
    broadcaster: Broadcaster, principal: Principal, request: _Request, heartbeat_s: float
) -> AsyncIterator[bytes]:
    after = await _after(broadcaster, request)
    # the position marker: a client that reconnects before any event resumes from here
    yield sse_comment(f"hero stream {request.topic}") + f"id: {after}\n\n".encode()
    items = _items(broadcaster, principal, request, after, heartbeat_s)
    view = visibility_class(principal)
    try:
        async for ready in items:
            if ready is None:
                yield sse_comment("heartbeat")
            else:  # every ready frame in one write
                yield b"".join([_sse_bytes(item, view) for item in ready])
    except SlowConsumer as slow:
        reason = _slow_reason(slow)
        data = {"reason": reason, "position": slow.position, "last_delivered": slow.delivered}
        yield f"event: close\ndata: {json.dumps(data)}\n\n".encode()
    finally:
        await items.aclose()


def _slow_reason(slow: SlowConsumer) -> str:
    return (
        f"slow consumer: buffer limit {slow.limit} reached at position {slow.position}; "
        "reconnect with Last-Event-ID"
    )


async def ws_caller(websocket: WebSocket) -> Principal:
    """The WebSocket's key (the same headers as HTTP: ``Authorization: Bearer`` or
    ``X-API-Key``). Refused before the handshake completes: HTTP 401 with the reason."""
    key = presented_key(websocket.headers)
    if key is None:
        refuse(
            status.HTTP_401_UNAUTHORIZED,
            "missing_key",
            "send an API key: Authorization: Bearer <key> (or X-API-Key: <key>)",
        )
    context: GatewayContext = websocket.app.state.context
    try:
        return await api_keys(context).authenticate(key)
    except KeyRefused as refused:
        refuse(status.HTTP_401_UNAUTHORIZED, refused.reason, refused.message)


def _close_reason(text: str) -> str:
    """A close frame's reason holds at most 123 bytes."""
    encoded = text.encode()
    return text if len(encoded) <= 123 else encoded[:120].decode(errors="ignore") + "..."


def router(context: GatewayContext) -> APIRouter:
    api = APIRouter(tags=["streams"])
    options = _options(context)

    @api.get(
        "/v1/streams/{topic}",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}, **errors(*KEYED, 404)},
        dependencies=KEYED_SECURITY,
    )
    async def stream(
        topic: str,
        principal: Principal = Depends(caller),
        types: str | None = Query(None, description="comma list of event types"),
        farm: str | None = None,
        node: str | None = None,
        offtaker: str | None = None,
        grid: str | None = None,
        start: str | None = Query(None, description="earliest (default), latest or a position"),
        last_event_id: str | None = Header(None, alias="Last-Event-ID"),
    ) -> StreamingResponse:
        """The topic's events as Server-Sent Events, resumable with ``Last-Event-ID``."""
        parsed = _parse(topic, types, farm, node, offtaker, grid, start, last_event_id)
        _check_topic(principal, topic)
        return StreamingResponse(
            _sse(broadcaster_for(context), principal, parsed, options.heartbeat_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @api.websocket("/v1/streams/{topic}/ws")
    async def stream_ws(
        websocket: WebSocket, topic: str, principal: Principal = Depends(ws_caller)
    ) -> None:
        """The same events over a WebSocket, one JSON text frame each."""
        # refusals (HTTPException) go out as the handshake's HTTP answer: 401/403/404/422
        query = websocket.query_params
        parsed = _parse(
            topic,
            query.get("types"),
            query.get("farm"),
            query.get("node"),
            query.get("offtaker"),
            query.get("grid"),
            query.get("start"),
            websocket.headers.get("last-event-id") or query.get("last_event_id"),
        )
        _check_topic(principal, topic)
        await websocket.accept()
        await _serve_ws(websocket, broadcaster_for(context), principal, parsed, options)

    return api


async def _serve_ws(
    websocket: WebSocket,
    broadcaster: Broadcaster,
    principal: Principal,
    request: _Request,
    options: StreamOptions,
) -> None:
    after = await _after(broadcaster, request)
    items = _items(broadcaster, principal, request, after, options.heartbeat_s)

    async def client_gone() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return

    view = visibility_class(principal)

    async def send_events() -> None:
        try:
            async for ready in items:
                if ready is None:
                    continue  # the WebSocket's own ping/pong keeps the connection alive
                for item in ready:  # one message per event: the protocol's framing
                    await websocket.send_text(_ws_text(item, view))
        except SlowConsumer as slow:
            reason = _slow_reason(slow)
            await websocket.send_text(
                json.dumps({"event": "close", "reason": reason, "position": slow.position})
            )
            await websocket.close(code=SLOW_CONSUMER_CLOSE, reason=_close_reason(reason))

    # the position marker, as SSE's first ``id``: resume after it if nothing else arrives
    await websocket.send_text(
        json.dumps({"event": "subscribed", "topic": request.topic, "after": after})
    )
    sender = asyncio.create_task(send_events())
    watcher = asyncio.create_task(client_gone())
    try:
        await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, watcher):
            task.cancel()
        for task in (sender, watcher):
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, OSError):
                await task
        await items.aclose()
