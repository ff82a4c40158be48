"""The dashboard in a real browser: Debian's headless Chromium, driven by Playwright, loads
``GET /`` from uvicorn on 127.0.0.1 serving the dashboard router and the real SSE streams router
over the data dir's real event store (SQLite; PostgreSQL on the production engines), while
``hero demo --in-process`` fills that store.

The page is opened before the demo runs, so every chart is drawn from events as they arrive.
Then the gateway is stopped, the demo runs again, and a new gateway comes up on the same port:
EventSource's own retry resumes each stream with ``Last-Event-ID``, and the numbers shown still
equal the store's (no event lost, none counted twice). A screenshot is saved each time.

Authentication: EventSource cannot send headers, so the page passes its key as ``?key=``, which
``auth.caller`` accepts on the streams. Keys live in Valkey, and this test has none: it overrides
``caller`` with one test key accepted from either place (an override of the gateway's key
lookup, not a stand-in for any server); tests/integration/test_gateway_api.py covers the real
lookup, ``?key=`` included.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
import uvicorn
from fastapi import FastAPI, HTTPException, Request

from hero.config import HeroSettings
from hero.domain.clock import SystemClock
from hero.gateway import auth, dashboard, streams
from hero.gateway.context import GatewayContext, Principal, Role
from hero.store import EventStore, open_store
from tests._wait import wait_until
from tests.e2e._chromium import WAIT_MS, launch, needs_chromium
from tests.e2e._cli import hero, store_url

CHARTS = ("capacity", "contracts", "prices", "scaling", "tft")
ADMIN_KEY = "hero_test_dashboard_admin"
ADMIN = Principal("k-dashboard", Role.ADMIN)

pytestmark = [
    pytest.mark.e2e,
    needs_chromium,
]


class _ForcedShutdown(logging.Filter):
    """Drops uvicorn's reports of the open streams it cancels when the test stops it."""

    def filter(self, record: logging.LogRecord) -> bool:
        cancelled = record.exc_info is not None and record.exc_info[0] is asyncio.CancelledError
        return not (cancelled or record.getMessage().startswith("Cancel "))


_FORCED_SHUTDOWN = _ForcedShutdown()


async def key_caller(request: Request) -> Principal:
    """The test's one admin key, from a header or the ``key`` query parameter."""
    key = auth.presented_key(request.headers) or request.query_params.get(dashboard.KEY_PARAM)
    if key != ADMIN_KEY:
        raise HTTPException(401, detail={"error": "unknown_key", "message": "unknown key"})
    return ADMIN


class Gateway:
    """The dashboard and streams routers served by uvicorn in a thread on 127.0.0.1 (a free
    port, or the given one to come back where the page expects it)."""

    def __init__(self, store: EventStore, data_dir: Path, port: int = 0):
        self.context = GatewayContext(
            settings=HeroSettings(data_dir=data_dir),
            store=store,
            redis=cast(Any, None),
            clock=SystemClock(),
            extras={"stream_options": streams.StreamOptions(heartbeat_s=1.0, poll_interval_s=0.05)},
        )
        app = FastAPI()
        app.state.context = self.context
        app.include_router(dashboard.router(self.context))
        app.include_router(streams.router(self.context))
        app.dependency_overrides[auth.caller] = key_caller
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def start(self) -> Gateway:
        logging.getLogger("uvicorn.error").addFilter(_FORCED_SHUTDOWN)
        self.thread.start()
        wait_until(lambda: self.server.started, 10, "uvicorn to start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        logging.getLogger("uvicorn.error").removeFilter(_FORCED_SHUTDOWN)
        assert not self.thread.is_alive(), "uvicorn did not stop"
        broadcaster = self.context.extras.get("broadcaster")
        if broadcaster is not None:
            broadcaster.close()

    @property
    def port(self) -> int:
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port


@dataclass
class Expected:
    """What the page should show, folded from the store the way the dashboard folds events."""

    head: int = 0
    created: int = 0
    cancelled: int = 0
    total: Counter[str] = field(default_factory=Counter)
    committed: Counter[str] = field(default_factory=Counter)
    prices: Counter[str] = field(default_factory=Counter)
    decisions: int = 0
    bills: int = 0
    billed_tft: Decimal = Decimal(0)
    converted_tft: Decimal = Decimal(0)
    fiat: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))


