"""Payment webhooks through the gateway: ``POST /webhooks/payments`` is passed, body and
signature untouched, to the treasury, which verifies and records it.

The gateway is the one address a payment provider is given; the treasury keeps the secret,
the signature check and the conversion, so nothing about money is done twice. No API key:
the provider signs each delivery (``Stripe-Signature`` or ``Hero-Signature``).
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from hero.gateway._openapi import errors
from hero.gateway.context import GatewayContext

__all__ = ["SIGNATURE_HEADERS", "WEBHOOK_PATH", "router"]

# The treasury's own path and headers (agents/treasury/app.py), spelled out so the gateway
# does not import the treasury's app.
WEBHOOK_PATH = "/webhooks/payments"
SIGNATURE_HEADERS = ("stripe-signature", "hero-signature")
TIMEOUT_S = 10.0
# The treasury's answers, passed on as they are: its refusals are ``{"error": REASON}``.
_TREASURY_REFUSAL = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}},
                "required": ["error"],
            }
        }
    }
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    **{
        code: {**_TREASURY_REFUSAL, "description": f"the treasury's refusal: {what}"}
        for code, what in (
            (400, "a missing or malformed signature, or a body that is not JSON"),
            (401, "a signature that does not verify, or a stale timestamp"),
            (409, "this payment was recorded before"),
            (422, "a payment the treasury cannot take (e.g. an unknown currency)"),
            (503, "no treasury, or one that does not answer: the provider retries later"),
        )
    },
    413: errors(413)[413],
}


def router(context: GatewayContext) -> APIRouter:
    routes = APIRouter(tags=["payments"])
    target = context.settings.treasury_url

    @routes.post(
        WEBHOOK_PATH,
        summary="A payment provider's signed event, for the treasury",
        responses=_RESPONSES,
    )
    async def payment_webhook(request: Request) -> Response:
        if not target:
            return JSONResponse(
                {"error": "no_treasury: this gateway has no treasury to pass payments to"},
                status_code=503,
            )
        headers = {
            name: request.headers[name] for name in SIGNATURE_HEADERS if name in request.headers
        }
        headers["content-type"] = request.headers.get("content-type", "application/json")
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
                answer = await client.post(
                    f"{target.rstrip('/')}{WEBHOOK_PATH}",
                    content=await request.body(),
                    headers=headers,
                )
        except httpx.HTTPError as error:  # the provider retries a 503 later
            return JSONResponse(
                {"error": f"treasury_unavailable: {type(error).__name__}"}, status_code=503
            )
        return Response(
            content=answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type", "application/json"),
        )

    return routes
