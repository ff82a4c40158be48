"""The TFT price as a port: how many TFT one unit of fiat buys, and when that was seen.

Adapters:

* :class:`FixedRateOracle` — rates given in code, for tests and demos;
* :class:`RatesFileOracle` — a JSON file an operator edits, read again on every call;
* :class:`StellarDexOracle` — the Stellar DEX through Horizon, the market TFChain itself
  averages (``pallet-tft-price`` quotes the strict-receive path USDC -> TFT, DOMAIN.md).

Prices are Decimals end to end; a float never holds a rate.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from hero.domain.clock import Clock
from schemas.exact import refuse_float
from schemas.money import Currency

__all__ = [
    "FIAT_CURRENCIES",
    "RATE_PLACES",
    "TFT_ON_STELLAR",
    "TFT_STELLAR_ISSUER",
    "USDC_STELLAR_ISSUER",
    "FixedRateOracle",
    "OracleError",
    "OracleUnavailable",
    "PriceOracle",
    "Rate",
    "RatesFileError",
    "RatesFileOracle",
    "StaleRate",
    "StellarAsset",
    "StellarDexOracle",
    "UnknownRate",
]

#: The currencies the treasury takes in and prices in TFT.
FIAT_CURRENCIES: frozenset[Currency] = frozenset({Currency.USD, Currency.EUR})

#: Derived rates (a quotient of two amounts) are cut to this many places, rounding down: fewer
#: TFT per fiat unit is the side on which the treasury never over-promises.
RATE_PLACES = 18

#: TFT on Stellar (DOMAIN.md, "TFT price").
TFT_STELLAR_ISSUER = "GBOVQKJYHXRR3DX6NOX2RRYFRCUMSADGDESTDNBDS6CDVLGVESRTAC47"
#: Circle's USDC on Stellar mainnet (developers.circle.com, "USDC contract addresses").
USDC_STELLAR_ISSUER = "GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN"


class OracleError(Exception):
    """Any failure to produce a rate."""


class UnknownRate(OracleError, LookupError):
    """The oracle has no rate for this currency (not configured, or no market path)."""


class OracleUnavailable(OracleError):
    """The price source could not be asked or answered nonsense; asking again may work."""


class StaleRate(OracleError):
    """The only rate on hand is older than the oracle accepts."""


class RatesFileError(OracleError):
    """The rates file is missing or holds a value that is not a usable rate."""


class Rate(BaseModel):
    """``tft_per_unit`` TFT buy one unit of ``currency``, as seen at ``observed_at``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    currency: Currency
    tft_per_unit: Decimal = Field(gt=0)
    observed_at: AwareDatetime
    source: str = Field(min_length=1)

    @field_validator("currency")
    @classmethod
    def _fiat_only(cls, value: Currency) -> Currency:
        if value not in FIAT_CURRENCIES:
            raise ValueError(f"a rate prices a fiat currency in TFT, got {value}")
        return value

    _no_floats = field_validator("tft_per_unit", mode="before")(refuse_float)

    @field_validator("tft_per_unit")
    @classmethod
    def _finite(cls, value: Decimal) -> Decimal:
        if not value.is_finite():
            raise ValueError("tft_per_unit must be a finite number")
        return value


def _fiat(currency: Currency | str) -> Currency:
    try:
        unit = Currency(currency)
    except ValueError:
        raise UnknownRate(f"no rate for {currency!r}: not a currency the treasury knows") from None
    if unit not in FIAT_CURRENCIES:
        raise UnknownRate(f"no rate for {unit}: only fiat is priced in TFT")
    return unit


class PriceOracle(ABC):
    """Tells how many TFT one unit of a fiat currency buys now."""

    def rate(self, currency: Currency | str) -> Rate:
        """The current rate for ``currency``.

        Raises :class:`UnknownRate` for a currency the oracle does not price (TFT included),
        :class:`OracleUnavailable` when the source cannot answer, :class:`StaleRate` when its
        answer is too old.
        """
        unit = _fiat(currency)
        found = self._lookup(unit)
        if found.currency is not unit:
            # An adapter bug, not a market condition: say so loudly.
            raise OracleError(f"{type(self).__name__} answered {found.currency} for {unit}")
        return found

    @abstractmethod
    def _lookup(self, currency: Currency) -> Rate:
        """The rate for a fiat currency; ``rate`` has already checked the currency."""


def _positive_decimal(value: Any, where: str) -> Decimal:
    """``value`` as a positive finite Decimal, or ValueError naming ``where``."""
    if isinstance(value, bool | float) or not isinstance(value, str | int | Decimal):
        raise ValueError(f'{where}: expected a decimal string such as "100.5", got {value!r}')
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{where}: not a decimal number: {value!r}") from None
    if not number.is_finite() or number <= 0:
        raise ValueError(f"{where}: a rate must be a finite number above 0, got {value!r}")
    return number


