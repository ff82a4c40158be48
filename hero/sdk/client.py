"""``Client(url, key)``: the gateway's streams and commands over HTTP (httpx).

``subscribe`` follows a topic as Server-Sent Events and yields ``(position, envelope, event)``;
when the connection drops, or the gateway closes it (a slow consumer), it reconnects with
``Last-Event-ID`` = the last position seen, so the events come through without a gap or a
duplicate; a stream whose key is revoked ends with :class:`GatewayError` (401 ``key_revoked``),
never reconnected. ``documents`` lists a read model page by page, following the gateway's
cursors. The command helpers send the gateway's REST commands and raise
:class:`GatewayError` (status, reason, message) when it refuses them; :class:`RateLimited`
(429, with the gateway's ``Retry-After``) when the key is over its rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, NamedTuple

import httpx
from pydantic import BaseModel

from hero.sdk._sse import SseParser
from hero.sdk.errors import GatewayError, RateLimited, ReconnectsExhausted, StreamClosed
from schemas import Envelope, Event, FarmerPolicy, Mandate, NodeStatus, UndecodableEvent

__all__ = ["Client", "Cursor", "StreamEvent", "error_of"]


class StreamEvent(NamedTuple):
    """One event of a subscription. ``event`` is the payload as its ``schemas`` model, or None
    when it does not validate as one (a developer key's events have private fields removed)."""

    position: int
    envelope: Envelope
    event: Event | None


class Cursor:
    """Where a subscription is: the last position received. Drops what is at or below it (a
    replay after a reconnect), and says what to send on the next connection."""

    def __init__(self, position: int | None = None):
        self.position = position

    def observe(self, raw_id: str | None) -> int | None:
        """The message's position if it is new, else None (duplicate or not a position)."""
        if raw_id is None or not raw_id.strip().isdigit():
            return None
        position = int(raw_id)
        if self.position is not None and position <= self.position:
            return None
        self.position = position
        return position

    def headers(self) -> dict[str, str]:
        return {} if self.position is None else {"Last-Event-ID": str(self.position)}


def error_of(response: httpx.Response) -> GatewayError:
    """The gateway's refusal as a :class:`GatewayError` (``{"detail": {"error", "message"}}``,
    or FastAPI's list of field errors)."""
    try:
        body = response.json()
    except ValueError:
        return GatewayError(response.status_code, "http_error", response.text[:500])
    detail = body.get("detail") if isinstance(body, dict) else body
    if response.status_code == 429:
        reason, message = "rate_limited", str(detail)
        if isinstance(detail, dict):
            reason = str(detail.get("error", reason))
            message = str(detail.get("message", detail))
        return RateLimited(reason, message, _retry_after(response), detail)
    if isinstance(detail, dict):
        return GatewayError(
            response.status_code,
            str(detail.get("error", "http_error")),
            str(detail.get("message", detail)),
            detail,
        )
    if isinstance(detail, list):
        fields = "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', []))}: {item.get('msg')}"
            for item in detail
            if isinstance(item, dict)
        )
        return GatewayError(response.status_code, "invalid_request", fields, detail)
    return GatewayError(response.status_code, "http_error", str(detail))


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "").strip()
    return float(raw) if raw.isdigit() else None


class _Retry(Exception):
    """A failure worth reconnecting after, at the earliest ``wait_s`` from now."""

    def __init__(self, message: str, wait_s: float | None = None):
        super().__init__(message)
        self.wait_s = wait_s


def _dump(value: BaseModel | Mapping[str, Any]) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else dict(value)


