"""The treasury as a stack component: ``python -m agents.treasury --port N``.

It serves the payment webhook on the loopback address and, on a worker thread, converts
fiat payments to TFT and bills the contract-hours that are over. It needs only the event
store, so it starts right after the relay. Ready once ``run/treasury.health`` names its pid
and its port accepts connections.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from hero.config import LOOPBACK, HeroSettings
from infra.hero_processes import _Served, _status_detail
from infra.processes import settings_env

__all__ = ["TREASURY_COMMAND", "WEBHOOK_PATH", "TreasuryProcess", "treasury_detail"]

TREASURY_COMMAND: tuple[str, ...] = (sys.executable, "-m", "agents.treasury")
"""How the treasury is run, before ``--port N``; TreasuryProcess takes a ``command``."""
# The same path as agents.treasury.app.WEBHOOK_PATH, spelled out so that `hero status` does
# not import FastAPI to print an address (tests/e2e/test_cli_payments.py checks they agree).
WEBHOOK_PATH = "/webhooks/payments"


class TreasuryProcess(_Served):
    """The payment webhook and the conversion/billing worker, in one process."""

    name = "treasury"
    health_file = "treasury.health"
    # Uvicorn drains open requests, then the worker finishes its pass (10 s at most).
    stop_timeout = 15.0

    def __init__(
        self,
        settings: HeroSettings,
        port: int | None = None,
        *,
        command: Sequence[str] | None = None,
    ) -> None:
        super().__init__(settings.data_dir, port, host=LOOPBACK)
        self.settings = settings
        self.command = tuple(command) if command is not None else TREASURY_COMMAND

    @property
    def webhook_url(self) -> str | None:
        return f"{self.url}{WEBHOOK_PATH}" if self.url is not None else None

    def _prepare(self) -> None:
        super()._prepare()
        # The webhook secret is made here, before the process starts: the treasury and the
        # CLI's payment tools then only ever read it and never race to create it.
        from agents.treasury.runtime import webhook_secret

        webhook_secret(self.settings)

    def _env(self) -> dict[str, str]:
        env = settings_env(self.settings, super()._env())
        env.update(
            {
                "HERO_DATA_DIR": str(self.data_dir),
                "HERO_TREASURY_PORT": str(self.port),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env


def treasury_detail(treasury: TreasuryProcess) -> str | None:
    """``webhook http://127.0.0.1:PORT/webhooks/payments, 2 converted, 27 billed, ...``."""
    health = treasury.health()
    if health is None:
        return None
    parts = [
        f"webhook {treasury.webhook_url}",
        f"{health.get('converted', 0)} converted",
        f"{health.get('billed', 0)} billed",
    ]
    if health.get("failed"):
        parts.append(f"{health['failed']} conversions failed")
    if health.get("skipped"):
        parts.append(f"{health['skipped']} unreadable rows skipped (hero events skipped)")
    return _status_detail(parts, health)
