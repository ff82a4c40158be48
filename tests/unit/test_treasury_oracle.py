"""The TFT price port: one contract every adapter passes, then each adapter's own failures.

The Horizon responses under ``tests/unit/data/stellar/`` are hand-recorded samples written in
the shape Horizon's ``/paths/strict-receive`` returns (``_embedded.records`` of path objects,
amounts as 7-place strings) and its problem+json errors; the amounts are invented. TFT and
USDC carry their real mainnet issuers; the EURC and intermediate-hop issuers are stand-ins.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.treasury import (
    TFT_STELLAR_ISSUER,
    USDC_STELLAR_ISSUER,
    FixedRateOracle,
    OracleUnavailable,
    PriceOracle,
    Rate,
    RatesFileError,
    RatesFileOracle,
    StaleRate,
    StellarAsset,
    StellarDexOracle,
    UnknownRate,
)
from hero.domain.clock import ManualClock
from schemas.money import Currency

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SAMPLES = Path(__file__).parent / "data" / "stellar"
EURC_STAND_IN = StellarAsset("EURC", "G" + "B" * 55)
BEST_USDC_RATE = Decimal("102.564102564102564102")  # 1000 TFT for 9.75 USDC, cut to 18 places


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


Handler = Callable[[httpx.Request], httpx.Response]


def horizon(handler: Handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def recorded(name: str, status: int = 200) -> Handler:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=sample(name))

    return answer


def by_source_asset(request: httpx.Request) -> httpx.Response:
    code = request.url.params["source_assets"].split(":")[0]
    name = {"USDC": "usdc_to_tft_paths.json", "EURC": "eurc_to_tft_paths.json"}[code]
    return httpx.Response(200, json=sample(name))


def write_rates(path: Path, **values: Any) -> Path:
    path.write_text(json.dumps(values))
    return path


# --- the contract ---------------------------------------------------------------------------


class OracleContract:
    """What every PriceOracle adapter promises. Subclasses build one that prices USD only."""

    @pytest.fixture
    def oracle(self, clock: ManualClock, tmp_path: Path) -> PriceOracle:
        raise NotImplementedError

    def test_prices_usd_above_zero(self, oracle: PriceOracle):
        rate = oracle.rate(Currency.USD)
        assert isinstance(rate, Rate)
        assert isinstance(rate.tft_per_unit, Decimal)
        assert rate.tft_per_unit > 0

    def test_the_rate_names_the_currency_asked_for(self, oracle: PriceOracle):
        assert oracle.rate(Currency.USD).currency is Currency.USD
        assert oracle.rate("USD").currency is Currency.USD

    def test_the_rate_is_observed_no_later_than_now(self, oracle: PriceOracle):
        rate = oracle.rate(Currency.USD)
        assert rate.observed_at.tzinfo is not None
        assert rate.observed_at <= NOW
        assert rate.source

    def test_an_unconfigured_currency_is_unknown(self, oracle: PriceOracle):
        with pytest.raises(UnknownRate, match="EUR"):
            oracle.rate(Currency.EUR)

    def test_tft_has_no_rate_in_tft(self, oracle: PriceOracle):
        with pytest.raises(UnknownRate, match="TFT"):
            oracle.rate(Currency.TFT)

    def test_a_currency_nobody_knows_is_unknown(self, oracle: PriceOracle):
        with pytest.raises(UnknownRate, match="GBP"):
            oracle.rate("GBP")

    def test_unknown_rate_is_a_lookup_error(self, oracle: PriceOracle):
        with pytest.raises(LookupError):
            oracle.rate(Currency.EUR)


class TestFixedRateOracleContract(OracleContract):
    @pytest.fixture
    def oracle(self, clock: ManualClock, tmp_path: Path) -> PriceOracle:
        return FixedRateOracle({"USD": Decimal("100.5")}, clock)


def test_a_fixed_rate_set_anew_is_the_rate_from_then_on(clock: ManualClock) -> None:
    oracle = FixedRateOracle({"USD": Decimal("100.5")}, clock, source="simulation")
    oracle.set_rate(Currency.USD, Decimal("98.25"))
    rate = oracle.rate("USD")
    assert (rate.tft_per_unit, rate.source) == (Decimal("98.25"), "simulation")
    for bad in (Decimal(0), Decimal("-1"), Decimal("NaN"), 1.5):
        with pytest.raises(ValueError, match="rate for USD"):
            oracle.set_rate("USD", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only fiat"):
        oracle.set_rate("TFT", Decimal(1))
    assert oracle.rate("USD").tft_per_unit == Decimal("98.25")  # nothing set by a refusal


class TestRatesFileOracleContract(OracleContract):
    @pytest.fixture
    def oracle(self, clock: ManualClock, tmp_path: Path) -> PriceOracle:
        path = write_rates(tmp_path / "rates.json", USD="100.5", observed_at=NOW.isoformat())
        return RatesFileOracle(path, clock)


class TestStellarDexOracleContract(OracleContract):
    @pytest.fixture
    def oracle(self, clock: ManualClock, tmp_path: Path) -> PriceOracle:
        return StellarDexOracle(horizon(recorded("usdc_to_tft_paths.json")), clock)


# --- Rate -----------------------------------------------------------------------------------


def test_a_rate_refuses_floats_tft_zero_and_naive_times():
    good: dict[str, Any] = {
        "currency": "USD",
        "tft_per_unit": "100",
        "observed_at": NOW,
        "source": "test",
    }
    assert Rate(**good).tft_per_unit == Decimal(100)
    for change in (
        {"tft_per_unit": 100.5},
        {"tft_per_unit": "0"},
        {"tft_per_unit": "-1"},
        {"tft_per_unit": "Infinity"},
        {"currency": "TFT"},
        {"observed_at": NOW.replace(tzinfo=None)},
        {"source": ""},
    ):
        with pytest.raises(ValueError, match="validation error"):
            Rate(**(good | change))


# --- FixedRateOracle ------------------------------------------------------------------------


def test_fixed_rates_are_observed_at_the_clocks_now(clock: ManualClock):
    oracle = FixedRateOracle({"USD": Decimal("100.5"), "EUR": Decimal("108.2")}, clock)
    clock.advance(timedelta(minutes=7))
    rate = oracle.rate(Currency.EUR)
    assert rate.tft_per_unit == Decimal("108.2")
    assert rate.observed_at == NOW + timedelta(minutes=7)


@pytest.mark.parametrize(
    "rates",
    [
        {"TFT": Decimal(1)},
        {"USD": Decimal(0)},
        {"USD": 100.5},
        {"GBP": Decimal(1)},
    ],
)
def test_fixed_rates_refuse_what_is_not_a_fiat_rate(rates: Any, clock: ManualClock):
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the case
        FixedRateOracle(rates, clock)


# --- RatesFileOracle ------------------------------------------------------------------------


def test_the_rates_file_is_read_again_on_every_call(tmp_path: Path, clock: ManualClock):
    path = write_rates(
        tmp_path / "rates.json", USD="100.5", EUR="108.2", observed_at=NOW.isoformat()
    )
    oracle = RatesFileOracle(path, clock)
    assert oracle.rate(Currency.EUR).tft_per_unit == Decimal("108.2")
    write_rates(path, USD="99.25", EUR="108.2", observed_at=NOW.isoformat())
    rate = oracle.rate(Currency.USD)
    assert rate.tft_per_unit == Decimal("99.25")
    assert rate.observed_at == NOW
    assert str(path) in rate.source


def test_json_numbers_in_the_rates_file_stay_exact(tmp_path: Path, clock: ManualClock):
    path = tmp_path / "rates.json"
    path.write_text(f'{{"USD": 100.1, "observed_at": "{NOW.isoformat()}"}}')
    assert RatesFileOracle(path, clock).rate("USD").tft_per_unit == Decimal("100.1")


def test_a_missing_rates_file_is_named(tmp_path: Path, clock: ManualClock):
    path = tmp_path / "nowhere.json"
    with pytest.raises(RatesFileError, match=r"nowhere\.json"):
        RatesFileOracle(path, clock).rate("USD")


@pytest.mark.parametrize("value", ["abc", "0", "-3", True, None, [1], "NaN"])
def test_a_bad_rate_names_the_file_and_the_key(value: Any, tmp_path: Path, clock: ManualClock):
    path = write_rates(tmp_path / "rates.json", USD=value, observed_at=NOW.isoformat())
    with pytest.raises(RatesFileError, match=r"rates\.json.*'USD'"):
        RatesFileOracle(path, clock).rate("USD")


def test_a_bare_nan_in_the_rates_file_is_refused(tmp_path: Path, clock: ManualClock):
    path = tmp_path / "rates.json"
    path.write_text(f'{{"USD": NaN, "observed_at": "{NOW.isoformat()}"}}')
    with pytest.raises(RatesFileError, match=r"rates\.json"):
        RatesFileOracle(path, clock).rate("USD")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", "not valid JSON"),
        ('["USD", "100"]', "JSON object"),
        ('{"USD": "100"}', "'observed_at' is missing"),
        ('{"USD": "100", "observed_at": "yesterday"}', "'observed_at' must be an ISO 8601"),
        ('{"USD": "100", "observed_at": "2026-03-01T12:00:00"}', "with a timezone"),
    ],
)
def test_a_broken_rates_file_says_what_is_wrong(
    text: str, words: str, tmp_path: Path, clock: ManualClock
):
    path = tmp_path / "rates.json"
    path.write_text(text)
    with pytest.raises(RatesFileError, match=r"rates\.json") as caught:
        RatesFileOracle(path, clock).rate("USD")
    assert words in str(caught.value)


def test_a_rate_older_than_max_age_is_stale(tmp_path: Path, clock: ManualClock):
    path = write_rates(tmp_path / "rates.json", USD="100", observed_at=NOW.isoformat())
    oracle = RatesFileOracle(path, clock)
    clock.advance(timedelta(seconds=3600))
    assert oracle.rate("USD").tft_per_unit == Decimal(100)  # exactly max_age is still fresh
    clock.advance(timedelta(seconds=1))
    with pytest.raises(StaleRate, match=r"rates\.json.*3601 s ago"):
        oracle.rate("USD")


def test_max_age_is_configurable(tmp_path: Path, clock: ManualClock):
    path = write_rates(tmp_path / "rates.json", USD="100", observed_at=NOW.isoformat())
    clock.advance(timedelta(seconds=61))
    with pytest.raises(StaleRate):
        RatesFileOracle(path, clock, max_age_s=60).rate("USD")


def test_a_rate_observed_far_in_the_future_is_refused(tmp_path: Path, clock: ManualClock):
    # A mistyped year must not keep a rate fresh for ever.
    ahead = NOW + timedelta(minutes=6)
    path = write_rates(tmp_path / "rates.json", USD="100", observed_at=ahead.isoformat())
    with pytest.raises(RatesFileError, match="future"):
        RatesFileOracle(path, clock).rate("USD")
    write_rates(path, USD="100", observed_at=(NOW + timedelta(minutes=1)).isoformat())
    assert RatesFileOracle(path, clock).rate("USD").tft_per_unit == Decimal(100)


# --- StellarDexOracle -----------------------------------------------------------------------


def test_horizon_is_asked_for_a_strict_receive_path_from_usdc_to_tft(clock: ManualClock):
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=sample("usdc_to_tft_paths.json"))

    StellarDexOracle(horizon(answer), clock).rate("USD")
    (request,) = seen
    assert request.method == "GET"
    assert request.url.host == "horizon.stellar.org"
    assert request.url.path == "/paths/strict-receive"
    assert dict(request.url.params) == {
        "source_assets": f"USDC:{USDC_STELLAR_ISSUER}",
        "destination_asset_type": "credit_alphanum4",
        "destination_asset_code": "TFT",
        "destination_asset_issuer": TFT_STELLAR_ISSUER,
        "destination_amount": "1000",
    }


def test_the_cheapest_path_sets_the_rate(clock: ManualClock):
    rate = StellarDexOracle(horizon(recorded("usdc_to_tft_paths.json")), clock).rate("USD")
    assert rate.tft_per_unit == BEST_USDC_RATE
    assert rate.observed_at == NOW
    assert rate.source == "stellar-dex:horizon.stellar.org:USDC->TFT"


def test_another_horizon_and_probe_size_can_be_configured(clock: ManualClock):
    seen: list[httpx.URL] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json=sample("usdc_to_tft_paths.json"))

    oracle = StellarDexOracle(
        horizon(answer),
        clock,
        horizon_url="https://horizon.example.org/",
        probe_tft=Decimal("25000"),
    )
    oracle.rate("USD")
    assert seen[0].host == "horizon.example.org"
    assert seen[0].path == "/paths/strict-receive"
    assert seen[0].params["destination_amount"] == "25000"


def test_eur_goes_through_the_configured_euro_stablecoin(clock: ManualClock):
    oracle = StellarDexOracle(horizon(by_source_asset), clock, eur_asset=EURC_STAND_IN)
    rate = oracle.rate("EUR")
    assert rate.currency is Currency.EUR
    assert rate.tft_per_unit == Decimal(125)  # 1000 TFT for 8 EURC
    assert oracle.rate("USD").tft_per_unit == BEST_USDC_RATE


def test_eur_without_a_stablecoin_is_unknown_and_horizon_is_not_asked(clock: ManualClock):
    def fail(request: httpx.Request) -> httpx.Response:
        raise AssertionError("Horizon must not be asked")

    with pytest.raises(UnknownRate, match="no Stellar asset configured to stand for EUR"):
        StellarDexOracle(horizon(fail), clock).rate("EUR")


def test_no_path_is_an_unknown_rate(clock: ManualClock):
    with pytest.raises(UnknownRate, match="no path from USDC"):
        StellarDexOracle(horizon(recorded("no_paths.json")), clock).rate("USD")


@pytest.mark.parametrize(
    ("name", "status", "words"),
    [
        ("rate_limit_exceeded.json", 429, "HTTP 429 (Rate Limit Exceeded"),
        ("bad_request.json", 400, "HTTP 400 (Bad Request: The request you sent"),
    ],
)
def test_a_horizon_error_names_the_status(name: str, status: int, words: str, clock: ManualClock):
    oracle = StellarDexOracle(horizon(recorded(name, status)), clock)
    with pytest.raises(OracleUnavailable) as caught:
        oracle.rate("USD")
    assert words in str(caught.value)


def test_an_error_without_a_problem_body_still_names_the_status(clock: ManualClock):
    def gateway_down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="<html>Service Unavailable</html>")

    with pytest.raises(OracleUnavailable, match="HTTP 503"):
        StellarDexOracle(horizon(gateway_down), clock).rate("USD")


def test_an_unreachable_horizon_is_unavailable(clock: ManualClock):
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(OracleUnavailable, match="could not be reached"):
        StellarDexOracle(horizon(unreachable), clock).rate("USD")


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (httpx.Response(200, text="not json"), "not JSON"),
        (httpx.Response(200, json={"records": []}), "_embedded.records"),
        (httpx.Response(200, json={"_embedded": {"records": ["x"]}}), "not an object"),
        (
            httpx.Response(
                200,
                json={
                    "_embedded": {"records": [{"source_amount": 9.75, "destination_amount": "1"}]}
                },
            ),
            "source_amount",
        ),
        (
            httpx.Response(
                200,
                json={
                    "_embedded": {"records": [{"source_amount": "0", "destination_amount": "1"}]}
                },
            ),
            "source_amount",
        ),
    ],
)
def test_a_nonsensical_answer_is_unavailable(
    answer: httpx.Response, words: str, clock: ManualClock
):
    oracle = StellarDexOracle(horizon(lambda request: answer), clock)
    with pytest.raises(OracleUnavailable, match=words):
        oracle.rate("USD")


def test_stellar_assets_are_checked():
    assert StellarAsset("TFT", TFT_STELLAR_ISSUER).asset_type == "credit_alphanum4"
    assert StellarAsset("LONGERCODE", TFT_STELLAR_ISSUER).asset_type == "credit_alphanum12"
    with pytest.raises(ValueError, match="asset code"):
        StellarAsset("TOO-LONG-CODE!", TFT_STELLAR_ISSUER)
    with pytest.raises(ValueError, match="account id"):
        StellarAsset("TFT", "not-an-account")


def test_the_probe_amount_fits_stellar_amounts(clock: ManualClock):
    client = horizon(recorded("usdc_to_tft_paths.json"))
    with pytest.raises(ValueError, match="7 decimal places"):
        StellarDexOracle(client, clock, probe_tft=Decimal("1.000000001"))
    with pytest.raises(ValueError, match="above 0"):
        StellarDexOracle(client, clock, probe_tft=Decimal(0))
