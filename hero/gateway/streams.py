"""``GET /v1/streams/{topic}`` (Server-Sent Events) and ``WS /v1/streams/{topic}/ws``.

Query: ``types`` (comma list), ``farm``, ``node``, ``offtaker``, ``grid``, ``start``
(``earliest`` | ``latest`` | a position N, the first one sent). ``Last-Event-ID`` (header, or
the ``last_event_id`` query parameter for clients that cannot set headers) overrides
``start``: the stream resumes strictly after that position.

A ``start`` (or ``Last-Event-ID``) past the store's head -- one that would wait for events
that do not exist yet, without saying so -- is refused with 400, as is one that is not a
position; ``start`` may name the next position (head + 1), which is ``latest``.

SSE: each event is ``id: POSITION`` / ``event: TYPE`` / ``data: ENVELOPE-JSON``; a comment
every ``heartbeat_s``; a slow consumer gets a last ``event: close`` with the reason.
WebSocket: a first frame ``{"event": "subscribed", "topic": T, "after": N}``, then each event
as a text frame ``{"id": POSITION, "event": TYPE, "data": ENVELOPE}``;
a slow consumer gets ``{"event": "close", "reason": ...}`` then a close frame (code 4429).
Refusals answer the handshake with the same HTTP status and JSON body as the SSE route.

Bounds: at every heartbeat (busy or idle) a stream re-checks its key, and a key revoked (or
deleted) since ends it: SSE with a last ``event: error`` (``{"error": "key_revoked",
"message"}``), WebSocket with that frame then close code 4401. A key holds at most
``max_streams_per_key`` open streams on a gateway (SSE and WebSocket together); one more is
429 ``too_many_streams``.

Every subscriber shares the process's :class:`Broadcaster` (``context.extras["broadcaster"]``):
its catch-up blocks and live items are shared, and each event's frame is rendered once per
visibility class (admin, developer, or one farmer's or offtaker's tenants: see
:func:`~hero.gateway._stream_rules.rendered`; memoized on the shared item); a subscriber only
runs its own scope check and filters (:mod:`hero.gateway._subscription`), then writes every
frame that is ready in one chunk.
Before a batch is rendered for developers, the offtaker directory
(:mod:`hero.gateway.offtakers`) has read the log up to its last row, so every offtaker it
names is masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import (
    APIRouter,
    Depends,
    Header,
    HTTPException,
    Query,
    Request,
    WebSocket,
    status,
)
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from hero.gateway._bounds import StreamSlots
from hero.gateway._openapi import KEYED, KEYED_SECURITY, errors
from hero.gateway._stream_rules import (
    StreamFilter,
    parse_last_event_id,
    parse_start,
    parse_types,
    resume_after,
    sse_comment,
    topic_refusal,
)
from hero.gateway._subscription import Renderer, StreamRequest, shown_batches
from hero.gateway.auth import KeyCheck, authenticate, caller, key_check, presented_key
from hero.gateway.broadcast import Broadcaster, SlowConsumer
from hero.gateway.context import GatewayContext, Principal
from hero.gateway.offtakers import directory_for
from hero.readmodels.keys import KeyRefused
from schemas import REGISTRY, Topic

__all__ = [
    "KEY_REVOKED_CLOSE",
    "SLOW_CONSUMER_CLOSE",
    "StreamOptions",
    "broadcaster_for",
    "router",
    "ws_caller",
]

#: WebSocket close code for a slow consumer (4000-4999: application codes).
SLOW_CONSUMER_CLOSE = 4429
#: WebSocket close code for a stream whose key was revoked while it was open.
KEY_REVOKED_CLOSE = 4401
log = logging.getLogger(__name__)
_TOPICS = tuple(topic.value for topic in Topic)


@dataclass(frozen=True)
class StreamOptions:
    """Per-gateway stream settings: ``context.extras["stream_options"]`` overrides them."""

    queue_limit: int = 1000
    heartbeat_s: float = 15.0
    poll_interval_s: float = 0.1
    cache_rows: int = 10_000
    """Rows of the shared catch-up cache (parsed, with their rendered frames): its bound."""
    max_streams_per_key: int = 8
    """Open streams (SSE and WebSocket) per key on this gateway; 0: no cap."""


def _options(context: GatewayContext) -> StreamOptions:
    options = context.extras.get("stream_options")
    if isinstance(options, StreamOptions):
        return options
    return StreamOptions(max_streams_per_key=context.settings.gateway_max_streams_per_key)


def _slots(context: GatewayContext, options: StreamOptions) -> StreamSlots:
    slots = context.extras.get("stream_slots")
    if not isinstance(slots, StreamSlots):
        slots = context.extras["stream_slots"] = StreamSlots(options.max_streams_per_key)
    return slots


def _take_slot(slots: StreamSlots, principal: Principal) -> Callable[[], None]:
    release = slots.take(principal.key_id)
    if release is None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail={
                "error": "too_many_streams",
                "message": f"this key has {slots.per_key} streams open on this gateway, "
                "its most; close one first",
            },
            headers={"Retry-After": "1"},
        )
    return release


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


def _bad_start(field: str, message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_400_BAD_REQUEST,
        detail={"error": "invalid_start", "message": message, "field": field},
    )


def _parse(
    topic: str,
    types: str | None,
    farm: str | None,
    node: str | None,
    offtaker: str | None,
    grid: str | None,
    start: str | None,
    last_event_id: str | None,
) -> StreamRequest:
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
        raise _bad_start("start", str(error)) from None
    try:
        resume = parse_last_event_id(last_event_id)
    except ValueError as error:
        raise _bad_start("Last-Event-ID", str(error)) from None
    for name, value in (("farm", farm), ("node", node), ("offtaker", offtaker), ("grid", grid)):
        if value is not None and not (0 < len(value) <= 200):
            raise _invalid(name, f"{name} must be 1-200 characters")
    return StreamRequest(
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


async def _after(broadcaster: Broadcaster, request: StreamRequest) -> int:
    """The position the subscription reads after (``latest``: the store's head now); 400 when
    that is past the head (``start`` may be head + 1: the next event)."""
    head = await asyncio.to_thread(broadcaster.store.current_position)
    after = resume_after(request.start, request.last_event_id, head)
    if after > head:
        if request.last_event_id is not None:
            raise _bad_start(
                "Last-Event-ID",
                f"Last-Event-ID {after} is past the store's head (position {head})",
            )
        raise _bad_start(
            "start",
            f"start {after + 1} is past the store's head (position {head}); at most {head + 1}",
        )
    return after


async def _revoked(check: KeyCheck | None) -> KeyRefused | None:
    """Why the stream's key no longer authenticates, or None (also when Valkey does not
    answer: a revocation is written there, so it is seen at the next heartbeat it answers)."""
    if check is None:
        return None
    try:
        return await check()
    except Exception as error:  # Valkey away: keep the stream, say so
        log.warning("cannot re-check a stream's key: %s", error)
        return None


def _revoked_frame(refused: KeyRefused) -> dict[str, str]:
    return {"error": refused.reason, "message": refused.message}


async def _sse(
    broadcaster: Broadcaster,
    renderer: Renderer,
    request: StreamRequest,
    after: int,
    heartbeat_s: float,
    check: KeyCheck | None,
) -> AsyncIterator[bytes]:
    # the position marker: a client that reconnects before any event resumes from here
    yield sse_comment(f"hero stream {request.topic}") + f"id: {after}\n\n".encode()
    items = shown_batches(broadcaster, renderer, request, after, heartbeat_s)
    try:
        async for ready in items:
            if ready is None:
                refused = await _revoked(check)
                if refused is not None:
                    yield f"event: error\ndata: {json.dumps(_revoked_frame(refused))}\n\n".encode()
                    return
                yield sse_comment("heartbeat")
            else:  # every ready frame in one write
                yield b"".join([renderer.sse(item) for item in ready])
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
    ``X-API-Key``), counted against its rates as HTTP requests are. Refused before the
    handshake completes: HTTP 401 (or 429) with the reason."""
    return await authenticate(websocket, presented_key(websocket.headers))


