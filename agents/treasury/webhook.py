"""Signed payment webhooks: verify the provider's signature, then read the payment notice.

Payment providers sign each delivery Stripe-style (DOMAIN.md, "Payments"): the header carries
``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>``. The timestamp is inside the signed
bytes, so a captured delivery cannot be replayed with a fresh time; the tolerance window bounds
how long a captured one stays usable. Providers retry and may deliver twice, so the notice
carries the provider's event id for the caller to deduplicate on.

Everything here is pure: time comes in as ``now`` and nothing is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from agents.treasury.oracle import FIAT_CURRENCIES
from schemas.ids import OfftakerId
from schemas.money import MAX_AMOUNT, Currency, Money

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "PaymentNotice",
    "WebhookRefused",
    "parse_notice",
    "receive",
    "sign",
    "verify",
]

#: Stripe's default: a delivery older (or newer) than five minutes is refused.
DEFAULT_TOLERANCE_S = 300

# A signature header is a handful of short elements; anything longer is not one we wrote.
_MAX_HEADER_CHARS = 4096
_TIMESTAMP = re.compile(r"[0-9]{1,11}")  # 11 digits reach the year 5138; datetime stops at 9999
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
# A plain positive decimal: no sign, no exponent, no spaces, at most 7 places (TFChain's
# precision, see schemas.money) and below Money's 10^18 ceiling.
_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


class WebhookRefused(Exception):
    """A delivery the endpoint answers with ``status`` and ``reason`` instead of accepting it.

    ``reason`` starts with a stable code (``signature_invalid``, ``invalid_payment``, ...);
    some codes are followed by ``": <detail>"``. ``code`` is that first part alone.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason

    @property
    def code(self) -> str:
        return self.reason.split(":", 1)[0]


def _require_secret(secret: bytes) -> None:
    # An empty key makes every signature computable by anyone: a configuration error, not a
    # refusal of one delivery.
    if not secret:
        raise ValueError("the webhook signing secret must not be empty")


def _digest(secret: bytes, timestamp: int, payload: bytes) -> str:
    signed = f"{timestamp}.".encode() + payload
    return hmac.new(secret, signed, hashlib.sha256).hexdigest()


def sign(secret: bytes, timestamp: int, payload: bytes) -> str:
    """The signature header value for ``payload`` sent at ``timestamp`` (unix seconds)."""
    _require_secret(secret)
    if timestamp < 0:
        raise ValueError(f"timestamp must be unix seconds, got {timestamp}")
    return f"t={timestamp},v1={_digest(secret, timestamp, payload)}"


def _parse_header(header: str) -> tuple[int, list[str]]:
    """The timestamp and every ``v1`` signature; other schemes (``v0``) are ignored, like Stripe."""
    if len(header) > _MAX_HEADER_CHARS:
        raise WebhookRefused(400, "signature_malformed")
    timestamps: list[str] = []
    signatures: list[str] = []
    for element in header.split(","):
        key, separator, value = element.strip().partition("=")
        if not separator:
            raise WebhookRefused(400, "signature_malformed")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            if not _HEX_DIGEST.fullmatch(value):
                raise WebhookRefused(400, "signature_malformed")
            signatures.append(value.lower())
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]) or not signatures:
        raise WebhookRefused(400, "signature_malformed")
    return int(timestamps[0]), signatures


