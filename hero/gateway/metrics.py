"""``GET /metrics``: the gateway's Prometheus exposition (text format 0.0.4), made of counts only
(no ids, no amounts, no keys), behind an admin key: the gateway may listen on every interface,
and the figures (traffic, lag, the market's volume) are the operator's. A Prometheus scrape
job sends the key as ``authorization: {credentials: <admin key>}`` (``Bearer``).

Kept between scrapes (by :class:`GatewayMetrics`, one per :class:`GatewayContext`):

- ``hero_http_requests_total`` and ``hero_http_request_duration_seconds`` by method, route
  template and status, recorded by the ASGI middleware that :func:`observe_http` installs;
- a :class:`LogTally` following the event log, incrementally (each scrape reads only what
  was appended since the last): events by type and bills (counts of rows), negotiations by
  status and live contracts (read from the market model it keeps, :mod:`hero.model`).
  Following the log is what keeps a scrape cheap: reading 10k read-model documents from
  Valkey and decoding them takes ~0.6 s here; the log is read once, then only what is new.

Computed at scrape time (cached for ``cache_s``, a second by default):

- ``hero_store_position``; the relay's confirmed position from ``run/relay*.health``
  (``hero_relay_position``, ``hero_events_relayed_total``);
- ``hero_consumer_position`` and ``hero_consumer_lag_positions`` (store position minus the
  consumer's) for the relay, each read-model projection (``readmodels/<name>``), the gateway's
  SSE broadcaster (``gateway-sse``) and this tally (``gateway-metrics``);
- ``hero_sse_subscribers`` and ``hero_sse_dropped_total`` from the broadcaster, when there is one;
- ``hero_rows_skipped_total{source}``: store rows a follower in this gateway (``read-models``,
  ``event-streams``) could not decode and stepped over (``hero events skipped`` lists them);
- ``hero_metrics_source_up{source}``: 0 when the store, Valkey or the relay's health could not
  be read (those figures are then left out rather than reported wrong).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hero.gateway._openapi import KEYED, KEYED_SECURITY, errors
from hero.gateway._prometheus import CONTENT_TYPE, Counter, Gauge, Metric, Registry
from hero.gateway._strategy_metrics import (
    DECISION_EVENTS,
    StrategySnapshot,
    StrategyTally,
    strategy_metrics,
)
from hero.gateway.auth import caller, require_role
from hero.gateway.context import GatewayContext, Principal, Role
from hero.model import MarketState
from hero.model import apply as model_apply
from hero.readmodels.projections import PROJECTIONS
from hero.readmodels.projector import ReadModels
from hero.relay import health_paths
from hero.store import EventStore, PoisonRow, RecordedEvent, decode_event, skip_counts

__all__ = [
    "HTTP_BUCKETS",
    "NEGOTIATION_STATUSES",
    "GatewayMetrics",
    "HttpMetrics",
    "HttpMetricsMiddleware",
    "LogTally",
    "TallySnapshot",
    "gateway_metrics",
    "observe_http",
    "router",
]

log = logging.getLogger(__name__)

HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
NEGOTIATION_STATUSES = ("open", "awarded", "failed", "expired")
UNMATCHED_ROUTE = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_EXTRAS_KEY = "metrics"

#: The events the figures read from the model (negotiations and contracts): only these are
#: decoded and applied, the rest counted by their type column. Decoding every row would make
#: the first scrape of a long log ~100 times slower, for facts no figure shows.
_APPLIED = frozenset(
    {
        "RfqIssued",
        "NegotiationAwarded",
        "NegotiationFailed",
        "NegotiationExpired",
        "ContractCreated",
        "ContractCancelled",
        "ContractSuspended",
        "ContractResumed",
    }
)


# -- counts folded from the log -------------------------------------------------------------------


@dataclass(frozen=True)
class TallySnapshot:
    position: int
    events: dict[str, int]
    negotiations: dict[str, int]
    bills: int
    contracts_live: int
    strategy: StrategySnapshot = field(default_factory=StrategySnapshot)


class LogTally:
    """Figures of the log, in position order; pure apart from its lock (its rows come from
    :meth:`follow` or from a test).

    Negotiations by status and live contracts are read from the market model
    (:mod:`hero.model`), which the tally applies each row to: one fold, the same the read
    models and the CLI read. Events by type and bills are counts of rows (their type column),
    and the strategy notes of decisions a tally of those notes: figures of the log itself.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._follow_lock = threading.Lock()
        self.position = 0
        self._types: Tally[str] = Tally()
        self._model = MarketState()
        self._strategy = StrategyTally()

    def apply(self, rows: Iterable[RecordedEvent]) -> None:
        with self._lock:
            for row in rows:
                if row.position <= self.position:
                    continue  # already counted
                self._types[row.type] += 1
                if row.type in _APPLIED:
                    self._applied(row)
                if row.type in DECISION_EVENTS:
                    self._decision(row)
                self.position = row.position

    def _decision(self, row: RecordedEvent) -> None:
        try:
            self._strategy.apply(row.envelope_json)
        except (ValueError, AttributeError, TypeError):  # a row it cannot read: count on
            log.warning("metrics: %s at %d does not parse; not counted", row.type, row.position)

    def _applied(self, row: RecordedEvent) -> None:
        try:
            envelope, event = decode_event(row)
        except PoisonRow as error:  # a row it cannot read: counted by type, nothing more
            log.warning("metrics: %s at %d does not decode (%s); not counted", row.type,
                        row.position, error)  # fmt: skip
            return
        model_apply(self._model, envelope, event)

    def follow(self, store: EventStore, batch: int = 5000) -> int:
        """Read and count everything after :attr:`position`; returns how many rows it read."""
        with self._follow_lock:
            read = 0
            while rows := store.read_all(self.position + 1, batch):
                self.apply(rows)
                read += len(rows)
            return read

    def snapshot(self) -> TallySnapshot:
        with self._lock:
            types = dict(self._types)
            statuses: Tally[str] = Tally(n.status for n in self._model.negotiations.values())
            live = sum(c.status == "active" for c in self._model.contracts.values())
            position = self.position
            strategy = self._strategy.snapshot()
        negotiations = {status: statuses[status] for status in NEGOTIATION_STATUSES}
        return TallySnapshot(
            position=position,
            events=dict(sorted(types.items())),
            negotiations=negotiations,
            bills=types.get("UsageBilled", 0),
            contracts_live=live,
            strategy=strategy,
        )


