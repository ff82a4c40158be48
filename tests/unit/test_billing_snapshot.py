"""Billing's snapshots: a service restored from one and fed the tail bills and decides exactly
as one that replayed the whole log; a corrupt snapshot is logged and the log replayed. On the
memory store and SQLite, snapshots in memory (billing's codec and the keeper are pure)."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from hero.domain.ledger import AccountKind, Transfer, account_id
from hero.payments.billing import BillingReport, BillingService
from hero.payments.billing_snapshot import (
    BILLING_FINGERPRINT,
    BILLING_SCHEMA_VERSION,
    BILLING_VERSION,
    SNAPSHOT_NAME,
    billing_fingerprint,
    billing_snapshots,
)
from hero.payments.ledger import LedgerService
from hero.store import MemorySnapshotStore, Snapshot, SnapshotCadence, SnapshotStore
from schemas import TransferKind
from tests.unit._billing import farm_market, tft
from tests.unit._gwt import Market, ctr

RATE = Decimal(100)  # TFT per USD: an hour of the contract is 1.125 TFT


def _market(store: str, tmp_path: Path) -> Market:
    """One contract, its offtaker funded for four hours, billed after three and a half."""
    market = farm_market(store, tmp_path)
    market.rfq("neg_1")
    market.make_offer("neg_1", "o1", "node_1")
    market.accept("neg_1", "o1")
    world, offtaker = account_id(AccountKind.WORLD, "outside"), account_id(AccountKind.OFFTAKER,
                                                                          "off_1")  # fmt: skip
    transfer = Transfer("fund-1", world, offtaker, tft("5"), TransferKind.PAYMENT, "pay-1")
    LedgerService(market.store, market.clock).post([transfer], "fund-1")
    market.clock.advance(timedelta(hours=3, minutes=30))
    return market


def _tail(market: Market) -> None:
    """Three hours more (the fifth cannot be paid: suspended) and a second contract."""
    market.clock.advance(timedelta(hours=3))
    market.node("node_2")
    market.rfq("neg_2")
    market.make_offer("neg_2", "o2", "node_2")
    market.accept("neg_2", "o2")


def _billing(market: Market, snapshots: SnapshotStore | None) -> BillingService:
    keeper = None if snapshots is None else billing_snapshots(snapshots, SnapshotCadence(1, 3600))
    return BillingService(market.store, lambda: RATE, market.clock, market=market.service,
                          snapshots=keeper)  # fmt: skip


def _same(restored: BillingService, whole: BillingService) -> None:
    assert restored.state == whole.state
    assert restored.contracts == whole.contracts
    assert restored.usage == whole.usage
    assert restored.penalties == whole.penalties


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_restored_and_the_tail_bills_as_a_full_replay(store, tmp_path):
    # Two markets made the same way: one billed from its snapshot, one from its whole log.
    markets = [_market(store, tmp_path / "a"), _market(store, tmp_path / "b")]
    snapshots = MemorySnapshotStore()
    first = [_billing(markets[0], snapshots).run(), _billing(markets[1], None).run()]
    assert first[0] == first[1]
    assert len(first[0].bills) == 3
    saved = snapshots.latest(SNAPSHOT_NAME, BILLING_SCHEMA_VERSION)
    assert saved is not None
    assert saved.position == markets[0].store.current_position()
    for market in markets:
        _tail(market)

    restored, whole = _billing(markets[0], snapshots), _billing(markets[1], None)
    reports: list[BillingReport] = [restored.run(), whole.run()]
    assert restored._snapshots is not None
    assert restored._snapshots.loaded == saved.position  # started from it: read the tail only
    assert reports[0] == reports[1]
    assert len(reports[0].bills) == 1  # the fourth hour; the fifth cannot be paid
    assert reports[0].suspended == [ctr("neg_1", "o1")]
    _same(restored, whole)


def test_a_corrupt_snapshot_is_logged_and_the_whole_log_replayed(tmp_path, caplog):
    markets = [_market("memory", tmp_path / "a"), _market("memory", tmp_path / "b")]
    snapshots = MemorySnapshotStore()
    _billing(markets[0], snapshots).run()
    _billing(markets[1], None).run()
    saved = snapshots.latest(SNAPSHOT_NAME, BILLING_SCHEMA_VERSION)
    assert saved is not None
    body = bytearray(saved.body)
    body[-3] ^= 0xFF
    snapshots.save(Snapshot(saved.name, saved.position, saved.schema_version, bytes(body)))
    for market in markets:
        _tail(market)
    restored, whole = _billing(markets[0], snapshots), _billing(markets[1], None)
    with caplog.at_level(logging.WARNING, logger="hero.store.snapshots"):
        report = restored.run()
    assert "unreadable" in caplog.text
    assert restored._snapshots is not None
    assert restored._snapshots.loaded is None  # the whole log
    assert report == whole.run()
    assert report.suspended == [ctr("neg_1", "o1")]
    _same(restored, whole)


def test_the_decisions_part_is_pinned_to_its_version():
    # A change to what billing carries beside the model changes this fingerprint: bump
    # BILLING_VERSION and pin the new fingerprint with it, so older snapshots are ignored.
    assert (BILLING_VERSION, billing_fingerprint()) == (BILLING_VERSION, BILLING_FINGERPRINT)
