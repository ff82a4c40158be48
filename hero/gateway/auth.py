"""Who is calling: ``Authorization: Bearer <key>`` (or ``X-API-Key: <key>``), checked against
the hashed keys in Valkey; and the 403s of the scope rules.

Each authenticated request counts against its key's rates (``HERO_GATEWAY_RATE``), and each
refused one (no key, or a key that does not authenticate) against the client's IP: over a rate
is 429 ``rate_limited`` with ``Retry-After``. Every refusal carries a reason:
``{"detail": {"error": CODE, "message": TEXT}}``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, NoReturn

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection

from hero.gateway._bounds import RATE_LIMITED, RateLimits, parse_rates
from hero.gateway.context import GatewayContext, Principal, Role
from hero.readmodels.keys import ApiKeys, KeyRefused
from hero.readmodels.ratelimits import shared_storage

__all__ = [
    "CLIENT_COUNTED",
    "RATE_LIMITS",
    "STREAMS_PATH",
    "KeyCheck",
    "api_keys",
    "authenticate",
    "caller",
    "declare_rate_limits",
    "forbid",
    "key_check",
    "presented_key",
    "rate_limits_for",
    "refuse",
    "require_farm",
    "require_offtaker",
    "require_role",
]

#: ``context.extras`` entry of the gateway's :class:`RateLimits` (none: no rate limit).
RATE_LIMITS = "rate_limits"
#: Why a key authenticated earlier no longer does (None while it does): the streams ask it at
#: every heartbeat.
KeyCheck = Callable[[], Awaitable[KeyRefused | None]]
_KEY_CHECK = "hero_key_check"
#: Set on a request's state once its client's IP has been counted (no key was presented).
CLIENT_COUNTED = "hero_client_counted"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="hero"'}


def refuse(code: int, error: str, message: str, headers: dict[str, str] | None = None) -> NoReturn:
    raise HTTPException(code, detail={"error": error, "message": message}, headers=headers)


def forbid(error: str, message: str) -> NoReturn:
    refuse(status.HTTP_403_FORBIDDEN, error, message)


def api_keys(context: GatewayContext) -> ApiKeys:
    keys = context.extras.get("api_keys")
    if not isinstance(keys, ApiKeys):
        keys = ApiKeys(context.redis)
        context.extras["api_keys"] = keys
    return keys


#: The streams a key may also be given to as ``?key=`` (EventSource sends no headers).
STREAMS_PATH = "/v1/streams/"


def presented_key(headers: Any) -> str | None:
    """The key of ``Authorization: Bearer KEY`` or of ``X-API-Key: KEY``."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return str(value.strip())
    key = headers.get("x-api-key")
    return str(key).strip() if key and key.strip() else None


async def caller(request: Request) -> Principal:
    """The dependency every route but ``/health`` takes: 401 without a valid key."""
    key = presented_key(request.headers)
    if key is None and request.method == "GET" and request.url.path.startswith(STREAMS_PATH):
        # A browser's EventSource cannot send headers: the dashboard's streams pass the key
        # as ?key=. Only on the read-only streams, never where a command is sent.
        key = request.query_params.get("key") or None
    return await authenticate(request, key)


async def authenticate(connection: HTTPConnection, key: str | None) -> Principal:
    """The holder of ``key``, counted against the key's rates; else 401, counted against the
    client's IP (so guessing keys runs into 429 too). Leaves on the connection the
    :data:`KeyCheck` of the key (:func:`key_check`)."""
    context: GatewayContext = connection.app.state.context
    if key is None:
        if not getattr(connection.state, CLIENT_COUNTED, False):
            await _count(context, _client(connection), "client")
        refuse(
            status.HTTP_401_UNAUTHORIZED,
            "missing_key",
            "send an API key: Authorization: Bearer <key> (or X-API-Key: <key>)",
            _CHALLENGE,
        )
    keys = api_keys(context)
    try:
        principal = await keys.authenticate(key)
    except KeyRefused as refused:
        await _count(context, _client(connection), "client")
        refuse(status.HTTP_401_UNAUTHORIZED, refused.reason, refused.message, _CHALLENGE)
    await _count(context, f"key:{principal.key_id}", "key")
    setattr(connection.state, _KEY_CHECK, functools.partial(keys.still_valid, principal.key_id))
    return principal


def rate_limits_for(context: GatewayContext, prefix: str) -> RateLimits | None:
    """The rates of ``HERO_GATEWAY_RATE``, counted in the gateway's Valkey under ``prefix``
    (shared by every gateway on it); None when the setting is ``off``."""
    rates = parse_rates(context.settings.gateway_rate)
    return RateLimits(shared_storage(context.redis, prefix), rates) if rates else None


def declare_rate_limits(app: FastAPI) -> None:
    """Add the 429 answer to the OpenAPI of every route that takes a key (before the app
    first answers: the routes of included routers are resolved then)."""
    for route in _api_routes(app.routes):
        if _takes_key(route.dependant):
            for code, answer in RATE_LIMITED.items():
                route.responses.setdefault(code, answer)


def _api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)  # an included router, kept whole
        if included is not None:
            yield from _api_routes(included.routes)


def _takes_key(dependant: Dependant) -> bool:
    return any(d.call is caller or _takes_key(d) for d in dependant.dependencies)


def key_check(connection: HTTPConnection) -> KeyCheck | None:
    """The check left by :func:`authenticate`; None when the caller was found otherwise."""
    check: KeyCheck | None = getattr(connection.state, _KEY_CHECK, None)
    return check


def _client(connection: HTTPConnection) -> str:
    return f"ip:{connection.client.host if connection.client else 'unknown'}"


async def _count(context: GatewayContext, identity: str, who: str) -> None:
    limits = context.extras.get(RATE_LIMITS)
    if not isinstance(limits, RateLimits):
        return
    refusal = await limits.hit(identity)
    if refusal is not None:
        refuse(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "rate_limited",
            f"more than {refusal.limit} requests for this {who}; "
            f"retry in {refusal.retry_after_s} s",
            {"Retry-After": str(refusal.retry_after_s)},
        )


def require_role(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        wanted = " or ".join(role.value for role in roles)
        forbid("wrong_role", f"this needs a {wanted} key, not a {principal.role.value} key")


def require_farm(principal: Principal, farm_id: str) -> None:
    """Admin, or a farmer key of ``farm_id``."""
    if not principal.owns_farm(farm_id):
        if principal.role == Role.FARMER:
            forbid("not_your_farm", f"farm {farm_id} is not one of this key's farms")
        forbid("wrong_role", f"only farm {farm_id}'s farmer (or an admin) may do this")


def require_offtaker(principal: Principal, offtaker_id: str) -> None:
    """Admin, or the offtaker key of ``offtaker_id``."""
    if not principal.owns_offtaker(offtaker_id):
        if principal.role == Role.OFFTAKER:
            forbid("not_your_offtaker", f"this key is not offtaker {offtaker_id}'s")
        forbid("wrong_role", f"only offtaker {offtaker_id} (or an admin) may do this")
