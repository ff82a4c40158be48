"""The dashboard's router and files, without a browser: what ``GET /`` serves, that the page is
self-contained, and that the script draws from events the catalogue really has."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI
from fastapi.testclient import TestClient

from hero.config import HeroSettings
from hero.domain.clock import SystemClock
from hero.gateway import dashboard
from hero.gateway.context import GatewayContext
from schemas import REGISTRY

STATIC = Path(dashboard.__file__).parent / "static"
ROOT = Path(__file__).parents[2]
CHARTS = {"capacity", "contracts", "prices", "scaling", "tft"}


def client(tmp_path: Path) -> TestClient:
    context = GatewayContext(
        settings=HeroSettings(data_dir=tmp_path),
        store=cast(Any, None),
        redis=cast(Any, None),
        clock=SystemClock(),
    )
    app = FastAPI()
    app.include_router(dashboard.router(context))
    return TestClient(app)


def test_the_page_is_served_without_a_key_with_its_config_inlined(tmp_path: Path) -> None:
    answer = client(tmp_path).get("/")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert "__HERO_DASHBOARD_CONFIG__" not in answer.text
    block = re.search(
        r'<script id="hero-dashboard-config" type="application/json">(.*?)</script>', answer.text
    )
    assert block is not None
    config = json.loads(block.group(1))
    assert config == dashboard.config()
    assert config["key_param"] == "key"
    assert {s["topic"] for s in config["subscriptions"]} == set(dashboard.SUBSCRIPTIONS)


def test_the_script_and_style_are_served_from_the_package(tmp_path: Path) -> None:
    http = client(tmp_path)
    page = http.get("/").text

    for name, media_type in dashboard.ASSETS.items():
        assert f'"/dashboard/{name}"' in page
        answer = http.get(f"/dashboard/{name}")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == media_type
        assert answer.text == (STATIC / name).read_text()
    missing = http.get("/dashboard/..%2Fdashboard.py")
    assert missing.status_code == 404
    assert http.get("/dashboard/dashboard.html").status_code == 404


def test_the_page_fetches_nothing_from_elsewhere() -> None:
    for path in STATIC.iterdir():
        text = path.read_text()
        urls = set(re.findall(r"\b(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'`)]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (path.name, urls)
        assert "@import" not in text
        assert "fetch(" not in text


def test_every_subscribed_event_is_in_the_catalogue_on_its_topic_and_drawn() -> None:
    script = (STATIC / "dashboard.js").read_text()
    topics = {entry.type: entry.topic.value for entry in REGISTRY.entries()}
    for topic, types in dashboard.SUBSCRIPTIONS.items():
        for event_type in types:
            assert topics.get(event_type) == topic, event_type
            assert re.search(rf"^\s+{event_type}\(p", script, re.MULTILINE), event_type


def test_each_chart_of_the_page_has_its_drawing() -> None:
    html = (STATIC / "dashboard.html").read_text()
    script = (STATIC / "dashboard.js").read_text()

    marked = re.findall(r'data-chart="(\w+)" data-points="0"', html)
    assert sorted(marked) == sorted(CHARTS)
    for chart in CHARTS:
        assert re.search(rf"^\s+{chart}\(card\) \{{", script, re.MULTILINE), chart


def test_the_static_files_ship_in_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = project["tool"]["setuptools"]["package-data"]
    assert "static/*" in package_data["hero.gateway"]
    assert {p.name for p in STATIC.iterdir()} == {"dashboard.html", *dashboard.ASSETS}
