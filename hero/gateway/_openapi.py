"""What the gateway's OpenAPI document says besides the happy path: the error model, the
security schemes, and the error responses of each kind of route.

Every refusal of the gateway has one shape, :class:`ErrorBody`:
``{"detail": {"error": CODE, "message": TEXT, ...}}`` (a few add fields, e.g. ``topics`` or
``close_matches``). A request whose fields fail validation is 422 with pydantic's list of field
errors (:class:`ValidationErrorBody`). The framework's own refusals (404 for an unknown path,
405 for a wrong method, 400 for a body that is not text) are given the same shape by
:func:`install_error_shape`.

How a router uses it -- the statuses its routes can answer, declared once per router and
completed per route::

    api = APIRouter(prefix="/v1", dependencies=KEYED_SECURITY, responses=errors(*KEYED))
    @api.put("/nodes/{node_id}/status", responses=errors(*BODY, 404, 409))

``KEYED_SECURITY`` names the security schemes in the OpenAPI (it checks nothing itself:
``hero.gateway.auth.caller`` does). ``errors(...)`` takes any statuses of :data:`DESCRIPTIONS`;
a route that gains a new refusal (a 429 of a rate limit, a 400 of a page cursor) must add its
status here and to its ``responses``: the schemathesis test
(``tests/integration/test_gateway_fuzz.py``) fails on any status an operation answers that its
OpenAPI does not declare, and on any answer that breaks the declared schema.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, Security
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "BODY",
    "DESCRIPTIONS",
    "KEYED",
    "KEYED_SECURITY",
    "ErrorBody",
    "ErrorDetail",
    "ValidationErrorBody",
    "errors",
    "install_error_shape",
]


class ErrorDetail(BaseModel):
    """Why a request was refused: a stable code and a sentence naming what is wrong."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="a stable code: unknown_node, wrong_role, missing_key...")
    message: str = Field(description="what is wrong, for a person")


class ErrorBody(BaseModel):
    """Every refusal: ``{"detail": {"error": CODE, "message": TEXT}}``."""

    detail: ErrorDetail


class FieldError(BaseModel):
    """One field error of pydantic: where (``loc``), what (``msg``) and its ``type``."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    """A 422: pydantic's field errors, or one refused parameter (``error``, ``field``)."""

    detail: list[FieldError] | ErrorDetail


DESCRIPTIONS: dict[int, str] = {
    400: "refused: the body is not JSON text, or the command is refused as it stands "
    "(the code says why); nothing written",
    401: "no API key, or one that is unknown, malformed or revoked",
    403: "the key's role or tenants do not allow this",
    404: "what the path names does not exist",
    409: "refused by the current state (a conflict), or a repeated Idempotency-Key; "
    "nothing written",
    413: "the request body is over the gateway's limit; nothing written",
    422: "a field or parameter is invalid (each error names it); nothing written",
    428: "this route needs an Idempotency-Key header; nothing written",
    429: "too many requests for this key; retry after the Retry-After header's seconds",
    503: "a service the route needs is not there; retry later",
}
"""The error statuses a route may declare, with what each means at this gateway."""

#: What every route behind an API key can answer.
KEYED: tuple[int, ...] = (401, 403, 422, 429)
#: What a route that reads a JSON body can answer besides.
BODY: tuple[int, ...] = (400, 413, 422)

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="`Authorization: Bearer KEY` (keys: `hero keys create`)",
)
_header_key = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="the same key"
)
#: A router's ``dependencies=``: its routes take a key by either scheme (the OpenAPI says so).
KEYED_SECURITY = [Security(_bearer), Security(_header_key)]


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A ``responses=`` mapping declaring ``statuses`` with their model and description."""
    declared: dict[int | str, dict[str, Any]] = {}
    for code in sorted(set(statuses)):
        if code not in DESCRIPTIONS:
            raise ValueError(f"no description for status {code}: add it to DESCRIPTIONS")
        model = ValidationErrorBody if code == 422 else ErrorBody
        declared[code] = {"model": model, "description": DESCRIPTIONS[code]}
    return declared


def _code(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "error"
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")


async def _shaped(request: Request, error: Exception) -> Response:
    """The framework's refusals (a plain-text ``detail``) in the gateway's error shape."""
    assert isinstance(error, StarletteHTTPException)
    if isinstance(error.detail, str):
        body = {"detail": {"error": _code(error.status_code), "message": error.detail}}
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)
    return await http_exception_handler(request, error)


def install_error_shape(app: FastAPI) -> None:
    """Every HTTP refusal of ``app`` answers :class:`ErrorBody`, the framework's too."""
    app.add_exception_handler(StarletteHTTPException, _shaped)