def expected_from(store: EventStore) -> Expected:
    wanted = {t for types in dashboard.SUBSCRIPTIONS.values() for t in types}
    nodes: dict[str, tuple[str, int]] = {}
    contracts: dict[str, tuple[str, int, bool]] = {}
    out = Expected()
    after = 0
    while rows := store.read_all(after + 1):
        for row in rows:
            after = row.position
            if row.type not in wanted:
                continue
            out.head = row.position
            p = json.loads(row.envelope_json)["payload"]
            if row.type == "NodeRegistered":
                nodes[p["node_id"]] = (p["grid"], p["total"]["cru"])
            elif row.type == "ContractCreated" and p["contract_id"] not in contracts:
                contracts[p["contract_id"]] = (p["grid"], p["resources"]["cru"], True)
                out.created += 1
                if p["price_hour"]["currency"] == "USD":
                    out.prices[p["grid"]] += 1
            elif row.type == "ContractCancelled" and contracts.get(p["contract_id"], ("", 0, 0))[2]:
                grid, cru, _ = contracts[p["contract_id"]]
                contracts[p["contract_id"]] = (grid, cru, False)
                out.cancelled += 1
            elif row.type == "ScaleDecided":
                out.decisions += 1
            elif row.type == "UsageBilled":
                out.bills += 1
                out.billed_tft += Decimal(p["amount"]["amount"])
            elif row.type == "FiatConverted":
                out.converted_tft += Decimal(p["tft"]["amount"])
                out.fiat[p["fiat"]["currency"]] += Decimal(p["fiat"]["amount"])
    for grid, cru in nodes.values():
        out.total[grid] += cru
    for grid, cru, active in contracts.values():
        if active:
            out.committed[grid] += cru
    return out


def run_demo(data_dir: Path) -> None:
    result = hero("demo", "--in-process", data_dir=data_dir, timeout=180)
    assert result.returncode == 0, result.stderr + result.stdout


def screenshot_dir(tmp_path: Path) -> Path:
    configured = os.environ.get("HERO_SCREENSHOT_DIR")
    where = Path(configured) if configured else tmp_path / "screenshots"
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture
def browser_page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="hero-chromium-")
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright, profile)
            try:
                yield browser
            finally:
                browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


# Everything rendered from every event up to `head`, with all streams open.
CAUGHT_UP = """([head, charts]) => {
  const status = document.getElementById("status");
  return status.dataset.state === "open"
    && Number(status.dataset.lastPosition) >= head
    && charts.every((name) =>
      Number(document.querySelector(`[data-chart="${name}"]`).dataset.points) > 0);
}"""
STATS = """els => Object.fromEntries(
  els.map((el) => [el.dataset.stat, el.querySelector("b").textContent]))"""


def points(page: Any) -> dict[str, int]:
    return {
        name: int(page.get_attribute(f'[data-chart="{name}"]', "data-points")) for name in CHARTS
    }


