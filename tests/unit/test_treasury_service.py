"""The treasury converts through quotes: a refused quote is recorded, then quoted again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

from agents.treasury.oracle import PriceOracle, Rate
from agents.treasury.service import ConversionFailed, TreasuryService, payment_stream
from agents.treasury.webhook import PaymentNotice
from hero.domain.clock import ManualClock
from hero.store import MemoryEventStore
from schemas import Currency, FiatConverted


class MovingOracle(PriceOracle):
    """Gives the rates it is handed, one per call, then the last one again."""

    def __init__(self, rates: list[str], clock: ManualClock):
        self._rates: Iterator[str] = iter(rates)
        self._last, self._clock = rates[0], clock

    def _lookup(self, currency: Currency) -> Rate:
        self._last = next(self._rates, self._last)
        rate = Decimal(self._last)
        return Rate(currency=currency, tft_per_unit=rate, observed_at=self._clock.now(), source="t")


def treasury(rates: list[str]) -> tuple[TreasuryService, MemoryEventStore]:
    clock = ManualClock(datetime(2026, 11, 23, 12, tzinfo=UTC))
    store = MemoryEventStore(clock)
    ids = iter(f"q{i}" for i in range(1, 10))
    service = TreasuryService(
        store, MovingOracle(rates, clock), clock, new_quote_id=lambda: next(ids)
    )
    notice = PaymentNotice(provider_event_id="e1", offtaker_id="acme", amount="10", currency="USD")
    service.receive(notice)
    return service, store


def test_a_quote_the_market_moved_past_is_recorded_as_refused_and_quoted_again():
    # quoted at 100, the market is at 90 (10% off, past the 1% bound), re-quoted at 90: holds
    service, store = treasury(["100", "90", "90"])
    [payment] = service.pending()
    converted = service.convert(payment)
    assert isinstance(converted, FiatConverted)
    assert converted.quote_id == "q2"
    rows = store.read_stream(payment_stream(payment.payment_id))
    assert [r.type for r in rows] == [
        "FiatPaymentReceived", "QuoteIssued", "QuoteRefused", "QuoteIssued", "FiatConverted",
    ]  # fmt: skip


def test_no_quote_holding_records_every_refusal_and_leaves_the_payment_pending():
    service, store = treasury(["100", "80", "60", "40"])
    [payment] = service.pending()
    failed = service.convert(payment)
    assert isinstance(failed, ConversionFailed)
    types = [r.type for r in store.read_stream(payment_stream(payment.payment_id))]
    assert types == ["FiatPaymentReceived"] + ["QuoteIssued", "QuoteRefused"] * 3
    assert [p.payment_id for p in service.pending()] == [payment.payment_id]
