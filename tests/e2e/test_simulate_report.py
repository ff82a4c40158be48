"""``report.html`` of ``hero simulate`` opens offline in headless Chromium with every plot
drawn: each plot's element holds plotly's SVG with at least one trace. A screenshot of the
whole page is saved (under ``HERO_SCREENSHOT_DIR`` when set, else the test's tmp dir) and its
path printed. Chromium gets no network: the page must carry everything it needs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from hero.simulate import parse_scenario, simulate
from hero.simulate.html import PLOTS
from tests._simulation import small
from tests.e2e._chromium import WAIT_MS, launch, needs_chromium

pytestmark = [
    pytest.mark.e2e,
    needs_chromium,
]

#: True once every plot's element holds a drawn SVG with at least one trace.
ALL_DRAWN = """(ids) => ids.every((id) => {
    const element = document.getElementById(id);
    return element !== null && element.querySelector('svg.main-svg') !== null
        && element.querySelectorAll('g.trace, g.slice').length > 0;
})"""


def test_the_html_report_renders_every_plot_offline(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    done = simulate(parse_scenario(small(), "small"), days=2, seed=1, out=tmp_path / "out")
    page_path = tmp_path / "out" / "report.html"
    text = page_path.read_text()
    assert "<script src=" not in text  # nothing fetched: plotly's JavaScript is inlined
    shots = Path(os.environ.get("HERO_SCREENSHOT_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="hero-chromium-")
    requests: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright, profile, offline=True)
            try:
                page = browser.new_page()
                page.on("request", lambda request: requests.append(request.url))
                page.goto(page_path.as_uri())
                ids = [f"plot-{name}" for name in PLOTS]
                page.wait_for_function(ALL_DRAWN, arg=ids, timeout=WAIT_MS)
                drawn = page.locator(".plotly-graph-div svg.main-svg").count()
                shot = shots / "simulate-report.png"
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert drawn >= len(PLOTS)
    assert [url for url in requests if not url.startswith("file:")] == []
    assert shot.stat().st_size > 0
    print(
        f"\nreport.html of {done.report['scenario']}: {len(PLOTS)} plots drawn; screenshot {shot}"
    )