def verify(
    header: str | None,
    payload: bytes,
    secret: bytes,
    *,
    now: datetime,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> None:
    """Accept a delivery or raise :class:`WebhookRefused`.

    Several ``v1`` entries are allowed and any one matching is enough: while a secret is
    rotated the provider signs with both the old and the new one. The signature is checked
    before the timestamp, so a forger learns nothing about the clock.
    """
    _require_secret(secret)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if tolerance_s < 0:
        raise ValueError(f"tolerance_s must not be negative, got {tolerance_s}")
    if header is None or not header.strip():
        raise WebhookRefused(400, "signature_missing")
    timestamp, signatures = _parse_header(header)
    expected = _digest(secret, timestamp, payload)
    # Compare against every entry (no early exit) in constant time per entry.
    matches = [hmac.compare_digest(expected, candidate) for candidate in signatures]
    if not any(matches):
        raise WebhookRefused(401, "signature_invalid")
    signed_at = datetime.fromtimestamp(timestamp, UTC)
    tolerance = timedelta(seconds=tolerance_s)
    if now - signed_at > tolerance:
        raise WebhookRefused(401, "timestamp_stale")
    if signed_at - now > tolerance:
        raise WebhookRefused(401, "timestamp_in_future")


class PaymentNotice(BaseModel):
    """A provider's word that an offtaker paid fiat: the input of ``FiatPaymentReceived``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider_event_id: str = Field(min_length=1, max_length=200)
    provider: str = Field(default="stripe", min_length=1, max_length=64)
    offtaker_id: OfftakerId
    amount: Decimal
    currency: Currency
    occurred_at: AwareDatetime | None = None

    @field_validator("amount", mode="before")
    @classmethod
    def _amount_is_a_decimal_string(cls, value: Any) -> Any:
        # JSON numbers arrive as binary floats (10.1 is not 10.1) and integers invite
        # minor-unit confusion (1050 cents or 1050 dollars?): only text or a Decimal will do.
        if isinstance(value, Decimal):
            return value
        if not isinstance(value, str):
            raise ValueError('must be a decimal string such as "10.50", not a JSON number')
        if not _PLAIN_DECIMAL.fullmatch(value):
            raise ValueError(f"must be a plain decimal string such as 10.50, got {value!r}")
        return Decimal(value)

    @field_validator("amount")
    @classmethod
    def _amount_is_payable(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value <= 0:
            raise ValueError(f"must be greater than 0, got {value}")
        if value >= MAX_AMOUNT:
            raise ValueError(f"must be below 10^18, got {value}")
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > Currency.USD.places:
            raise ValueError(f"carries at most {Currency.USD.places} decimal places, got {value}")
        return value

    @field_validator("currency", mode="before")
    @classmethod
    def _currency_is_fiat(cls, value: Any) -> Any:
        # Stripe writes currency codes in lower case ("usd"); the ledger uses ISO upper case.
        code = value.upper() if isinstance(value, str) else value
        if code not in {currency.value for currency in FIAT_CURRENCIES}:
            # Fiat in only: TFT arrives over the bridge, never through a card payment.
            raise PydanticCustomError(
                "unknown_currency",
                "unknown currency {currency}",
                {"currency": value},
            )
        return code

    @property
    def fiat(self) -> Money:
        return Money(amount=self.amount, currency=self.currency)


def _field_name(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location) or "body"


def _message(error: Any) -> str:
    text = str(error["msg"])
    # pydantic prefixes messages of ValueErrors raised in validators; the field says enough.
    return text.removeprefix("Value error, ")


def parse_notice(payload: bytes) -> PaymentNotice:
    """The payment notice in a (verified) body, or :class:`WebhookRefused` saying what is wrong."""
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):  # ValueError covers bad JSON and bad UTF-8 alike
        raise WebhookRefused(400, "malformed_json") from None
    try:
        return PaymentNotice.model_validate(document)
    except ValidationError as invalid:
        errors = invalid.errors()
        for error in errors:
            if error["type"] == "unknown_currency":
                currency = (error.get("ctx") or {}).get("currency")
                raise WebhookRefused(422, f"unknown_currency: {currency}") from None
        first = errors[0]
        raise WebhookRefused(
            422, f"invalid_payment: {_field_name(first['loc'])}: {_message(first)}"
        ) from None


def receive(
    header: str | None,
    payload: bytes,
    secret: bytes,
    *,
    now: datetime,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> PaymentNotice:
    """Verify, then parse: an unsigned or forged body is never parsed at all."""
    verify(header, payload, secret, now=now, tolerance_s=tolerance_s)
    return parse_notice(payload)
