"""The client's IP rate on the routes that take no key (the dashboard's page, the catalogue,
the payment webhooks, the OpenAPI document): a pure ASGI middleware.

A request that presents a key is counted by :func:`hero.gateway.auth.authenticate` instead
(against the key, or against the IP when the key is refused). ``/health`` is not counted:
monitors and the launcher poll it, and it reads nothing a caller could make expensive.
"""

from __future__ import annotations

import json

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from hero.gateway._bounds import RateLimits
from hero.gateway.auth import CLIENT_COUNTED, RATE_LIMITS, STREAMS_PATH, presented_key

__all__ = ["ClientRate"]

_UNCOUNTED = frozenset({"/health"})


class ClientRate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNCOUNTED:
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        if _presents_key(connection):
            await self.app(scope, receive, send)
            return
        limits = scope["app"].state.context.extras.get(RATE_LIMITS)
        if isinstance(limits, RateLimits):
            client = connection.client.host if connection.client else "unknown"
            refusal = await limits.hit(f"ip:{client}")
            if refusal is not None:
                await _refuse(send, refusal.limit, refusal.retry_after_s)
                return
        scope.setdefault("state", {})[CLIENT_COUNTED] = True
        await self.app(scope, receive, send)


def _presents_key(connection: HTTPConnection) -> bool:
    if presented_key(connection.headers) is not None:
        return True
    return connection.url.path.startswith(STREAMS_PATH) and bool(connection.query_params.get("key"))


async def _refuse(send: Send, limit: str, retry_after_s: int) -> None:
    detail = {
        "error": "rate_limited",
        "message": f"more than {limit} requests for this client; retry in {retry_after_s} s",
    }
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after_s).encode()),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
