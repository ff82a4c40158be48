"""The treasury's snapshots of its pending conversions: restored and fed the tail, it has
exactly the pending payments a full replay has and converts exactly those; a corrupt
snapshot is logged and the whole log replayed. On the memory store (the codec and the
keeper are pure)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from agents.treasury.oracle import PriceOracle, Rate
from agents.treasury.runtime import TreasuryWorker
from agents.treasury.service import TreasuryService
from agents.treasury.snapshot import (
    SNAPSHOT_NAME,
    TREASURY_FINGERPRINT,
    TREASURY_SCHEMA_VERSION,
    treasury_fingerprint,
    treasury_snapshots,
)
from agents.treasury.webhook import PaymentNotice
from hero.config import HeroSettings
from hero.domain.clock import ManualClock
from hero.store import MemoryEventStore, MemorySnapshotStore, Snapshot, SnapshotCadence
from schemas import Currency


class _Oracle(PriceOracle):
    def __init__(self, clock: ManualClock):
        self._clock = clock

    def _lookup(self, currency: Currency) -> Rate:
        return Rate(currency=currency, tft_per_unit=Decimal(100), observed_at=self._clock.now(),
                    source="t")  # fmt: skip


def _treasury(store: MemoryEventStore, clock: ManualClock,
              snapshots: MemorySnapshotStore | None) -> TreasuryService:  # fmt: skip
    keeper = None if snapshots is None else treasury_snapshots(snapshots, SnapshotCadence(1, 3600))
    return TreasuryService(store, _Oracle(clock), clock, snapshots=keeper)


def _receive(service: TreasuryService, *event_ids: str) -> None:
    for event_id in event_ids:
        notice = PaymentNotice(provider_event_id=event_id, offtaker_id="acme", amount="10",
                               currency="USD")  # fmt: skip
        service.receive(notice)


def _market() -> tuple[MemoryEventStore, ManualClock, MemorySnapshotStore, Snapshot]:
    """Three payments converted and their snapshot saved; then two received, and a receipt
    of a converted one delivered again."""
    clock = ManualClock(datetime(2026, 11, 23, 12, tzinfo=UTC))
    store, snapshots = MemoryEventStore(clock), MemorySnapshotStore()
    first = _treasury(store, clock, snapshots)
    _receive(first, "e1", "e2", "e3")
    done, failed = first.convert_pending()
    assert (len(done), failed) == (3, [])
    first.pending()  # folds its own conversions: the snapshot is at the head
    saved = snapshots.latest(SNAPSHOT_NAME, TREASURY_SCHEMA_VERSION)
    assert saved is not None
    assert saved.position == store.current_position()
    _receive(first, "e4", "e5", "e1")
    return store, clock, snapshots, saved


def test_restored_and_the_tail_has_what_a_full_replay_has():
    store, clock, snapshots, saved = _market()
    restored = _treasury(store, clock, snapshots)
    whole = _treasury(store, clock, None)
    pending = restored.pending()
    assert restored._snapshots is not None
    assert restored._snapshots.loaded == saved.position  # read the tail only
    assert pending == whole.pending()
    assert len(pending) == 2
    done, _ = restored.convert_pending()
    assert sorted(c.payment_id for c in done) == sorted(p.payment_id for p in pending)
    assert whole.pending() == restored.pending() == []


def test_a_corrupt_snapshot_is_logged_and_the_whole_log_replayed(caplog):
    store, clock, snapshots, saved = _market()
    body = bytearray(saved.body)
    body[-2] ^= 0xFF
    snapshots.save(Snapshot(saved.name, saved.position, saved.schema_version, bytes(body)))
    restored = _treasury(store, clock, snapshots)
    with caplog.at_level(logging.WARNING, logger="hero.store.snapshots"):
        pending = restored.pending()
    assert "unreadable" in caplog.text
    assert restored._snapshots is not None
    assert restored._snapshots.loaded is None
    assert pending == _treasury(store, clock, None).pending()
    assert len(pending) == 2


def test_the_snapshot_shape_is_pinned_to_its_version():
    # A change to PendingConversions (or a payment event) changes this fingerprint: bump
    # TREASURY_SCHEMA_VERSION and pin the new fingerprint with it.
    pinned = (TREASURY_SCHEMA_VERSION, TREASURY_FINGERPRINT)
    assert (TREASURY_SCHEMA_VERSION, treasury_fingerprint()) == pinned


class _FailingSnapshots(MemorySnapshotStore):
    """A snapshot store that cannot save (a full disk, a store away)."""

    def save(self, snapshot: Snapshot) -> None:
        raise OSError("no space left on device")


def _worker(tmp_path: Path, snapshots: MemorySnapshotStore) -> TreasuryWorker:
    clock = ManualClock(datetime(2026, 11, 23, 12, tzinfo=UTC))
    settings = HeroSettings(data_dir=tmp_path, snapshot_every_events=1)
    return TreasuryWorker(MemoryEventStore(clock), settings, clock, oracle=_Oracle(clock),
                          snapshots=snapshots)  # fmt: skip


def test_a_snapshot_that_cannot_be_saved_makes_the_treasury_degraded(tmp_path: Path) -> None:
    worker = _worker(tmp_path, _FailingSnapshots())
    _receive(worker.treasury, "e1")
    worker.run_once()
    status = worker.status()
    assert status["status"] == "degraded"
    assert "snapshot treasury" in status["reason"]
    assert "no space left" in status["reason"]
    assert status["converted"] == 1  # the work itself went on


def test_a_treasury_whose_snapshots_save_is_ok(tmp_path: Path) -> None:
    worker = _worker(tmp_path, MemorySnapshotStore())
    _receive(worker.treasury, "e1")
    worker.run_once()
    assert (worker.status()["status"], worker.status()["reason"]) == ("ok", None)