def assert_shows(page: Any, want: Expected) -> None:
    shown: dict[str, str] = page.eval_on_selector_all("[data-stat]", STATS)
    assert int(page.get_attribute("#status", "data-last-position")) == want.head
    assert shown["contracts-created"] == str(want.created)
    assert shown["contracts-cancelled"] == str(want.cancelled)
    assert shown["contracts-active"] == str(want.created - want.cancelled)
    for grid, total in want.total.items():
        assert shown[f"{grid}-total"].startswith(f"{total} cores")
        assert shown[f"{grid}-committed"] == str(want.committed[grid])
    for grid, count in want.prices.items():
        assert shown[f"{grid}-prices"] == str(count)
    assert shown["scaling-decisions"] == str(want.decisions)
    assert shown["bills"] == str(want.bills)
    # Shown rounded (4 and 2 places) from a float sum of exact amounts.
    assert abs(Decimal(shown["tft-billed"]) - want.billed_tft) <= Decimal("0.0001")
    assert abs(Decimal(shown["tft-converted"]) - want.converted_tft) <= Decimal("0.01")
    for currency, paid in want.fiat.items():
        assert abs(Decimal(shown[f"fiat-{currency}"]) - paid) <= Decimal("0.01")
    drawn = points(page)
    assert drawn["contracts"] == want.created + want.cancelled
    assert drawn["prices"] == sum(want.prices.values())
    assert drawn["scaling"] == want.decisions
    assert drawn["capacity"] == len(want.total)


def test_the_dashboard_draws_the_demo_live_and_resumes_after_a_restart(
    tmp_path: Path, browser_page: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    def say(line: str) -> None:  # shown in the test output, captured or not
        with capsys.disabled():
            print(line)

    began = time.monotonic()
    shots = screenshot_dir(tmp_path)
    data_dir = tmp_path / "hero"
    data_dir.mkdir()
    store = open_store(store_url(data_dir))  # the one `hero demo --in-process` fills
    page = browser_page.new_page()
    crashes: list[str] = []
    page.on("pageerror", lambda error: crashes.append(str(error)))
    gateway = Gateway(store, data_dir).start()
    try:
        # An empty market: the page connects, and has nothing to draw yet.
        page.goto(f"http://127.0.0.1:{gateway.port}/?key={ADMIN_KEY}")
        page.wait_for_function(
            "() => document.getElementById('status').dataset.state === 'open'", timeout=WAIT_MS
        )
        assert "key=" not in page.url  # taken into sessionStorage, out of the address bar
        assert points(page) == dict.fromkeys(CHARTS, 0)

        # The demo runs while the page watches.
        run_demo(data_dir)
        first = expected_from(store)
        assert min(first.created, first.decisions, first.bills, first.cancelled) > 0
        page.wait_for_function(CAUGHT_UP, arg=[first.head, list(CHARTS)], timeout=WAIT_MS)
        assert_shows(page, first)
        live = shots / "dashboard.png"
        page.screenshot(path=str(live), full_page=True)
        say(f"\ndashboard screenshot (live demo): {live}")

        # The gateway goes away; the demo runs again; a new gateway comes back on the port.
        port = gateway.port
        gateway.stop()
        page.wait_for_function(
            "() => document.getElementById('status').dataset.state === 'reconnecting'",
            timeout=WAIT_MS,
        )
        run_demo(data_dir)
        second = expected_from(store)
        assert second.created > first.created
        gateway = Gateway(store, data_dir, port=port).start()
        page.wait_for_function(CAUGHT_UP, arg=[second.head, list(CHARTS)], timeout=WAIT_MS)
        assert_shows(page, second)  # resumed by Last-Event-ID: nothing lost, nothing twice
        resumed = shots / "dashboard-resumed.png"
        page.screenshot(path=str(resumed), full_page=True)
        say(f"dashboard screenshot (after the restart): {resumed}")

        # A key the gateway refuses: the page says so instead of retrying forever.
        refused = browser_page.new_page()
        refused.goto(f"http://127.0.0.1:{gateway.port}/?key=not-a-key")
        refused.wait_for_function(
            "() => document.getElementById('status').dataset.state === 'closed'", timeout=WAIT_MS
        )
        assert "check the key" in refused.inner_text("#status")
        assert crashes == []
    finally:
        gateway.stop()
        store.close()
    say(f"dashboard browser test: {time.monotonic() - began:.1f} s")
