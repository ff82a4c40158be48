"""Quotes: exact spread maths, rounding down, expiry, the slippage bound, re-quoting."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from agents.treasury import (
    FixedRateOracle,
    PriceOracle,
    Quote,
    QuoteFailed,
    QuotePolicy,
    QuoteStatus,
    Rate,
    UnknownRate,
    check_quote,
    convert,
    issue_quote,
)
from hero.domain.clock import ManualClock
from schemas.catalogue.payments import QuoteIssued
from schemas.messages import Event
from schemas.money import Currency, CurrencyMismatch, Money

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = QuotePolicy()  # spread 0.005, ttl 120 s, max slippage 0.01


def usd_rate(tft_per_unit: str | Decimal, currency: str = "USD") -> Rate:
    return Rate(currency=currency, tft_per_unit=tft_per_unit, observed_at=NOW, source="test")


def quote_at(
    market: str, fiat: str = "12.34", policy: QuotePolicy = POLICY, now: datetime = NOW
) -> Quote:
    return issue_quote(
        "pay_1", Money.of(fiat, "USD"), usd_rate(market), policy, now=now, quote_id="quote_1"
    )


class ScriptedOracle(PriceOracle):
    """Answers the given USD rates in turn; each answer may take time on the clock."""

    def __init__(
        self, rates: Iterable[str], clock: ManualClock, delays: Iterable[timedelta] = ()
    ) -> None:
        self._rates = iter(rates)
        self._delays = iter(delays)
        self._clock = clock
        self.calls = 0

    def _lookup(self, currency: Currency) -> Rate:
        self.calls += 1
        self._clock.advance(next(self._delays, timedelta(0)))
        return Rate(
            currency=currency,
            tft_per_unit=Decimal(next(self._rates)),
            observed_at=self._clock.now(),
            source="scripted",
        )


def id_maker() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"quote_{next(counter)}"


# --- the policy -----------------------------------------------------------------------------


def test_the_default_policy():
    assert POLICY.spread == Decimal("0.005")
    assert POLICY.ttl_s == 120
    assert POLICY.max_slippage == Decimal("0.01")


@pytest.mark.parametrize(
    "change",
    [
        {"spread": Decimal("0.1")},
        {"spread": Decimal("-0.001")},
        {"spread": 0.005},  # a float
        {"max_slippage": 0.01},
        {"max_slippage": Decimal(1)},
        {"ttl_s": 0},
        {"surprise": 1},
    ],
)
def test_the_policy_refuses_nonsense(change: dict[str, object]):
    with pytest.raises(ValueError, match="validation error"):
        QuotePolicy(**change)


# --- issuing --------------------------------------------------------------------------------


def test_the_spread_is_taken_off_the_market_rate_exactly():
    quote = quote_at("100")
    assert quote.market_rate == Decimal(100)
    assert quote.spread == Decimal("0.005")
    assert quote.rate == Decimal("99.500")
    assert quote.fiat == Money.of("12.34", "USD")
    assert quote.tft == Money.of("1227.83", "TFT")  # 12.34 * 99.5
    assert quote.min_tft == Money.of("1215.5517", "TFT")  # 1227.83 * 0.99
    assert quote.issued_at == NOW
    assert quote.expires_at == NOW + timedelta(seconds=120)
    assert (quote.quote_id, quote.payment_id) == ("quote_1", "pay_1")


def test_tft_is_rounded_down_never_to_the_nearest():
    # 1 USD at 0.33333336 TFT: 8 places; to the nearest would be 0.3333334.
    quote = quote_at("0.33333336", fiat="1", policy=QuotePolicy(spread=Decimal(0)))
    assert quote.tft == Money.of("0.3333333", "TFT")


def test_the_minimum_output_is_rounded_down_too():
    quote = quote_at("0.33333336", fiat="1", policy=QuotePolicy(spread=Decimal(0)))
    assert quote.min_tft == Money.of("0.3299999", "TFT")  # 0.3333333 * 0.99 = 0.329999967


def test_large_amounts_are_exact_before_rounding_down():
    # 10^9 * (1 - 10^-29) has 29 significant digits: Decimal's default 28-digit context would
    # round it up to 10^9 before the cut to 7 places, promising 0.0000001 TFT too many.
    almost_one = "0." + "9" * 29
    quote = quote_at(almost_one, fiat="1000000000", policy=QuotePolicy(spread=Decimal(0)))
    assert quote.tft == Money.of("999999999.9999999", "TFT")


def test_a_quote_carries_every_field_of_quote_issued():
    # The caller records each quote as QuoteIssued field for field.
    assert set(QuoteIssued.model_fields) - set(Event.model_fields) <= set(Quote.model_fields)
    quote = quote_at("100")
    issued = QuoteIssued(**{name: getattr(quote, name) for name in QuoteIssued.model_fields})
    assert (issued.tft, issued.min_tft, issued.source) == (quote.tft, quote.min_tft, "test")


def test_issuing_refuses_mismatches_and_dust():
    with pytest.raises(CurrencyMismatch):
        issue_quote("pay_1", Money.of("1", "EUR"), usd_rate("100"), POLICY, now=NOW, quote_id="q")
    with pytest.raises(ValueError, match="positive"):
        quote_at("100", fiat="0")
    with pytest.raises(ValueError, match="too small"):
        quote_at("0.5", fiat="0.0000001")
    with pytest.raises(ValueError, match="timezone"):
        quote_at("100", now=NOW.replace(tzinfo=None))


def test_a_quote_is_frozen():
    quote = quote_at("100")
    with pytest.raises(ValueError, match="frozen"):
        quote.tft = Money.of("1", "TFT")  # type: ignore[misc]


# --- checking -------------------------------------------------------------------------------


def test_a_quote_checked_against_the_same_market_is_ok():
    check = check_quote(quote_at("100"), usd_rate("100"), now=NOW, policy=POLICY)
    assert check.ok
    assert check.status is QuoteStatus.OK
    assert check.current_tft == Money.of("1227.83", "TFT")


def test_a_quote_expires_at_exactly_expires_at():
    quote = quote_at("100")
    just_before = quote.expires_at - timedelta(microseconds=1)
    assert check_quote(quote, usd_rate("100"), now=just_before, policy=POLICY).ok
    at = check_quote(quote, usd_rate("100"), now=quote.expires_at, policy=POLICY)
    assert at.status is QuoteStatus.EXPIRED
    assert "expired" in at.reason
    assert at.current_tft is None
    later = quote.expires_at + timedelta(hours=1)
    assert check_quote(quote, usd_rate("100"), now=later, policy=POLICY).status == "expired"


def test_tft_dearer_below_the_minimum_output_is_out_of_bounds():
    check = check_quote(quote_at("100"), usd_rate("98.9"), now=NOW, policy=POLICY)
    assert check.status is QuoteStatus.OUT_OF_BOUNDS
    assert "below the minimum 1215.5517000 TFT" in check.reason
    assert check.current_tft is not None
    assert check.current_tft < quote_at("100").min_tft


def test_tft_dearer_beyond_the_slippage_is_out_of_bounds_before_the_minimum_is_hit():
    # 99.005 keeps the output above min_tft, but the quote is then 1.004% above the market.
    check = check_quote(quote_at("100"), usd_rate("99.005"), now=NOW, policy=POLICY)
    assert check.status is QuoteStatus.OUT_OF_BOUNDS
    assert "1.00% above the current" in check.reason


def test_tft_cheaper_beyond_the_slippage_is_out_of_bounds():
    # The market now gives more TFT than quoted: applying the quote would short the payer.
    check = check_quote(quote_at("100"), usd_rate("101.5"), now=NOW, policy=POLICY)
    assert check.status is QuoteStatus.OUT_OF_BOUNDS
    assert "below the current" in check.reason


def test_refusal_reasons_fit_a_quote_refused_event():
    # QuoteRefused.reason holds 200 characters; rates from the DEX carry 18 places.
    quote = quote_at("102.564102564102564102", fiat="999999999.9999999")
    for current in ("104.564102564102564102", "100.564102564102564102"):
        check = check_quote(quote, usd_rate(current), now=NOW, policy=POLICY)
        assert check.status is QuoteStatus.OUT_OF_BOUNDS
        assert len(check.reason) <= 200, check.reason


def test_movements_within_the_slippage_are_ok_in_both_directions():
    quote = quote_at("100")
    assert check_quote(quote, usd_rate("100.9"), now=NOW, policy=POLICY).ok
    assert check_quote(quote, usd_rate("99.1"), now=NOW, policy=POLICY).ok


def test_a_move_of_exactly_max_slippage_is_still_ok():
    policy = QuotePolicy(spread=Decimal(0), max_slippage=Decimal("0.25"))
    quote = quote_at("100", policy=policy)
    assert check_quote(quote, usd_rate("80"), now=NOW, policy=policy).ok  # 20 = 25% of 80
    beyond = check_quote(quote, usd_rate("79.9999999"), now=NOW, policy=policy)
    assert beyond.status is QuoteStatus.OUT_OF_BOUNDS


def test_checking_against_another_currency_is_refused():
    with pytest.raises(CurrencyMismatch):
        check_quote(quote_at("100"), usd_rate("108", currency="EUR"), now=NOW, policy=POLICY)


# --- converting -----------------------------------------------------------------------------


def test_a_steady_market_converts_at_the_first_quote():
    clock = ManualClock(NOW)
    oracle = FixedRateOracle({"USD": Decimal(100)}, clock)
    issued, accepted = convert(
        "pay_1", Money.of("10", "USD"), oracle, POLICY, now=clock.now, new_id=id_maker()
    )
    assert issued == [accepted]
    assert accepted.quote_id == "quote_1"
    assert accepted.tft == Money.of("995", "TFT")


def test_a_moved_market_is_re_quoted_at_the_fresher_rate():
    clock = ManualClock(NOW)
    oracle = ScriptedOracle(["100", "95", "95"], clock)
    issued, accepted = convert(
        "pay_1", Money.of("10", "USD"), oracle, POLICY, now=clock.now, new_id=id_maker()
    )
    assert [quote.quote_id for quote in issued] == ["quote_1", "quote_2"]
    assert accepted is issued[-1]
    assert accepted.market_rate == Decimal(95)
    assert accepted.tft == Money.of("945.25", "TFT")
    assert oracle.calls == 3


def test_a_quote_that_expires_while_the_market_is_asked_is_re_quoted():
    clock = ManualClock(NOW)
    slow_then_fast = [timedelta(0), timedelta(seconds=120), timedelta(0)]
    oracle = ScriptedOracle(["100", "100", "100"], clock, delays=slow_then_fast)
    issued, accepted = convert(
        "pay_1", Money.of("10", "USD"), oracle, POLICY, now=clock.now, new_id=id_maker()
    )
    assert len(issued) == 2
    assert accepted.issued_at == NOW + timedelta(seconds=120)


def test_a_market_that_never_holds_fails_after_max_attempts():
    clock = ManualClock(NOW)
    oracle = ScriptedOracle(["100", "90", "100", "90", "100"], clock)
    with pytest.raises(QuoteFailed) as caught:
        convert(
            "pay_1",
            Money.of("10", "USD"),
            oracle,
            POLICY,
            now=clock.now,
            new_id=id_maker(),
            max_attempts=3,
        )
    failure = caught.value
    assert failure.payment_id == "pay_1"
    assert [quote.quote_id for quote in failure.quotes] == ["quote_1", "quote_2", "quote_3"]
    assert [check.status for check in failure.checks] == ["out_of_bounds"] * 3
    assert "after 3 attempt(s)" in str(failure)
    assert "attempt 3 out_of_bounds" in str(failure)
    assert oracle.calls == 4


def test_expiry_is_named_when_it_is_why_conversion_failed():
    clock = ManualClock(NOW)
    oracle = ScriptedOracle(["100"] * 3, clock, delays=[timedelta(0)] + [timedelta(minutes=5)] * 2)
    with pytest.raises(QuoteFailed, match="attempt 2 expired"):
        convert(
            "pay_1",
            Money.of("10", "USD"),
            oracle,
            POLICY,
            now=clock.now,
            new_id=id_maker(),
            max_attempts=2,
        )


def test_oracle_errors_pass_through():
    clock = ManualClock(NOW)
    oracle = FixedRateOracle({"USD": Decimal(100)}, clock)
    with pytest.raises(UnknownRate):
        convert("pay_1", Money.of("10", "EUR"), oracle, POLICY, now=clock.now, new_id=id_maker())


def test_at_least_one_attempt_is_needed():
    clock = ManualClock(NOW)
    oracle = FixedRateOracle({"USD": Decimal(100)}, clock)
    with pytest.raises(ValueError, match="max_attempts"):
        convert(
            "pay_1",
            Money.of("10", "USD"),
            oracle,
            POLICY,
            now=clock.now,
            new_id=id_maker(),
            max_attempts=0,
        )
