"""The payment webhook as a small ASGI app (FastAPI), usable without the gateway.

``POST /webhooks/payments`` with the provider's signature header (``Stripe-Signature``, or
``Hero-Signature``): 200 with ``"duplicate": false`` the first time a provider event arrives,
200 with ``"duplicate": true`` (nothing written) for a redelivery; 400/401/422 with a reason
for the refused ones, which write nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from agents.treasury.service import TreasuryService
from agents.treasury.webhook import WebhookRefused, receive
from hero.domain.clock import Clock
from hero.domain.errors import Rejected

__all__ = ["SIGNATURE_HEADERS", "WEBHOOK_PATH", "create_app"]

WEBHOOK_PATH = "/webhooks/payments"
SIGNATURE_HEADERS = ("stripe-signature", "hero-signature")


def create_app(
    treasury: TreasuryService,
    secret: bytes,
    clock: Clock,
    *,
    tolerance_s: int = 300,
    status: Callable[[], dict[str, Any]] | None = None,
) -> FastAPI:
    app = FastAPI(title="HERO treasury", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post(WEBHOOK_PATH)
    async def payment_webhook(request: Request) -> JSONResponse:
        payload = await request.body()
        header = next(
            (request.headers[name] for name in SIGNATURE_HEADERS if name in request.headers),
            None,
        )
        try:
            notice = receive(header, payload, secret, now=clock.now(), tolerance_s=tolerance_s)
        except WebhookRefused as refused:
            return JSONResponse({"error": refused.reason}, status_code=refused.status)
        try:
            result = await run_in_threadpool(treasury.receive, notice)
        except Rejected as error:  # contention on the accounts: the provider retries later
            return JSONResponse({"error": str(error)}, status_code=503)
        # A repeat is answered 2xx too: providers retry a 4xx for days, then disable the
        # endpoint. ``duplicate`` says nothing was written this time.
        return JSONResponse(
            {
                "status": "received",
                "payment_id": result.payment_id,
                "duplicate": result.duplicate,
            }
        )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", **(status() if status is not None else {})}

    return app