class _SlotResponse(StreamingResponse):
    """A streaming response that gives its stream slot back however the response ends (its
    body may never even start when the client leaves at once)."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None], **kw: Any):
        super().__init__(content, **kw)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def _close_reason(text: str) -> str:
    """A close frame's reason holds at most 123 bytes."""
    encoded = text.encode()
    return text if len(encoded) <= 123 else encoded[:120].decode(errors="ignore") + "..."


def router(context: GatewayContext) -> APIRouter:
    api = APIRouter(tags=["streams"])
    options = _options(context)
    slots = _slots(context, options)

    @api.get(
        "/v1/streams/{topic}",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}, **errors(*KEYED, 400, 404)},
        dependencies=KEYED_SECURITY,
    )
    async def stream(
        http: Request,
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
        broadcaster = broadcaster_for(context)
        after = await _after(broadcaster, parsed)
        release = _take_slot(slots, principal)
        renderer = Renderer(principal, directory_for(context))
        events = _sse(broadcaster, renderer, parsed, after, options.heartbeat_s, key_check(http))
        return _SlotResponse(
            events,
            release,
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
        broadcaster = broadcaster_for(context)
        after = await _after(broadcaster, parsed)
        release = _take_slot(slots, principal)
        try:
            await websocket.accept()
            check = key_check(websocket)
            renderer = Renderer(principal, directory_for(context))
            await _serve_ws(websocket, broadcaster, renderer, parsed, after, options, check)
        finally:
            release()

    return api


async def _serve_ws(
    websocket: WebSocket,
    broadcaster: Broadcaster,
    renderer: Renderer,
    request: StreamRequest,
    after: int,
    options: StreamOptions,
    check: KeyCheck | None,
) -> None:
    items = shown_batches(broadcaster, renderer, request, after, options.heartbeat_s)

    async def client_gone() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return

    async def send_events() -> None:
        try:
            async for ready in items:
                if ready is None:  # the WebSocket's own ping/pong keeps the connection alive
                    refused = await _revoked(check)
                    if refused is not None:
                        frame = {"event": "error", **_revoked_frame(refused)}
                        await websocket.send_text(json.dumps(frame))
                        reason = _close_reason(refused.message)
                        await websocket.close(code=KEY_REVOKED_CLOSE, reason=reason)
                        return
                    continue
                for item in ready:  # one message per event: the protocol's framing
                    await websocket.send_text(renderer.ws(item))
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
