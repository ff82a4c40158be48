"""The gateway as one FastAPI app: ``create_app(context)``.

It includes the routers of the gateway modules (commands, queries, streams), bounds request
bodies (413), serves OpenAPI at ``/openapi.json`` and an unauthenticated ``GET /health`` (ok,
or degraded with the reasons: see ``hero.gateway._health``), and -- unless told not to -- runs
the read-model :class:`~hero.readmodels.projector.Projector` as a background task for as long
as it lives (its lifespan), so the queries follow the log. A task that ends early is logged
and /health says it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from hero.gateway import catalogue, commands, dashboard, metrics, queries, streams, webhooks
from hero.gateway._client_rate import ClientRate
from hero.gateway._health import health_report, watch_task
from hero.gateway._openapi import install_error_shape
from hero.gateway.auth import RATE_LIMITS, api_keys, declare_rate_limits, rate_limits_for
from hero.gateway.context import GatewayContext
from hero.gateway.limits import DEFAULT_MAX_BODY, BodyLimit
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
    if RATE_LIMITS not in context.extras:
        context.extras[RATE_LIMITS] = rate_limits_for(context, prefix)
    stop = asyncio.Event()

    tasks: dict[str, asyncio.Task[None]] = {}
    context.extras["tasks"] = tasks

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if run_projector:
            snapshots = context.extras.get("snapshots")  # its process opens them
            projector = Projector(context.store, context.redis, prefix=prefix, snapshots=snapshots)
            context.extras["projector"] = projector
            tasks["read-models"] = asyncio.create_task(projector.run(stop), name="read-models")
            watch_task(tasks["read-models"], "read-models", stop)
        try:
            yield
        finally:
            stop.set()
            for task in tasks.values():
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await task  # its end was logged by watch_task if it came early
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
    app.add_middleware(ClientRate)  # added last: runs first, before a body is read
    app.include_router(commands.router(context))
    app.include_router(queries.router(context))
    app.include_router(streams.router(context))
    app.include_router(catalogue.router(context))
    app.include_router(metrics.router(context))
    app.include_router(dashboard.router(context))
    app.include_router(webhooks.router(context))
    metrics.observe_http(app, context)
    declare_rate_limits(app)

    @app.get("/health", tags=["health"], summary="ok, or degraded with the reasons")
    async def health() -> dict[str, Any]:
        return await health_report(context, tasks, context.settings.health_max_lag)

    return app
