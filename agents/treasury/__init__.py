"""The treasury's pure core: signed fiat payment notices in, TFT prices, quotes with bounds.

* :mod:`agents.treasury.webhook` — verify a provider's signed delivery, read the payment;
* :mod:`agents.treasury.oracle` — the TFT price port and its adapters (fixed, file, Stellar);
* :mod:`agents.treasury.quotes` — quotes with a spread, an expiry and a slippage bound.

Nothing here stores or publishes: callers turn the results into ``FiatPaymentReceived``,
``QuoteIssued`` and ``FiatConverted`` events.
"""

from agents.treasury.oracle import (
    FIAT_CURRENCIES,
    RATE_PLACES,
    TFT_ON_STELLAR,
    TFT_STELLAR_ISSUER,
    USDC_STELLAR_ISSUER,
    FixedRateOracle,
    OracleError,
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
from agents.treasury.quotes import (
    Quote,
    QuoteCheck,
    QuoteFailed,
    QuotePolicy,
    QuoteStatus,
    check_quote,
    convert,
    issue_quote,
)
from agents.treasury.webhook import (
    DEFAULT_TOLERANCE_S,
    PaymentNotice,
    WebhookRefused,
    parse_notice,
    receive,
    sign,
    verify,
)

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "FIAT_CURRENCIES",
    "RATE_PLACES",
    "TFT_ON_STELLAR",
    "TFT_STELLAR_ISSUER",
    "USDC_STELLAR_ISSUER",
    "FixedRateOracle",
    "OracleError",
    "OracleUnavailable",
    "PaymentNotice",
    "PriceOracle",
    "Quote",
    "QuoteCheck",
    "QuoteFailed",
    "QuotePolicy",
    "QuoteStatus",
    "Rate",
    "RatesFileError",
    "RatesFileOracle",
    "StaleRate",
    "StellarAsset",
    "StellarDexOracle",
    "UnknownRate",
    "WebhookRefused",
    "check_quote",
    "convert",
    "issue_quote",
    "parse_notice",
    "receive",
    "sign",
    "verify",
]
