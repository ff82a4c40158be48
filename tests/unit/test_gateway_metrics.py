"""Metrics of the gateway: the Prometheus text exposition (hero.gateway._prometheus), the counts
folded from the log, the scrape (hero.gateway.metrics) and the HTTP middleware."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.testclient import TestClient

from hero.config import HeroSettings
from hero.domain.clock import SystemClock
from hero.gateway._prometheus import (
    CONTENT_TYPE,
    Counter,
    Gauge,
    Histogram,
    Registry,
    escape_label_value,
    format_value,
    render,
)
from hero.gateway.auth import caller
from hero.gateway.context import GatewayContext, Principal, Role
from hero.gateway.metrics import (
    GatewayMetrics,
    LogTally,
    gateway_metrics,
    observe_http,
    router,
)
from hero.readmodels.projections import PROJECTIONS
from hero.store import NewEvent
from hero.store.memory import MemoryEventStore
from hero.store.port import StreamAppend
from schemas import (
    ContractCancelled,
    ContractCreated,
    ContractResumed,
    ContractSuspended,
    Event,
    NegotiationAwarded,
    NegotiationExpired,
    NegotiationFailed,
    RfqIssued,
)
from tests.unit._gwt import T0
from tests.unit.test_market_model import contract, rfq

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> Samples:
    """The samples of a text exposition, label values unescaped; checks each family's TYPE
    comes before its samples and appears once."""
    samples: Samples = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name = line.split()[2]
            assert name not in typed, f"{name} typed twice"
            typed.add(name)
            continue
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        assert match, line
        name, body, value = match.groups()
        assert re.sub(r"_(bucket|sum|count)$", "", name) in typed or name in typed, line
        labels = frozenset(
            (k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
            for k, v in _LABEL.findall(body or "")
        )
        samples[(name, labels)] = float(value)
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


# -- the exposition ----------------------------------------------------------------------------


def test_counter_and_gauge_render_with_help_type_and_sorted_series() -> None:
    counter = Counter("jobs_total", "Jobs done.", ("kind",))
    counter.inc(kind="b")
    counter.inc(2, kind="a")
    gauge = Gauge("depth", "Queue depth.")
    gauge.set(3.5)
    assert render([counter, gauge]) == (
        "# HELP jobs_total Jobs done.\n"
        "# TYPE jobs_total counter\n"
        'jobs_total{kind="a"} 2\n'
        'jobs_total{kind="b"} 1\n'
        "# HELP depth Queue depth.\n"
        "# TYPE depth gauge\n"
        "depth 3.5\n"
    )


def test_label_values_and_help_are_escaped() -> None:
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    gauge = Gauge("g", 'Help with \\ and\na "quote".', ("path",))
    gauge.set(1, path='/x"y\\z\n')
    text = gauge.render()
    assert '# HELP g Help with \\\\ and\\na "quote".\n' in text
    assert 'g{path="/x\\"y\\\\z\\n"} 1\n' in text
    assert parse_exposition(text) == {("g", frozenset({("path", '/x"y\\z\n')})): 1.0}


def test_values_are_formatted_as_the_format_wants() -> None:
    assert format_value(3) == "3"
    assert format_value(2.0) == "2"
    assert format_value(0.25) == "0.25"
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(math.nan) == "NaN"
    assert format_value(1e300) == "1e+300"


def test_histogram_buckets_are_cumulative_and_end_in_inf() -> None:
    hist = Histogram("lat_seconds", "Latency.", ("route",), buckets=(0.1, 0.5, 1))
    for value in (0.05, 0.1, 0.3, 0.7, 3.0):
        hist.observe(value, route="/a")
    text = hist.render()
    assert text.splitlines() == [
        "# HELP lat_seconds Latency.",
        "# TYPE lat_seconds histogram",
        'lat_seconds_bucket{route="/a",le="0.1"} 2',  # 0.1 lands in le="0.1": le is inclusive
        'lat_seconds_bucket{route="/a",le="0.5"} 3',
        'lat_seconds_bucket{route="/a",le="1"} 4',
        'lat_seconds_bucket{route="/a",le="+Inf"} 5',
        'lat_seconds_sum{route="/a"} 4.15',
        'lat_seconds_count{route="/a"} 5',
    ]
    assert hist.count(route="/a") == 5


def test_metrics_refuse_bad_names_labels_and_values() -> None:
    with pytest.raises(ValueError, match="invalid metric name"):
        Counter("bad-name", "x")
    with pytest.raises(ValueError, match="invalid label name"):
        Gauge("g", "x", ("bad-label",))
    with pytest.raises(ValueError, match="reserved"):
        Histogram("h", "x", ("le",))
    with pytest.raises(ValueError, match="increasing"):
        Histogram("h", "x", buckets=(1, 0.5))
    counter = Counter("c_total", "x", ("a",))
    with pytest.raises(ValueError, match="cannot decrease"):
        counter.inc(-1, a="1")
    with pytest.raises(ValueError, match="takes labels"):
        counter.inc(b="1")
    registry = Registry()
    registry.counter("c_total", "x")
    with pytest.raises(ValueError, match="already registered"):
        registry.gauge("c_total", "x")
    with pytest.raises(ValueError, match="appears twice"):
        render([Gauge("g", "x"), Gauge("g", "y")])


def test_a_registry_renders_kept_and_extra_metrics() -> None:
    registry = Registry()
    registry.counter("kept_total", "Kept.").inc()
    extra = Gauge("extra", "Computed.")
    extra.set(7)
    samples = parse_exposition(registry.render([extra]))
    assert sample(samples, "kept_total") == 1
    assert sample(samples, "extra") == 7


# -- counts folded from the log --------------------------------------------------------------------


def _append(
    store: MemoryEventStore, stream: str, *events: Event | tuple[str, dict[str, Any]]
) -> None:
    """Append events, or raw rows (type, payload) that the model cannot read."""
    now = datetime.now(UTC)
    version = store.stream_version(stream)
    news = [
        NewEvent(
            type=e[0] if isinstance(e, tuple) else type(e).__name__,
            schema_version=1,
            topic="hero.reservations",
            payload=e[1] if isinstance(e, tuple) else e.model_dump(mode="json"),
            occurred_at=now,
            actor="t",
        )
        for e in events
    ]
    store.append_many([StreamAppend(stream, version, news)], f"cmd-{stream}-{version}")


def _rfq(negotiation_id: str) -> RfqIssued:
    return rfq().model_copy(update={"negotiation_id": negotiation_id})


def _created(contract_id: str) -> ContractCreated:
    return contract(contract_id, f"h-{contract_id}")


def _cancelled(contract_id: str) -> ContractCancelled:
    return ContractCancelled(contract_id=contract_id, node_id="n1", reason="ended")


def _seeded() -> MemoryEventStore:
    store = MemoryEventStore()
    for n in range(4):
        _append(store, f"nego-{n}", _rfq(f"ng{n}"))
    _append(store, "nego-0", NegotiationAwarded(negotiation_id="ng0", offtaker_id="acme",
                                                contract_ids=["a"]))  # fmt: skip
    _append(store, "nego-1", NegotiationFailed(negotiation_id="ng1", offtaker_id="acme",
                                               reason="no offers"))  # fmt: skip
    _append(store, "nego-2", NegotiationExpired(negotiation_id="ng2", offtaker_id="acme"))
    _append(store, "c-a", _created("a"))
    suspended = ContractSuspended(contract_id="b", offtaker_id="acme", node_id="n1",
                                  unpaid_hour=T0, grace_ends_at=T0)  # fmt: skip
    _append(store, "c-b", _created("b"), suspended)
    _append(store, "c-c", _cancelled("c"))  # before its creation
    _append(store, "c-c2", _created("c"))
    _append(store, "c-d", _created("d"))
    resumed = ContractResumed(contract_id="d", offtaker_id="acme", node_id="n1")
    _append(store, "c-d", suspended.model_copy(update={"contract_id": "d"}), resumed)
    _append(store, "bill-1", ("UsageBilled", {}), ("UsageBilled", {}))  # counted by type
    return store


def test_the_tally_counts_negotiations_bills_and_live_contracts() -> None:
    store = _seeded()
    tally = LogTally()
    assert tally.follow(store, batch=3) == store.current_position()
    snap = tally.snapshot()
    assert snap.position == store.current_position()
    assert snap.negotiations == {"open": 1, "awarded": 1, "failed": 1, "expired": 1}
    assert snap.bills == 2
    assert snap.contracts_live == 2  # a and d; b suspended, c cancelled before it was created
    assert snap.events["ContractCreated"] == 4
    assert tally.follow(store) == 0  # nothing new: nothing read
    _append(store, "c-a", _cancelled("a"))
    tally.follow(store)
    assert tally.snapshot().contracts_live == 1
    _append(store, "c-x", ("ContractCreated", {"contract_id": "x"}))  # does not decode
    tally.follow(store)
    after = tally.snapshot()
    assert (after.events["ContractCreated"], after.contracts_live) == (5, 1)
    assert after.position == store.current_position()


def test_the_tally_ignores_rows_it_has_counted() -> None:
    store = _seeded()
    tally = LogTally()
    rows = store.read_all(1, 1000)
    tally.apply(rows)
    tally.apply(rows[:5])
    assert tally.snapshot().events["RfqIssued"] == 4


# -- the scrape --------------------------------------------------------------------------------


class FakeReadModels:
    def __init__(self, position: int, fail: bool = False, hang: bool = False):
        self._position, self.fail, self.hang = position, fail, hang

    async def position(self, name: str) -> int:
        if self.fail:
            raise ConnectionError("valkey is away")
        if self.hang:
            await asyncio.sleep(60)
        return self._position


@dataclass
class FakeStats:
    subscribers: int = 3
    live: int = 2
    subscribed_total: int = 9
    slow_consumer_drops: int = 4
    position: int = 5


@dataclass
class FakeBroadcaster:
    stats: FakeStats


def _context(tmp_path: Path, store: MemoryEventStore, **extras: Any) -> GatewayContext:
    return GatewayContext(
        settings=HeroSettings(data_dir=tmp_path),
        store=store,
        redis=cast(Any, None),
        clock=SystemClock(),
        extras=dict(extras),
    )


def _write_relay_health(tmp_path: Path, position: int) -> None:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    body = {"pid": 1, "position": position, "published": position, "refills": 0,
            "updated_at": "2026-01-02T03:04:05+00:00"}  # fmt: skip
    (run / "relay.health").write_text(json.dumps(body))


async def test_a_scrape_reports_positions_lags_counts_and_streams(tmp_path: Path) -> None:
    store = _seeded()
    head = store.current_position()
    _write_relay_health(tmp_path, head - 2)
    context = _context(
        tmp_path,
        store,
        read_models=FakeReadModels(head - 1),
        broadcaster=FakeBroadcaster(FakeStats()),
    )
    metrics = GatewayMetrics(cache_s=0, tally_wait_s=5)
    s = parse_exposition(await metrics.render(context))
    assert sample(s, "hero_store_position") == head
    assert sample(s, "hero_relay_position") == head - 2
    assert sample(s, "hero_events_relayed_total") == head - 2
    assert (
        sample(s, "hero_relay_health_timestamp_seconds")
        == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    )
    assert sample(s, "hero_consumer_lag_positions", consumer="relay") == 2
    for name in PROJECTIONS:
        assert sample(s, "hero_consumer_lag_positions", consumer=f"readmodels/{name}") == 1
    assert sample(s, "hero_consumer_lag_positions", consumer="gateway-sse") == head - 5
    assert sample(s, "hero_consumer_lag_positions", consumer="gateway-metrics") == 0
    assert sample(s, "hero_negotiations_total", status="open") == 1
    assert sample(s, "hero_bills_total") == 2
    assert sample(s, "hero_contracts_live") == 2
    assert sample(s, "hero_events_recorded_total", type="UsageBilled") == 2
    assert sample(s, "hero_sse_subscribers") == 3
    assert sample(s, "hero_sse_dropped_total") == 4
    for source in ("store", "readmodels", "relay"):
        assert sample(s, "hero_metrics_source_up", source=source) == 1


async def test_what_cannot_be_read_is_left_out_and_said(tmp_path: Path) -> None:
    store = _seeded()
    context = _context(tmp_path, store, read_models=FakeReadModels(0, fail=True))
    s = parse_exposition(await GatewayMetrics(cache_s=0, tally_wait_s=5).render(context))
    assert sample(s, "hero_metrics_source_up", source="readmodels") == 0
    assert sample(s, "hero_metrics_source_up", source="relay") == 0  # no health file
    assert not any(n == "hero_relay_position" for n, _ in s)
    assert not any(n == "hero_sse_subscribers" for n, _ in s)
    consumers = {dict(labels)["consumer"] for n, labels in s if n == "hero_consumer_lag_positions"}
    assert consumers == {"gateway-metrics"}


async def test_a_hanging_valkey_does_not_hang_the_scrape(tmp_path: Path) -> None:
    context = _context(tmp_path, _seeded(), read_models=FakeReadModels(0, hang=True))
    metrics = GatewayMetrics(cache_s=0, tally_wait_s=5, source_timeout_s=0.1)
    started = time.perf_counter()
    s = parse_exposition(await metrics.render(context))
    assert time.perf_counter() - started < 2
    assert sample(s, "hero_metrics_source_up", source="readmodels") == 0
    assert sample(s, "hero_metrics_source_up", source="store") == 1


async def test_the_computed_part_is_cached(tmp_path: Path) -> None:
    store = _seeded()
    context = _context(tmp_path, store, read_models=FakeReadModels(0))
    metrics = GatewayMetrics(cache_s=60, tally_wait_s=5)
    first = parse_exposition(await metrics.render(context))
    _append(store, "nego-9", _rfq("ng9"))
    assert parse_exposition(await metrics.render(context)) == first
    metrics.cache_s = 0
    again = parse_exposition(await metrics.render(context))
    assert sample(again, "hero_store_position") == sample(first, "hero_store_position") + 1
    assert sample(again, "hero_negotiations_total", status="open") == 2


async def test_a_scrape_of_10k_documents_stays_under_100ms(tmp_path: Path) -> None:
    store = MemoryEventStore()
    now = datetime.now(UTC)
    rfq_json, contract_json = (
        _rfq("ng").model_dump(mode="json"),
        _created("c").model_dump(mode="json"),
    )
    for batch in range(20):
        appends = [
            StreamAppend(
                f"c-{batch}-{i}",
                0,
                [
                    NewEvent(
                        "RfqIssued",
                        1,
                        "hero.reservations",
                        {**rfq_json, "negotiation_id": f"ng{batch}-{i}"},
                        now,
                        "t",
                    ),
                    NewEvent(
                        "ContractCreated",
                        1,
                        "hero.reservations",
                        {**contract_json, "contract_id": f"c{batch}-{i}"},
                        now,
                        "t",
                    ),
                ],
            )
            for i in range(500)
        ]
        store.append_many(appends, f"cmd-{batch}")
    context = _context(tmp_path, store, read_models=FakeReadModels(0))
    metrics = GatewayMetrics(cache_s=0, tally_wait_s=30)
    await metrics.render(context)  # the first scrape reads the log once
    _append(store, "nego-x", _rfq("ngx"))
    started = time.perf_counter()
    s = parse_exposition(await metrics.render(context))
    assert time.perf_counter() - started < 0.1
    assert sample(s, "hero_contracts_live") == 10_000
    assert sample(s, "hero_negotiations_total", status="open") == 10_001


# -- HTTP ----------------------------------------------------------------------------------------


def _app(tmp_path: Path) -> tuple[FastAPI, GatewayContext]:
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "page.html").write_text("<p>hi</p>")
    context = _context(tmp_path, MemoryEventStore(), read_models=FakeReadModels(0))
    app = FastAPI()
    app.state.context = context

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        if item_id == "missing":
            raise HTTPException(404, "no such item")
        if item_id == "boom":
            raise RuntimeError("boom")
        return {"id": item_id}

    @app.get("/events")
    async def events() -> StreamingResponse:
        async def body() -> AsyncIterator[str]:
            yield "data: 1\n\n"
            await asyncio.sleep(0.3)
            yield "data: 2\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    app.mount("/static", StaticFiles(directory=tmp_path / "static"), name="static")
    app.include_router(router(context))
    assert observe_http(app) is observe_http(app)  # installed once
    # Keys live in Valkey (tests/integration/test_stack_security.py checks the real one): here
    # the caller is an admin key's holder.
    app.dependency_overrides[caller] = lambda: Principal("k-admin", Role.ADMIN)
    return app, context


def test_requests_are_counted_by_route_template_and_status(tmp_path: Path) -> None:
    app, context = _app(tmp_path)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/items/1").status_code == 200
        assert client.get("/items/2").status_code == 200
        assert client.get("/items/missing").status_code == 404
        assert client.get("/items/boom").status_code == 500
        assert client.get("/nowhere").status_code == 404
        assert client.get("/events").text == "data: 1\n\ndata: 2\n\n"
        assert client.get("/static/page.html").status_code == 200
        answer = client.get("/metrics")
    assert answer.headers["content-type"] == CONTENT_TYPE
    s = parse_exposition(answer.text)
    route = "/items/{item_id}"
    assert sample(s, "hero_http_requests_total", method="GET", route=route, status="200") == 2
    assert sample(s, "hero_http_requests_total", method="GET", route=route, status="404") == 1
    assert sample(s, "hero_http_requests_total", method="GET", route=route, status="500") == 1
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert sample(s, "hero_http_requests_total", **unmatched) == 1
    ok = {"method": "GET", "route": route, "status": "200"}
    assert sample(s, "hero_http_request_duration_seconds_count", **ok) == 2
    assert sample(s, "hero_http_request_duration_seconds_bucket", **ok, le="+Inf") == 2
    stream = {"method": "GET", "route": "/events", "status": "200"}
    assert sample(s, "hero_http_request_duration_seconds_sum", **stream) < 0.3  # to its headers
    assert gateway_metrics(context).http.requests.get(**ok) == 2
    static = {"method": "GET", "route": "/static/{path}", "status": "200"}
    assert sample(s, "hero_http_requests_total", **static) == 1


def test_metrics_need_an_admin_key(tmp_path: Path) -> None:
    app, _ = _app(tmp_path)
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 200
        app.dependency_overrides[caller] = lambda: Principal("k-dev", Role.DEVELOPER)
        refused = client.get("/metrics")
        assert refused.status_code == 403
        assert refused.json()["detail"]["error"] == "wrong_role"
        del app.dependency_overrides[caller]
        anonymous = client.get("/metrics")  # no key: refused before any key is looked up
    assert anonymous.status_code == 401
    assert anonymous.json()["detail"]["error"] == "missing_key"
    assert anonymous.headers["www-authenticate"].startswith("Bearer")


def test_observe_http_needs_a_context() -> None:
    with pytest.raises(ValueError, match="context"):
        observe_http(FastAPI())