# -- HTTP ------------------------------------------------------------------------------------------


class HttpMetrics:
    """Requests by method, route template (not the raw path: bounded label values) and status."""

    def __init__(self, registry: Registry, buckets: Sequence[float] = HTTP_BUCKETS):
        labels = ("method", "route", "status")
        self.requests = registry.counter(
            "hero_http_requests_total", "HTTP requests answered by the gateway.", labels
        )
        self.duration = registry.histogram(
            "hero_http_request_duration_seconds",
            "Time to answer an HTTP request (for an event stream: until its headers are sent).",
            labels,
            buckets,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method.upper() if method.upper() in _METHODS else "OTHER"
        labels = {"method": method, "route": route, "status": str(status)}
        self.requests.inc(**labels)
        self.duration.observe(seconds, **labels)


def _route_of(scope: Scope) -> str:
    """The matched route's template; under a mount (static files, say) ``<mount>/{path}``."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    root, app_root = scope.get("root_path", ""), scope.get("app_root_path")
    if isinstance(app_root, str) and isinstance(root, str) and root.startswith(app_root):
        mount = root[len(app_root) :]
        if mount:
            return f"{mount}/{{path}}"
    return UNMATCHED_ROUTE


class HttpMetricsMiddleware:
    """Pure ASGI middleware: times each HTTP request into :class:`HttpMetrics`. The route is
    the matched route's template (``/v1/schemas/{type_name}``), ``<unmatched>`` for none; a
    request that fails before answering counts as 500; an event stream's time is its time to
    the response headers (its length is the subscriber's, not the gateway's latency)."""

    def __init__(self, app: ASGIApp, http: HttpMetrics):
        self.app = app
        self.http = http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        headers_at: float | None = None
        streaming = False

        async def timed_send(message: Message) -> None:
            nonlocal status, headers_at, streaming
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers_at = time.perf_counter()
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-type":
                        streaming = value.split(b";")[0].strip() == b"text/event-stream"
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            end = headers_at if streaming and headers_at is not None else time.perf_counter()
            self.http.observe(scope.get("method", "OTHER"), _route_of(scope), status, end - start)


# -- the registry of a gateway ---------------------------------------------------------------------


class GatewayMetrics:
    """A gateway's metrics: the HTTP ones kept in :attr:`registry`, the log :attr:`tally`, and
    the scrape (:meth:`render`), whose computed part is cached for ``cache_s``."""

    def __init__(
        self, *, cache_s: float = 1.0, tally_wait_s: float = 0.05, source_timeout_s: float = 2.0
    ):
        self.registry = Registry()
        self.http = HttpMetrics(self.registry)
        self.tally = LogTally()
        self.cache_s = cache_s
        self.tally_wait_s = tally_wait_s
        self.source_timeout_s = source_timeout_s
        self._cached: tuple[float, str] | None = None
        # One thread reads the log for the tally: the store keeps a connection per thread.
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hero-metrics")
        self._reading: Future[int] | None = None
        self._reading_guard = threading.Lock()

    def close(self) -> None:
        self._reader.shutdown(wait=False, cancel_futures=True)

    async def render(self, context: GatewayContext) -> str:
        now = time.monotonic()
        cached = self._cached
        if cached is None or now - cached[0] >= self.cache_s:
            text = "".join(m.render() for m in await self.collect(context))
            cached = self._cached = (time.monotonic(), text)
        return cached[1] + self.registry.render()

    async def _advance_tally(self, store: EventStore) -> None:
        """Let the tally read what is new, waiting at most ``tally_wait_s``: a first scrape of
        a long log returns what was counted so far and the reading goes on behind it."""
        with self._reading_guard:
            reading = self._reading
            if reading is None or reading.done():
                reading = self._reading = self._reader.submit(self.tally.follow, store)
        done, _ = await asyncio.wait({asyncio.wrap_future(reading)}, timeout=self.tally_wait_s)
        for future in done:
            if future.exception() is not None:
                log.warning("metrics: reading the log failed: %r", future.exception())

    async def collect(self, context: GatewayContext) -> list[Metric]:
        """The metrics computed from the store, Valkey, the relay's health and the SSE
        broadcaster (not cached: :meth:`render` caches)."""
        up = Gauge(
            "hero_metrics_source_up",
            "1 when /metrics could read the source (store, readmodels, relay); 0 leaves its "
            "figures out.",
            ("source",),
        )
        positions: dict[str, int] = {}
        out: list[Metric] = [up]

        relay = _active_relay_health(health_paths(context.settings))
        up.set(1 if relay is not None else 0, source="relay")
        if relay is not None:
            out.extend(_relay_metrics(relay))
            positions["relay"] = int(relay.get("position", 0))

        read_models = _read_models(context)

        async def applied() -> dict[str, int]:
            return {f"readmodels/{n}": await read_models.position(n) for n in PROJECTIONS}

        try:  # a Valkey that hangs must not hang the scrape
            positions.update(await asyncio.wait_for(applied(), timeout=self.source_timeout_s))
            up.set(1, source="readmodels")
        except Exception as error:  # Valkey away: say so, and leave its figures out
            log.warning("metrics: read-model positions unavailable: %r", error)
            up.set(0, source="readmodels")

        broadcaster = context.extras.get("broadcaster")
        stats = getattr(broadcaster, "stats", None)
        sse_position = getattr(stats, "position", 0)
        if isinstance(sse_position, int) and sse_position > 0:  # 0: not started yet
            positions["gateway-sse"] = sse_position
        out.extend(_sse_metrics(stats))
        out.append(_skipped_metric())

        try:
            await self._advance_tally(context.store)
            store_position = await asyncio.to_thread(context.store.current_position)
            up.set(1, source="store")
        except Exception as error:
            log.warning("metrics: the store is unavailable: %r", error)
            up.set(0, source="store")
            return out
        snapshot = self.tally.snapshot()
        positions["gateway-metrics"] = snapshot.position

        out.append(
            _gauge("hero_store_position", "The store's last committed position.", store_position)
        )
        consumer_position = Gauge(
            "hero_consumer_position", "The last store position a consumer applied.", ("consumer",)
        )
        lag = Gauge(
            "hero_consumer_lag_positions",
            "Store position minus the consumer's applied position (events it has yet to apply).",
            ("consumer",),
        )
        for consumer, position in sorted(positions.items()):
            consumer_position.set(position, consumer=consumer)
            lag.set(max(0, store_position - position), consumer=consumer)
        out.extend([consumer_position, lag])
        out.extend(_tally_metrics(snapshot))
        return out


def _skipped_metric() -> Counter:
    skipped = Counter(
        "hero_rows_skipped_total",
        "Store rows a follower in this process could not decode and stepped over.",
        ("source",),
    )
    for source, count in sorted(skip_counts().items()):
        skipped.set_total(count, source=source)
    return skipped


def _gauge(name: str, help: str, value: float) -> Gauge:
    gauge = Gauge(name, help)
    gauge.set(value)
    return gauge


def _total(name: str, help: str, value: float, **labels: str) -> Counter:
    counter = Counter(name, help, tuple(labels))
    counter.set_total(value, **labels)
    return counter


def _read_models(context: GatewayContext) -> Any:
    models = context.extras.get("read_models")
    return models if hasattr(models, "position") else ReadModels(context.redis)


def _active_relay_health(paths: list[Path]) -> dict[str, Any] | None:
    """The health of the relay that publishes: standbys report no position, and a relay
    killed while active leaves its last report behind, older than its successor's."""
    found = [body for body in map(_relay_health, paths) if body is not None]
    return max(found, key=lambda body: str(body.get("updated_at", "")), default=None)


def _relay_health(path: Path) -> dict[str, Any] | None:
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) and isinstance(body.get("position"), int) else None


