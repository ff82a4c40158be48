"""Debian's Chromium for the browser tests (the dashboard, the twin's report): where it is,
how it is started, and the mark that skips a test when it is not installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
#: No sandbox (tests run as root in CI), no GPU, and nothing that reaches the network by itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"Debian's chromium is not installed ({CHROMIUM} missing): "
    "./run setup installs it as root (apt-get install chromium)",
)


def launch(playwright: Any, profile: str, *, offline: bool = False) -> Any:
    """Chromium headless in its own ``profile`` directory, a 1280x900 viewport."""
    return playwright.chromium.launch_persistent_context(
        profile,
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 900},
        offline=offline,
    )
