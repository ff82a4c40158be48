"""Issue 13, item 1: every follower of the store steps over a row it cannot decode (already in
the store, written raw as an older version let it through), records the skip, and goes on to
the next event. Real SQLite stores; no server needed."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from agents.runtime.feed import StoreHistory
from agents.treasury.service import TreasuryService
from agents.treasury.webhook import PaymentNotice
from hero.cli.market import load_report
from hero.domain.clock import ManualClock
from hero.domain.ledger import AccountKind, Transfer, account_id
from hero.gateway.broadcast import broadcasting
from hero.gateway.metrics import LogTally
from hero.payments.billing import BillingService
from hero.payments.ledger import LedgerService
from hero.store import (
    ANY_VERSION,
    MemoryCheckpointStore,
    NewEvent,
    OutboxRelay,
    RecordedEvent,
    SqliteEventStore,
)
from schemas import Envelope, FarmRegistered, Grid, Money, TransferKind
from tests._poison import POISON_STREAM, insert_poison_row, insert_raw_row
from tests.unit._gwt import T0, Market
from tests.unit.test_outbox import ListPublisher
from tests.unit.test_treasury_service import MovingOracle


def _farm(store: SqliteEventStore, farm_id: str) -> int:
    event = FarmRegistered(farm_id=farm_id, name="F", grid=Grid.GRID3, country="BE", region="eu")
    new = NewEvent.of(event, actor="test", occurred_at=datetime.now(UTC))
    return store.append(f"farm-{farm_id}", ANY_VERSION, [new], f"cmd-{new.id}").last_position


def _sources(store: SqliteEventStore) -> list[tuple[str, int]]:
    return [(skip.source, skip.position) for skip in store.skipped()]


async def test_the_event_streams_skip_a_poison_row_and_deliver_the_next_event(
    tmp_path: Path,
) -> None:
    db = tmp_path / "events.db"
    store = SqliteEventStore(db)
    first = _farm(store, "f1")
    async with broadcasting(store, poll_interval_s=0.01) as b:
        got: list[int] = []

        async def collect() -> None:
            async for item in b.subscribe("hero.reservations", 0):
                got.append(item.position)
                if len(got) == 2:
                    return

        reader = asyncio.create_task(collect())
        async with asyncio.timeout(10):  # the live follower is running: now poison the log
            while b.position < first:  # noqa: ASYNC110 - a position to poll, not an event
                await asyncio.sleep(0.01)
        poison = insert_poison_row(db)
        later = _farm(store, "f2")
        async with asyncio.timeout(10):
            await reader
        assert got == [first, later]
        assert b.position >= later
        assert not b.stopped
        # a subscriber catching up from the store later skips it too
        history: list[int] = []
        async with asyncio.timeout(10):
            async for item in b.subscribe("hero.reservations", 0):
                history.append(item.position)
                if len(history) == 2:
                    break
        assert history == [first, later]
    assert _sources(store) == [("event-streams", poison)]
    store.close()


async def test_the_agent_hosts_history_skips_a_poison_row_and_delivers_the_next_event(
    tmp_path: Path,
) -> None:
    db = tmp_path / "events.db"
    store = SqliteEventStore(db)
    first = _farm(store, "f1")
    poison = insert_poison_row(db)
    later = _farm(store, "f2")
    history = StoreHistory(store)

    def admit(topic: str, envelope: Envelope) -> bool:
        return True

    delivered = [d.envelope.position async for batch in history.replay(later, admit) for d in batch]
    assert delivered == [first, later]
    assert history.counts.bad_records == 1
    assert _sources(store) == [("agents", poison)]
    store.close()


def test_billing_skips_a_poison_row_and_bills_the_contract_after_it(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    clock = ManualClock(T0)
    store = SqliteEventStore(db, clock)
    market = Market(store, clock)
    market.farm("farm_1")
    market.node("node_1")
    poison = insert_raw_row(
        db, "contract-bad", "ContractCreated", "hero.reservations", {"contract_id": "bad"}
    )
    market.rfq("neg_1")
    market.make_offer("neg_1", "o1", "node_1")
    market.accept("neg_1", "o1")
    offtaker = account_id(AccountKind.OFFTAKER, "off_1")
    world = account_id(AccountKind.WORLD, "outside")
    fund = Transfer("fund-1", world, offtaker, Money.of("100", "TFT"), TransferKind.PAYMENT, "p")
    LedgerService(market.store, market.clock).post([fund], "fund-1")
    market.clock.advance(timedelta(hours=2, minutes=30))

    report = BillingService(market.store, lambda: Decimal(100), market.clock).run()

    assert len(report.bills) == 2  # the contract after the poison row is billed
    assert ("billing", poison) in _sources(store)
    store.close()


def _notice(event_id: str, amount: str) -> PaymentNotice:
    return PaymentNotice(
        provider_event_id=event_id, offtaker_id="acme", amount=Decimal(amount), currency="USD"
    )


def test_the_treasury_skips_a_poison_row_and_converts_the_payments_around_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "events.db"
    clock = ManualClock(datetime(2026, 11, 23, 12, tzinfo=UTC))
    store = SqliteEventStore(db, clock)
    ids = iter(f"q{i}" for i in range(1, 10))
    service = TreasuryService(
        store, MovingOracle(["100"], clock), clock, new_quote_id=lambda: next(ids)
    )
    service.receive(
        PaymentNotice(provider_event_id="e1", offtaker_id="acme", amount="10", currency="USD")
    )
    poison = insert_raw_row(
        db, "payment-bad", "FiatPaymentReceived", "hero.payments", {"payment_id": "bad"}
    )
    service.receive(
        PaymentNotice(provider_event_id="e2", offtaker_id="acme", amount="20", currency="USD")
    )

    pending = service.pending()

    assert [str(p.amount.amount) for p in pending] == ["10", "20"]
    converted, failed = service.convert_pending()
    assert (len(converted), failed) == (2, [])
    assert _sources(store) == [("treasury", poison)]
    store.close()


def test_the_market_listing_skips_a_poison_row_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "events.db"
    store = SqliteEventStore(db)
    _farm(store, "f1")
    poison = insert_poison_row(db)
    _farm(store, "f2")
    report = load_report(store)
    assert sorted(f.farm_id for f in report.farms) == ["f1", "f2"]
    warning = " ".join(capsys.readouterr().err.split())
    assert f"skipped the unreadable event at position {poison}" in warning
    assert repr(POISON_STREAM) in warning
    store.close()


async def test_the_relay_passes_a_poison_row_on_verbatim_and_goes_on(tmp_path: Path) -> None:
    """The relay never decodes: it forwards the row as stored (Kafka consumers dead-letter it
    on hero.dlq) and nothing in it can stop on one."""
    db = tmp_path / "events.db"
    store = SqliteEventStore(db)
    first = _farm(store, "f1")
    poison = insert_poison_row(db)
    later = _farm(store, "f2")
    publisher = ListPublisher()
    relay = OutboxRelay(store, MemoryCheckpointStore(), publisher)
    assert await relay.drain() == 3
    assert publisher.positions == [first, poison, later]
    assert relay.position == later
    store.close()


def test_the_metrics_tally_counts_on_past_a_decision_row_it_cannot_parse() -> None:
    broken = RecordedEvent(1, "nego-1", 1, "OfferMade", "hero.reservations", '{"strategy": ')
    good = RecordedEvent(2, "nego-1", 2, "OfferDeclined", "hero.reservations", "{}")
    tally = LogTally()
    tally.apply([broken, good])
    assert tally.position == 2


class _FlakyStore(SqliteEventStore):
    """A real SQLite store whose next read of the log by the broadcaster's follower thread
    fails once ``fail_next`` is set."""

    fail_next = False

    def read_all(self, from_position: int = 1, limit: int = 1000) -> list[RecordedEvent]:
        if self.fail_next and threading.current_thread().name == "hero-broadcast":
            self.fail_next = False
            raise OSError("the disk hiccuped")
        return super().read_all(from_position, limit)


async def test_the_event_streams_follower_survives_a_failed_read_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _FlakyStore(tmp_path / "events.db")
    first = _farm(store, "f1")
    async with broadcasting(store, poll_interval_s=0.01) as b:
        got: list[int] = []

        async def collect() -> None:
            async for item in b.subscribe("hero.reservations", 0):
                got.append(item.position)
                if len(got) == 2:
                    return

        reader = asyncio.create_task(collect())
        async with asyncio.timeout(10):
            while b.position < first:  # noqa: ASYNC110 - a position to poll, not an event
                await asyncio.sleep(0.01)
        store.fail_next = True
        later = _farm(store, "f2")
        async with asyncio.timeout(10):
            await reader
        assert got == [first, later]
        assert b.stats.follower_errors == 1
        assert not b.stopped
    assert "reading the log failed" in caplog.text
    store.close()
