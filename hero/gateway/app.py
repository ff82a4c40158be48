"""The gateway as one FastAPI app: ``create_app(context)``.

It includes the routers of the gateway modules (commands, queries, streams), bounds request
bodies (413), serves OpenAPI at ``/openapi.json`` and an unauthenticated ``GET /health``, and
-- unless told not to -- runs the read-model :class:`~hero.readmodels.projector.Projector`
as a background task for as long as it lives (its lifespan), so the queries follow the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from hero.gateway import catalogue, commands, dashboard, metrics, queries, streams, webhooks
from hero.gateway._openapi import install_error_shape
from hero.gateway.auth import api_keys
from hero.gateway.context import GatewayContext
from hero.gateway.limits import DEFAULT_MAX_BODY, BodyLimit
from hero.gateway.scopes import PROJECTIONS
from hero.readmodels.projector import DEFAULT_PREFIX, Projector, ReadModels

__all__ = ["TITLE", "create_app"]

TITLE = "HERO gateway"
log = logging.getLogger(__name__)


def create_app(
    context: GatewayContext,
    *,
    run_projector: bool = True,
    max_body: int = DEFAULT_MAX_BODY,
    prefix: str = DEFAULT_PREFIX,
) -> FastAPI:
    """The app over ``context``; ``prefix`` names the Valkey keys of read models and keys."""
    context.extras.setdefault("read_models", ReadModels(context.redis, prefix))
    api_keys(context)  # made now, with the default prefix, for every route to share
    stop = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task: asyncio.Task[None] | None = None
        if run_projector:
            projector = Projector(context.store, context.redis, prefix=prefix)
            context.extras["projector"] = projector
            task = asyncio.create_task(projector.run(stop), name="read-models")
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task
            broadcaster = context.extras.get("broadcaster")
            if broadcaster is not None:
                broadcaster.close()

    app = FastAPI(
        title=TITLE,
        description="REST commands and queries of HERO, and its event streams, behind API keys.",
        version="1",
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.context = context
    install_error_shape(app)
    app.add_middleware(BodyLimit, max_bytes=max_body)
    app.include_router(commands.router(context))
    app.include_router(queries.router(context))
    app.include_router(streams.router(context))
    app.include_router(catalogue.router(context))
    app.include_router(metrics.router(context))
    app.include_router(dashboard.router(context))
    app.include_router(webhooks.router(context))
    metrics.observe_http(app, context)

    @app.get("/health", tags=["health"], summary="Liveness, and how far the read models are")
    async def health() -> dict[str, Any]:
        read: ReadModels = context.extras["read_models"]
        try:
            positions = {name: await read.position(name) for name in PROJECTIONS}
        except Exception as error:  # Valkey away: the gateway still answers, and says so
            return {"status": "degraded", "error": str(error)}
        return {"status": "ok", "read_models": positions}

    return app