class Client:
    """A gateway client. ``max_reconnects``: attempts in a row without receiving anything
    before :class:`ReconnectsExhausted`; waits ``backoff_s``, doubling to ``max_backoff_s``.
    ``read_timeout_s``: silence (no event, no heartbeat) after which the connection is
    treated as dropped."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout_s: float = 10.0,
        read_timeout_s: float = 45.0,
        max_reconnects: int = 10,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.url = url.rstrip("/")
        self.max_reconnects = max_reconnects
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.read_timeout_s = read_timeout_s
        self.reconnects = 0
        """Reconnections made by this client's subscriptions (for tests and metrics)."""
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout_s,
            transport=transport,
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- streams ---------------------------------------------------------------------------

    async def subscribe(
        self,
        topic: str,
        *,
        types: Iterable[str] | str | None = None,
        start: str | int = "earliest",
        farm: str | None = None,
        node: str | None = None,
        offtaker: str | None = None,
        grid: str | None = None,
        after: int | None = None,
        reconnect: bool = True,
        on_close: Callable[[str], None] | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """The topic's events, in position order, without end (break out to stop).

        ``start``: ``earliest``, ``latest`` or the first position wanted; ``after`` resumes
        strictly after a position (as ``Last-Event-ID``) and wins over ``start``. A close by
        the gateway is reported to ``on_close`` and reconnected after (or raised as
        :class:`StreamClosed` when ``reconnect`` is False)."""
        params: dict[str, str] = {"start": str(start)}
        if types is not None:
            params["types"] = types if isinstance(types, str) else ",".join(types)
        for name, value in (("farm", farm), ("node", node), ("offtaker", offtaker), ("grid", grid)):
            if value is not None:
                params[name] = value
        cursor = Cursor(after)
        failures = 0
        while True:
            reason = "the gateway ended the stream"
            wait_s: float | None = None
            try:
                connection = self._connection(topic, params, cursor)
                async with contextlib.aclosing(connection) as items:
                    async for item in items:
                        if isinstance(item, str):
                            reason = item
                            if on_close is not None:
                                on_close(item)
                            break
                        if item is not None:
                            failures = 0
                            yield item
            except (httpx.TransportError, _Retry) as error:
                reason = f"{type(error).__name__}: {error}"
                wait_s = error.wait_s if isinstance(error, _Retry) else None
            if not reconnect:
                raise StreamClosed(reason, cursor.position)
            failures += 1
            if failures > self.max_reconnects:
                raise ReconnectsExhausted(failures - 1, reason, cursor.position)
            # a backoff between attempts (at least what a 429 asked for), not a synchronisation
            backoff = min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1))
            await asyncio.sleep(max(backoff, wait_s or 0.0))
            self.reconnects += 1

    async def _connection(
        self, topic: str, params: dict[str, str], cursor: Cursor
    ) -> AsyncGenerator[StreamEvent | str | None, None]:
        """One connection: events, None for progress without an event (a position marker),
        a string when the gateway closed the stream with that reason."""
        timeout = httpx.Timeout(self._http.timeout.connect, read=self.read_timeout_s)
        headers = {"Accept": "text/event-stream", **cursor.headers()}
        async with self._http.stream(
            "GET", f"/v1/streams/{topic}", params=params, headers=headers, timeout=timeout
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                error = error_of(response)
                if isinstance(error, RateLimited):
                    raise _Retry(str(error), error.retry_after_s)
                if response.status_code >= 500:
                    raise _Retry(str(error))
                raise error
            parser = SseParser()
            async for line in response.aiter_lines():
                message = parser.feed(line)
                if message is None:
                    continue
                if message.event == "close":
                    yield _close_reason(message.data)
                    return
                if message.event == "error":  # the key was revoked: no reconnecting
                    raise _stream_error(message.data)
                position = cursor.observe(message.id)
                if position is None or not message.data:
                    yield None
                    continue
                envelope = Envelope.model_validate_json(message.data)
                yield StreamEvent(position, envelope, _decoded(envelope))

    # -- queries ---------------------------------------------------------------------------

    async def documents(
        self, name: str, *, page_size: int = 100, **filters: str
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Every document of the read model ``name`` (``farms``, ``nodes``, ``contracts``,
        ``negotiations``, ``workloads``, ``accounts``) in the key's scope that matches
        ``filters`` (``farm_id``, ``offtaker_id``, ``grid``, ``status``), by id: page after
        page of ``page_size``, each page's cursor followed until the last."""
        params: dict[str, str | int] = {**filters, "limit": page_size}
        while True:
            response = await self._http.get(f"/v1/{name}", params=params)
            if response.status_code >= 400:
                raise error_of(response)
            page: dict[str, Any] = response.json()
            for document in page["items"]:
                yield document
            next_cursor = page.get("next_cursor")
            if not next_cursor:
                return
            params["cursor"] = next_cursor

    async def document(self, name: str, document_id: str) -> dict[str, Any]:
        """One document of the read model ``name``, if in the key's scope."""
        response = await self._http.get(f"/v1/{name}/{document_id}")
        if response.status_code >= 400:
            raise error_of(response)
        result: dict[str, Any] = response.json()
        return result

    # -- commands --------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        idempotency_key: str | None,
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = await self._http.request(method, path, json=body, headers=headers)
        if response.status_code >= 400:
            raise error_of(response)
        result: dict[str, Any] = response.json()
        return result

    async def set_policy(
        self,
        farm_id: str,
        policy: FarmerPolicy | Mapping[str, Any],
        *,
        node_id: str | None = None,
        source_text: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """``PUT /v1/farms/{farm_id}/policy``: the farm's (or one node's) auto-accept policy."""
        body: dict[str, Any] = {"policy": _dump(policy)}
        if node_id is not None:
            body["node_id"] = node_id
        if source_text is not None:
            body["source_text"] = source_text
        return await self._send("PUT", f"/v1/farms/{farm_id}/policy", body, idempotency_key)

    async def set_mandate(
        self,
        offtaker_id: str,
        mandate: Mandate | Mapping[str, Any],
        *,
        source_text: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """``PUT /v1/offtakers/{offtaker_id}/mandate``."""
        body: dict[str, Any] = {"mandate": _dump(mandate)}
        if source_text is not None:
            body["source_text"] = source_text
        path = f"/v1/offtakers/{offtaker_id}/mandate"
        return await self._send("PUT", path, body, idempotency_key)

    async def approve_offer(
        self, negotiation_id: str, offer_id: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """``POST /v1/negotiations/{negotiation_id}/offers/{offer_id}/approve``."""
        path = f"/v1/negotiations/{negotiation_id}/offers/{offer_id}/approve"
        return await self._send("POST", path, None, idempotency_key)

    async def reject_offer(
        self,
        negotiation_id: str,
        offer_id: str,
        *,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/negotiations/{negotiation_id}/offers/{offer_id}/reject``."""
        path = f"/v1/negotiations/{negotiation_id}/offers/{offer_id}/reject"
        body = {"reason": reason} if reason is not None else None
        return await self._send("POST", path, body, idempotency_key)

    async def set_node_status(
        self,
        node_id: str,
        status: NodeStatus | str,
        reason: str,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """``PUT /v1/nodes/{node_id}/status``."""
        body = {"status": NodeStatus(status).value, "reason": reason}
        return await self._send("PUT", f"/v1/nodes/{node_id}/status", body, idempotency_key)


def _decoded(envelope: Envelope) -> Event | None:
    try:
        return envelope.decode()
    except UndecodableEvent:
        return None


def _stream_error(data: str) -> GatewayError:
    """The gateway's ``event: error`` (a revoked key) as the 401 it is."""
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        reason = str(parsed.get("error", "key_revoked"))
        return GatewayError(401, reason, str(parsed.get("message", data)), parsed)
    return GatewayError(401, "key_revoked", data or "the gateway ended the stream")


def _close_reason(data: str) -> str:
    try:
        parsed = json.loads(data)
    except ValueError:
        return data or "closed by the gateway"
    if isinstance(parsed, dict) and isinstance(parsed.get("reason"), str):
        return str(parsed["reason"])
    return data or "closed by the gateway"
