"""The treasury process: the payment webhook, and a worker that converts and bills.

``python -m agents.treasury`` (``hero up`` starts it; ``hero payments serve`` runs it in the
foreground). The worker converts pending payments and runs billing every
``HERO_TREASURY_INTERVAL_S``; both steps are idempotent, so a kill -9 at any point only
repeats work. ``<data_dir>/run/treasury.health`` tells the port, the pid and the last pass.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from agents.treasury.oracle import FixedRateOracle, PriceOracle, RatesFileOracle, StellarDexOracle
from agents.treasury.quotes import QuotePolicy
from agents.treasury.service import TreasuryService
from agents.treasury.snapshot import treasury_snapshots
from hero.config import HeroSettings
from hero.domain.clock import Clock, SystemClock
from hero.domain.ledger import RevenueSplit
from hero.payments.billing import BillingReport, BillingService, BillingSettings
from hero.payments.billing_snapshot import billing_snapshots
from hero.secretfile import secret_in
from hero.store import EventStore, SnapshotCadence, SnapshotKeeper, SnapshotStore, skip_counts

__all__ = [
    "TreasuryWorker",
    "billing_settings",
    "health_path",
    "oracle_from",
    "parse_split",
    "quote_policy",
    "webhook_secret",
]

log = logging.getLogger("agents.treasury")


def health_path(settings: HeroSettings) -> Path:
    return settings.data_dir / "run" / "treasury.health"


def webhook_secret(settings: HeroSettings) -> bytes:
    """The configured secret, or the data dir's own (made once, readable by its owner only)."""
    if settings.webhook_secret is not None:
        return settings.webhook_secret.get_secret_value().encode()
    return secret_in(settings.data_dir / "treasury.secret").encode()


def oracle_from(settings: HeroSettings, clock: Clock) -> PriceOracle:
    kind = settings.tft_oracle
    if kind == "fixed":
        return FixedRateOracle({"USD": settings.tft_per_usd, "EUR": settings.tft_per_eur}, clock)
    if kind.startswith("file:"):
        return RatesFileOracle(Path(kind.removeprefix("file:")), clock)
    if kind == "stellar":
        import httpx

        return StellarDexOracle(httpx.Client(timeout=10.0), clock=clock)
    raise ValueError(f"HERO_TFT_ORACLE must be fixed, file:PATH or stellar, got {kind!r}")


def parse_split(text: str) -> RevenueSplit:
    """``"60/20/20"``: farmer, farming pool and ThreeFold, in percent."""
    try:
        farmer, pool, threefold = (Decimal(part.strip()) / 100 for part in text.split("/"))
    except (ValueError, ArithmeticError):
        raise ValueError(f"HERO_REVENUE_SPLIT must be FARMER/POOL/TF, got {text!r}") from None
    return RevenueSplit(farmer, pool, threefold)


def billing_settings(settings: HeroSettings) -> BillingSettings:
    return BillingSettings(
        split=parse_split(settings.revenue_split),
        grace=timedelta(days=float(settings.grace_days)),
        low_balance_hours=settings.low_balance_hours,
        pricing=settings.pricing(),
        usage_wait=timedelta(seconds=settings.usage_wait_s),
    )


def quote_policy(settings: HeroSettings) -> QuotePolicy:
    return QuotePolicy(
        spread=settings.quote_spread,
        ttl_s=settings.quote_ttl_s,
        max_slippage=settings.quote_max_slippage,
    )


@dataclass
class PassReport:
    converted: int = 0
    failed: int = 0
    billed: int = 0
    at: str = ""


class TreasuryWorker:
    """Converts pending payments and bills due hours, on a thread, until stopped."""

    def __init__(
        self,
        store: EventStore,
        settings: HeroSettings,
        clock: Clock | None = None,
        *,
        oracle: PriceOracle | None = None,
        snapshots: SnapshotStore | None = None,
    ):
        """With ``snapshots`` the treasury's pending conversions and billing's state start
        from their newest snapshots there and save new ones at the settings' cadence."""
        self.clock = clock or SystemClock()
        self.settings = settings
        self.oracle = oracle or oracle_from(settings, self.clock)
        cadence = SnapshotCadence(settings.snapshot_every_events, settings.snapshot_every_s)
        self._keepers: list[SnapshotKeeper] = []
        if snapshots is not None:
            self._keepers = [
                treasury_snapshots(snapshots, cadence),
                billing_snapshots(snapshots, cadence),
            ]
        keepers: list[SnapshotKeeper | None] = [*self._keepers] or [None, None]
        self.treasury = TreasuryService(
            store, self.oracle, self.clock, policy=quote_policy(settings), snapshots=keepers[0]
        )
        self.billing = BillingService(
            store,
            lambda: self.oracle.rate("USD").tft_per_unit,
            self.clock,
            settings=billing_settings(settings),
            snapshots=keepers[1],
        )
        self.totals = PassReport()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> BillingReport:
        converted, failed = self.treasury.convert_pending()
        for failure in failed:
            log.warning("payment %s not converted: %s", failure.payment_id, failure.reason)
        report = self.billing.run()
        self.totals.converted += len(converted)
        self.totals.failed += len(failed)
        self.totals.billed += len(report.bills)
        self.totals.at = self.clock.now().isoformat(timespec="seconds")
        return report

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="treasury-worker", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a bad pass is logged; the next one starts from the store again
                log.exception("treasury pass failed")
            self._stop.wait(self.settings.treasury_interval_s)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        """The totals, and ``degraded`` with the reason while a snapshot could not be saved
        or read: the log is replayed then, so nothing is wrong yet, but a restart takes long.
        Skipped rows are counted, not degraded (as on the gateway's ``/health``: they stay
        skipped for good; ``hero events skipped`` lists them)."""
        snapshot_errors = {k.name: k.last_error for k in self._keepers if k.last_error}
        reasons = [f"snapshot {name}: {error}" for name, error in sorted(snapshot_errors.items())]
        return {
            "converted": self.totals.converted,
            "failed": self.totals.failed,
            "billed": self.totals.billed,
            "last_pass": self.totals.at,
            "skipped": sum(skip_counts().values()),
            "snapshot_errors": snapshot_errors,
            "status": "degraded" if reasons else "ok",
            "reason": "; ".join(reasons) or None,
        }


def write_health(path: Path, port: int, worker: TreasuryWorker) -> None:
    body = {
        "pid": os.getpid(),
        "port": port,
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **worker.status(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    tmp.replace(path)
