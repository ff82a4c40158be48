"""The live dashboard at ``GET /``: one page fed by the gateway's own event streams.

The page (``static/dashboard.html``, with ``dashboard.js`` and ``dashboard.css`` beside it,
served from this package: no build step, nothing fetched from elsewhere) takes an API key from
``?key=`` or a form (kept in the tab's ``sessionStorage``), opens one ``EventSource`` per topic
of :data:`SUBSCRIPTIONS` from ``start=earliest``, and keeps five charts live: capacity by grid,
contracts over time, prices of new contracts, scaling decisions and TFT flows. EventSource's own
retry resumes each stream with ``Last-Event-ID``.

EventSource cannot send headers, so the page passes the key as the query parameter
:data:`KEY_PARAM` of the stream URLs. The page and its files carry no data and need no key.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import HTMLResponse, Response

from hero.gateway.context import GatewayContext
from schemas import Topic

__all__ = [
    "ASSETS",
    "KEY_PARAM",
    "STREAMS_PATH",
    "SUBSCRIPTIONS",
    "asset",
    "config",
    "page",
    "router",
]

#: The events each chart is drawn from, by topic: one EventSource per topic.
SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    Topic.RESERVATIONS.value: ("NodeRegistered", "ContractCreated", "ContractCancelled"),
    Topic.UTILIZATION.value: ("ScaleDecided",),
    Topic.PAYMENTS.value: ("UsageBilled", "FiatConverted"),
}
STREAMS_PATH = "/v1/streams"
#: The query parameter the page sends its key in (EventSource cannot set ``Authorization``).
KEY_PARAM = "key"
#: The files the router serves under ``/dashboard/``, with their media types.
ASSETS: dict[str, str] = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_PLACEHOLDER = "__HERO_DASHBOARD_CONFIG__"
_HEADERS = {
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    # Everything from this origin; no inline script runs (the config block is JSON).
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
}


def _read(name: str) -> str:
    return (resources.files("hero.gateway") / "static" / name).read_text(encoding="utf-8")


def config() -> dict[str, object]:
    """What the page's script is told: the streams to open and where."""
    return {
        "streams_path": STREAMS_PATH,
        "key_param": KEY_PARAM,
        "subscriptions": [
            {"topic": topic, "types": list(types)} for topic, types in SUBSCRIPTIONS.items()
        ],
    }


@cache
def page() -> str:
    """The dashboard's HTML with its config inlined as a JSON block (``</`` escaped, so the
    block cannot end early)."""
    block = json.dumps(config(), separators=(",", ":")).replace("</", "<\\/")
    html = _read("dashboard.html")
    if _PLACEHOLDER not in html:
        raise RuntimeError(f"dashboard.html lacks its config placeholder {_PLACEHOLDER}")
    return html.replace(_PLACEHOLDER, block)


@cache
def asset(name: str) -> str:
    """One of :data:`ASSETS`' files; KeyError for any other name."""
    if name not in ASSETS:
        raise KeyError(name)
    return _read(name)


def router(context: GatewayContext) -> APIRouter:
    api = APIRouter(tags=["dashboard"])

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        """The live dashboard (no key needed for the page; its streams need one)."""
        return HTMLResponse(page(), headers=_HEADERS)

    @api.get("/dashboard/{name}", include_in_schema=False)
    async def dashboard_asset(name: str) -> Response:
        if name not in ASSETS:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                detail={"error": "not_found", "message": f"no dashboard file {name!r}"},
            )
        return Response(asset(name), media_type=ASSETS[name], headers=_HEADERS)

    return api