class FixedRateOracle(PriceOracle):
    """Rates set in code, observed 'now' on every call."""

    def __init__(
        self, rates: Mapping[str, Decimal], clock: Clock, *, source: str = "fixed"
    ) -> None:
        self._clock = clock
        self._source = source
        self._rates: dict[Currency, Decimal] = {}
        for code, value in rates.items():
            self.set_rate(code, value)

    def set_rate(self, currency: Currency | str, value: Decimal | str | int) -> None:
        """Set the rate from now on (a simulated price path moves it day by day)."""
        unit = Currency(currency)
        if unit not in FIAT_CURRENCIES:
            raise ValueError(f"only fiat currencies have a TFT rate, got {unit}")
        self._rates[unit] = _positive_decimal(value, f"rate for {unit}")

    def _lookup(self, currency: Currency) -> Rate:
        if currency not in self._rates:
            raise UnknownRate(f"no fixed rate configured for {currency}")
        return Rate(
            currency=currency,
            tft_per_unit=self._rates[currency],
            observed_at=self._clock.now(),
            source=self._source,
        )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a rate")


class RatesFileOracle(PriceOracle):
    """Rates from a JSON file such as ``{"USD": "100.5", "EUR": "108.2", "observed_at": "..."}``.

    The file is read on every call so that an operator's edit takes effect at once, and a
    rate older than ``max_age_s`` is refused: a forgotten file must not price payments for days.
    """

    OBSERVED_AT = "observed_at"
    #: How far ``observed_at`` may lie ahead of the clock: hand-written times and clock skew.
    FUTURE_SKEW = timedelta(minutes=5)

    def __init__(self, path: str | Path, clock: Clock, *, max_age_s: int = 3600) -> None:
        if max_age_s <= 0:
            raise ValueError(f"max_age_s must be positive, got {max_age_s}")
        self.path = Path(path)
        self._clock = clock
        self._max_age = timedelta(seconds=max_age_s)

    def _document(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RatesFileError(f"rates file {self.path} does not exist") from None
        except (OSError, UnicodeDecodeError) as error:
            raise RatesFileError(f"rates file {self.path} cannot be read: {error}") from None
        try:
            # parse_float keeps JSON numbers exact; NaN and Infinity are refused outright.
            document = json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
        except ValueError as error:
            raise RatesFileError(f"rates file {self.path} is not valid JSON: {error}") from None
        if not isinstance(document, dict):
            raise RatesFileError(f"rates file {self.path} must hold a JSON object")
        return document

    def _observed_at(self, document: Mapping[str, Any]) -> datetime:
        key = self.OBSERVED_AT
        if key not in document:
            raise RatesFileError(f"rates file {self.path}: key {key!r} is missing")
        value = document[key]
        try:
            moment = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise RatesFileError(
                f"rates file {self.path}: key {key!r} must be an ISO 8601 time with a "
                f"timezone, such as 2026-01-01T12:00:00Z, got {value!r}"
            )
        return moment

    def _lookup(self, currency: Currency) -> Rate:
        document = self._document()
        if currency.value not in document:
            raise UnknownRate(f"rates file {self.path} has no key {currency.value!r}")
        try:
            value = _positive_decimal(document[currency.value], f"key {currency.value!r}")
        except ValueError as error:
            raise RatesFileError(f"rates file {self.path}: {error}") from None
        observed_at = self._observed_at(document)
        now = self._clock.now()
        if observed_at - now > self.FUTURE_SKEW:
            raise RatesFileError(
                f"rates file {self.path}: key {self.OBSERVED_AT!r} ({observed_at.isoformat()}) "
                f"lies in the future"
            )
        age = now - observed_at
        if age > self._max_age:
            raise StaleRate(
                f"rates file {self.path}: the {currency} rate was observed at "
                f"{observed_at.isoformat()}, {int(age.total_seconds())} s ago, more than the "
                f"{int(self._max_age.total_seconds())} s allowed"
            )
        return Rate(
            currency=currency,
            tft_per_unit=value,
            observed_at=observed_at,
            source=f"file:{self.path}",
        )


_ASSET_CODE = re.compile(r"[A-Za-z0-9]{1,12}")
# A Stellar account id: "G" and 55 more base32 characters.
_ACCOUNT_ID = re.compile(r"G[A-Z2-7]{55}")


@dataclass(frozen=True)
class StellarAsset:
    """An issued Stellar asset: the code alone names nothing, the issuer makes it unique."""

    code: str
    issuer: str

    def __post_init__(self) -> None:
        if not _ASSET_CODE.fullmatch(self.code):
            raise ValueError(f"a Stellar asset code has 1 to 12 letters or digits: {self.code!r}")
        if not _ACCOUNT_ID.fullmatch(self.issuer):
            raise ValueError(f"not a Stellar account id: {self.issuer!r}")

    @property
    def asset_type(self) -> str:
        return "credit_alphanum4" if len(self.code) <= 4 else "credit_alphanum12"

    @property
    def canonical(self) -> str:
        """``CODE:ISSUER``, the form Horizon's ``source_assets`` takes."""
        return f"{self.code}:{self.issuer}"


TFT_ON_STELLAR = StellarAsset("TFT", TFT_STELLAR_ISSUER)


def _amount(record: Mapping[str, Any], key: str) -> Decimal:
    value = record.get(key)
    if not isinstance(value, str):
        raise OracleUnavailable(f"Horizon path record has no {key} string: {value!r}")
    try:
        return _positive_decimal(value, key)
    except ValueError as error:
        raise OracleUnavailable(f"Horizon path record: {error}") from None


class StellarDexOracle(PriceOracle):
    """TFT per fiat unit from the Stellar DEX, via Horizon's strict-receive path search.

    It asks what it costs, in the stablecoin standing for the fiat currency, to receive
    ``probe_tft`` TFT, and takes the cheapest path: rate = TFT received / stablecoin paid.
    A stablecoin is taken at par with its fiat (1 USDC = 1 USD). USD goes through Circle's
    USDC; EUR needs ``eur_asset`` (say Circle's EURC) and is :class:`UnknownRate` without it.
    The probe size matters: a bigger probe walks deeper into the order books and reflects
    the slippage a conversion of that size would see.
    """

    def __init__(
        self,
        client: httpx.Client,
        clock: Clock,
        *,
        horizon_url: str = "https://horizon.stellar.org",
        usdc_issuer: str = USDC_STELLAR_ISSUER,
        eur_asset: StellarAsset | None = None,
        tft_asset: StellarAsset = TFT_ON_STELLAR,
        probe_tft: Decimal = Decimal(1000),
    ) -> None:
        self._client = client
        self._clock = clock
        self._horizon_url = horizon_url.rstrip("/")
        self._tft = tft_asset
        self._probe = _positive_decimal(probe_tft, "probe_tft")
        if self._probe != self._probe.quantize(Currency.TFT.quantum):
            raise ValueError(f"probe_tft carries at most 7 decimal places, got {probe_tft}")
        self._sources: dict[Currency, StellarAsset] = {
            Currency.USD: StellarAsset("USDC", usdc_issuer)
        }
        if eur_asset is not None:
            self._sources[Currency.EUR] = eur_asset

    def _records(self, source_asset: StellarAsset) -> list[Any]:
        url = f"{self._horizon_url}/paths/strict-receive"
        params = {
            "source_assets": source_asset.canonical,
            "destination_asset_type": self._tft.asset_type,
            "destination_asset_code": self._tft.code,
            "destination_asset_issuer": self._tft.issuer,
            "destination_amount": str(self._probe),
        }
        try:
            response = self._client.get(url, params=params)
        except httpx.HTTPError as error:
            raise OracleUnavailable(f"Horizon at {url} could not be reached: {error}") from None
        if response.status_code != 200:
            raise OracleUnavailable(
                f"Horizon at {url} answered HTTP {response.status_code}{_problem(response)}"
            )
        try:
            body = response.json()
        except ValueError:
            raise OracleUnavailable(f"Horizon at {url} answered a body that is not JSON") from None
        embedded = body.get("_embedded") if isinstance(body, dict) else None
        records = embedded.get("records") if isinstance(embedded, dict) else None
        if not isinstance(records, list):
            raise OracleUnavailable(f"Horizon at {url} answered without _embedded.records")
        return records

    def _lookup(self, currency: Currency) -> Rate:
        source_asset = self._sources.get(currency)
        if source_asset is None:
            raise UnknownRate(f"no Stellar asset configured to stand for {currency}")
        records = self._records(source_asset)
        if not records:
            raise UnknownRate(
                f"the Stellar DEX has no path from {source_asset.code} to {self._probe} "
                f"{self._tft.code}"
            )
        best: Decimal | None = None
        with localcontext() as context:
            context.prec = 60  # room for the quotient before it is cut to RATE_PLACES
            for record in records:
                if not isinstance(record, dict):
                    raise OracleUnavailable(f"Horizon path record is not an object: {record!r}")
                received = _amount(record, "destination_amount")
                paid = _amount(record, "source_amount")
                ratio = (received / paid).quantize(
                    Decimal(1).scaleb(-RATE_PLACES), rounding=ROUND_DOWN
                )
                best = ratio if best is None or ratio > best else best
        assert best is not None  # records is not empty
        if best <= 0:
            raise UnknownRate(f"the Stellar DEX prices {currency} below {RATE_PLACES} places")
        host = urlsplit(self._horizon_url).netloc or self._horizon_url
        return Rate(
            currency=currency,
            tft_per_unit=best,
            observed_at=self._clock.now(),
            source=f"stellar-dex:{host}:{source_asset.code}->{self._tft.code}",
        )


def _problem(response: httpx.Response) -> str:
    """Horizon's problem+json title and detail, when the error body carries them."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    words = [str(body[key]) for key in ("title", "detail") if body.get(key)]
    return f" ({': '.join(words)})" if words else ""