def _relay_metrics(health: dict[str, Any]) -> list[Metric]:
    position = int(health["position"])
    out: list[Metric] = [
        _gauge(
            "hero_relay_position", "The last store position the relay confirmed on Kafka.", position
        ),
        _total(
            "hero_events_relayed_total",
            "Events the relay has confirmed on Kafka: its position (store positions are "
            "gap-free from 1); back to 0 when it refills a broker that lost its data.",
            position,
        ),
    ]
    if isinstance(health.get("refills"), int):
        out.append(
            _total(
                "hero_relay_refills_total",
                "Times this relay process refilled a broker that lost its data.",
                health["refills"],
            )
        )
    updated = _timestamp(health.get("updated_at"))
    if updated is not None:
        out.append(
            _gauge(
                "hero_relay_health_timestamp_seconds",
                "When the relay last wrote its health (Unix time): stale when it stopped.",
                updated,
            )
        )
    return out


def _timestamp(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def _sse_metrics(stats: Any) -> list[Metric]:
    if stats is None:
        return []
    out: list[Metric] = []
    for name, attr, help in (
        ("hero_sse_subscribers", "subscribers", "Open stream subscriptions (SSE and WebSocket)."),
        ("hero_sse_live_subscribers", "live", "Subscriptions following the live feed."),
    ):
        value = getattr(stats, attr, None)
        if isinstance(value, int):
            out.append(_gauge(name, help, value))
    for name, attr, help in (
        (
            "hero_sse_dropped_total",
            "slow_consumer_drops",
            "Subscribers closed as slow consumers (their buffer limit reached).",
        ),
        ("hero_sse_subscribed_total", "subscribed_total", "Stream subscriptions opened."),
    ):
        value = getattr(stats, attr, None)
        if isinstance(value, int):
            out.append(_total(name, help, value))
    return out


def _tally_metrics(snapshot: TallySnapshot) -> list[Metric]:
    events = Counter("hero_events_recorded_total", "Events in the store, by type.", ("type",))
    for type_name, count in snapshot.events.items():
        events.set_total(count, type=type_name)
    negotiations = Gauge(
        "hero_negotiations_total",
        "Negotiations by status (open, awarded, failed, expired), counted from the log.",
        ("status",),
    )
    for status in NEGOTIATION_STATUSES:
        negotiations.set(snapshot.negotiations.get(status, 0), status=status)
    return [
        events,
        negotiations,
        _total("hero_bills_total", "Usage bills (UsageBilled events) recorded.", snapshot.bills),
        _gauge(
            "hero_contracts_live",
            "Contracts live now (created, not suspended or cancelled).",
            snapshot.contracts_live,
        ),
        *strategy_metrics(snapshot.strategy),
    ]


# -- wiring ----------------------------------------------------------------------------------------


def gateway_metrics(context: GatewayContext) -> GatewayMetrics:
    """The context's :class:`GatewayMetrics` (``context.extras["metrics"]``), made on first use."""
    metrics = context.extras.get(_EXTRAS_KEY)
    if not isinstance(metrics, GatewayMetrics):
        metrics = GatewayMetrics()
        context.extras[_EXTRAS_KEY] = metrics
    return metrics


def observe_http(app: Starlette, context: GatewayContext | None = None) -> HttpMetrics:
    """Install the HTTP metrics middleware on ``app`` (before it starts); ``context`` defaults
    to ``app.state.context``. Calling it twice installs it once."""
    context = context if context is not None else getattr(app.state, "context", None)
    if not isinstance(context, GatewayContext):
        raise ValueError("observe_http needs the gateway context (or app.state.context)")
    http = gateway_metrics(context).http
    if getattr(app.state, "hero_http_metrics", None) is not http:
        app.add_middleware(HttpMetricsMiddleware, http=http)
        app.state.hero_http_metrics = http
    return http


def router(context: GatewayContext) -> APIRouter:
    api = APIRouter(tags=["metrics"])
    metrics = gateway_metrics(context)

    @api.get(
        "/metrics",
        summary="Prometheus metrics (text format 0.0.4): counts only, an admin key needed",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}, **errors(*KEYED)},
        dependencies=KEYED_SECURITY,
    )
    async def scrape(principal: Annotated[Principal, Depends(caller)]) -> Response:
        require_role(principal, Role.ADMIN)
        return Response(await metrics.render(context), media_type=CONTENT_TYPE)

    return api
