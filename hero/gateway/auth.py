"""Who is calling: ``Authorization: Bearer <key>`` (or ``X-API-Key: <key>``), checked against
the hashed keys in Valkey; and the 403s of the scope rules.

Every refusal carries a reason: ``{"detail": {"error": CODE, "message": TEXT}}``.
"""

from __future__ import annotations

from typing import Any, NoReturn

from fastapi import HTTPException, Request, status

from hero.gateway.context import GatewayContext, Principal, Role
from hero.readmodels.keys import ApiKeys, KeyRefused

__all__ = [
    "api_keys",
    "caller",
    "forbid",
    "presented_key",
    "refuse",
    "require_farm",
    "require_offtaker",
    "require_role",
]


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
    challenge = {"WWW-Authenticate": 'Bearer realm="hero"'}
    key = presented_key(request.headers)
    if key is None and request.method == "GET" and request.url.path.startswith(STREAMS_PATH):
        # A browser's EventSource cannot send headers: the dashboard's streams pass the key
        # as ?key=. Only on the read-only streams, never where a command is sent.
        key = request.query_params.get("key") or None
    if key is None:
        refuse(
            status.HTTP_401_UNAUTHORIZED,
            "missing_key",
            "send an API key: Authorization: Bearer <key> (or X-API-Key: <key>)",
            challenge,
        )
    context: GatewayContext = request.app.state.context
    try:
        return await api_keys(context).authenticate(key)
    except KeyRefused as refused:
        refuse(status.HTTP_401_UNAUTHORIZED, refused.reason, refused.message, challenge)


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
