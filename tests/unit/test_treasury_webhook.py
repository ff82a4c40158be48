"""Signed payment webhooks: Stripe-style signatures, tolerance window, strict payment notices."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from agents.treasury import PaymentNotice, WebhookRefused, parse_notice, receive, sign, verify
from schemas.money import Currency, Money

SECRET = b"whsec_current"
OLD_SECRET = b"whsec_previous"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SENT_AT = int(NOW.timestamp())


def body(**overrides: Any) -> bytes:
    notice: dict[str, Any] = {
        "provider_event_id": "evt_1PqR2s",
        "offtaker_id": "acme",
        "amount": "250.00",
        "currency": "USD",
    }
    notice.update(overrides)
    return json.dumps(notice).encode()


def refused(
    header: str | None, payload: bytes, *, secret: bytes = SECRET, now: datetime = NOW
) -> WebhookRefused:
    with pytest.raises(WebhookRefused) as caught:
        receive(header, payload, secret, now=now)
    return caught.value


# --- signing and verifying ------------------------------------------------------------------


def test_sign_writes_the_stripe_header():
    header = sign(SECRET, 1_700_000_000, b"{}")
    timestamp, signature = header.split(",")
    assert timestamp == "t=1700000000"
    assert signature.startswith("v1=")
    assert len(signature.removeprefix("v1=")) == 64


def test_a_correctly_signed_payment_is_received():
    payload = body()
    notice = receive(sign(SECRET, SENT_AT, payload), payload, SECRET, now=NOW)
    assert notice.provider_event_id == "evt_1PqR2s"
    assert notice.provider == "stripe"
    assert notice.offtaker_id == "acme"
    assert notice.amount == Decimal("250.00")
    assert notice.currency is Currency.USD
    assert notice.fiat == Money.of("250.00", "USD")


def test_a_forged_signature_is_refused():
    payload = body()
    forged = f"t={SENT_AT},v1={'0' * 64}"
    error = refused(forged, payload)
    assert (error.status, error.reason) == (401, "signature_invalid")


def test_a_tampered_body_is_refused():
    header = sign(SECRET, SENT_AT, body(amount="1.00"))
    error = refused(header, body(amount="1000000.00"))
    assert (error.status, error.reason) == (401, "signature_invalid")


def test_a_signature_made_with_another_secret_is_refused():
    payload = body()
    error = refused(sign(b"whsec_someone_else", SENT_AT, payload), payload)
    assert (error.status, error.reason) == (401, "signature_invalid")


def test_a_timestamp_at_the_tolerance_edge_is_accepted():
    payload = body()
    verify(sign(SECRET, SENT_AT - 300, payload), payload, SECRET, now=NOW)
    verify(sign(SECRET, SENT_AT + 300, payload), payload, SECRET, now=NOW)


def test_a_stale_timestamp_is_refused():
    payload = body()
    error = refused(sign(SECRET, SENT_AT - 301, payload), payload)
    assert (error.status, error.reason) == (401, "timestamp_stale")


def test_a_future_timestamp_is_refused():
    payload = body()
    error = refused(sign(SECRET, SENT_AT + 301, payload), payload)
    assert (error.status, error.reason) == (401, "timestamp_in_future")


def test_the_tolerance_is_configurable():
    payload = body()
    header = sign(SECRET, SENT_AT - 60, payload)
    with pytest.raises(WebhookRefused, match="timestamp_stale"):
        verify(header, payload, SECRET, now=NOW, tolerance_s=30)


def test_the_signature_is_checked_before_the_timestamp():
    # A forger must not learn whether the clock or the key stopped them.
    error = refused(f"t={SENT_AT - 10_000},v1={'a' * 64}", body())
    assert error.reason == "signature_invalid"


@pytest.mark.parametrize("header", [None, "", "   "])
def test_a_missing_header_is_refused(header: str | None):
    error = refused(header, body())
    assert (error.status, error.reason) == (400, "signature_missing")


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        f"t={SENT_AT}",  # no v1 at all
        f"v1={'a' * 64}",  # no timestamp
        f"t=soon,v1={'a' * 64}",
        f"t=-5,v1={'a' * 64}",
        f"t={SENT_AT},t={SENT_AT},v1={'a' * 64}",
        f"t={SENT_AT},v1=not-hex",
        f"t={SENT_AT},v1={'a' * 63}",
        f"t={SENT_AT},v0={'a' * 64}",  # an old scheme only
        f"t=99999999999999,v1={'a' * 64}",  # beyond any datetime
        f"t={SENT_AT},v1={'a' * 64}," + "x=y," * 2000,
    ],
)
def test_a_malformed_header_is_refused(header: str):
    error = refused(header, body())
    assert (error.status, error.reason) == (400, "signature_malformed")


def test_secret_rotation_accepts_either_of_two_v1_signatures():
    payload = body()
    old = sign(OLD_SECRET, SENT_AT, payload).split(",")[1]
    new = sign(SECRET, SENT_AT, payload).split(",")[1]
    header = f"t={SENT_AT},{old},{new}"
    assert receive(header, payload, SECRET, now=NOW).amount == Decimal("250.00")
    assert receive(header, payload, OLD_SECRET, now=NOW).amount == Decimal("250.00")
    # Neither entry was made with a third secret.
    assert refused(header, payload, secret=b"whsec_third").reason == "signature_invalid"


def test_unknown_schemes_beside_v1_are_ignored():
    payload = body()
    header = sign(SECRET, SENT_AT, payload) + f",v0={'f' * 64}"
    verify(header, payload, SECRET, now=NOW)


def test_an_empty_secret_is_a_configuration_error():
    with pytest.raises(ValueError, match="secret"):
        sign(b"", SENT_AT, b"{}")
    with pytest.raises(ValueError, match="secret"):
        verify(f"t={SENT_AT},v1={'a' * 64}", b"{}", b"", now=NOW)


def test_a_naive_now_is_refused():
    payload = body()
    with pytest.raises(ValueError, match="timezone"):
        verify(sign(SECRET, SENT_AT, payload), payload, SECRET, now=NOW.replace(tzinfo=None))


# --- the payment notice ---------------------------------------------------------------------


def signed(payload: bytes) -> str:
    return sign(SECRET, SENT_AT, payload)


def test_malformed_json_signed_correctly_is_refused():
    payload = b'{"provider_event_id": "evt_1", '
    error = refused(signed(payload), payload)
    assert (error.status, error.reason) == (400, "malformed_json")


def test_bytes_that_are_not_utf8_are_malformed_json():
    payload = b"\xff\xfe\x00garbage"
    assert refused(signed(payload), payload).reason == "malformed_json"


def test_an_unsigned_body_is_never_parsed():
    assert refused(None, b"not json").reason == "signature_missing"


@pytest.mark.parametrize("currency", ["TFT", "GBP", "XYZ"])
def test_an_unknown_currency_signed_correctly_is_refused(currency: str):
    payload = body(currency=currency)
    error = refused(signed(payload), payload)
    assert (error.status, error.reason) == (422, f"unknown_currency: {currency}")
    assert error.code == "unknown_currency"


def test_a_non_string_currency_is_an_unknown_currency():
    payload = body(currency=840)
    assert refused(signed(payload), payload).reason == "unknown_currency: 840"


def test_stripe_lower_case_currency_codes_are_read():
    assert parse_notice(body(currency="eur")).currency is Currency.EUR


def test_an_amount_with_too_many_places_is_refused():
    payload = body(amount="10.123456789")
    error = refused(signed(payload), payload)
    assert error.status == 422
    assert error.reason.startswith("invalid_payment: amount: ")
    assert "7 decimal places" in error.reason


def test_seven_places_are_enough():
    assert parse_notice(body(amount="10.1234567")).amount == Decimal("10.1234567")


@pytest.mark.parametrize(
    ("amount", "words"),
    [
        (10.5, "decimal string"),  # a JSON number: a binary float
        (10, "decimal string"),
        (True, "decimal string"),
        ("0", "greater than 0"),
        ("0.0000000", "greater than 0"),
        ("-5.00", "plain decimal"),
        ("1e3", "plain decimal"),
        (" 10", "plain decimal"),
        ("NaN", "plain decimal"),
        ("1" * 19, "below 10^18"),
    ],
)
def test_amounts_that_are_not_positive_decimal_strings_are_refused(amount: Any, words: str):
    error = refused(signed(body(amount=amount)), body(amount=amount))
    assert error.status == 422
    assert error.reason.startswith("invalid_payment: amount: ")
    assert words in error.reason


def test_a_missing_field_is_named():
    payload = json.dumps({"provider_event_id": "evt_1", "amount": "1", "currency": "USD"}).encode()
    error = refused(signed(payload), payload)
    assert error.reason == "invalid_payment: offtaker_id: Field required"


def test_unknown_fields_are_refused():
    payload = body(coupon="FREE")
    assert refused(signed(payload), payload).reason == (
        "invalid_payment: coupon: Extra inputs are not permitted"
    )


def test_a_body_that_is_not_an_object_is_refused():
    payload = b"[1, 2]"
    error = refused(signed(payload), payload)
    assert error.status == 422
    assert error.reason.startswith("invalid_payment: body: ")


@pytest.mark.parametrize("event_id", ["", "e" * 201])
def test_the_event_id_length_is_bounded(event_id: str):
    payload = body(provider_event_id=event_id)
    error = refused(signed(payload), payload)
    assert error.status == 422
    assert error.reason.startswith("invalid_payment: provider_event_id: ")


def test_occurred_at_is_optional_and_must_carry_a_timezone():
    notice = parse_notice(body(occurred_at="2026-03-01T11:59:00Z"))
    assert notice.occurred_at == datetime(2026, 3, 1, 11, 59, tzinfo=UTC)
    naive = body(occurred_at="2026-03-01T11:59:00")
    assert refused(signed(naive), naive).reason.startswith("invalid_payment: occurred_at: ")


def test_the_provider_can_be_named():
    assert parse_notice(body(provider="adyen")).provider == "adyen"


def test_a_notice_is_frozen():
    notice = parse_notice(body())
    with pytest.raises(ValueError, match="frozen"):
        notice.amount = Decimal(1)  # type: ignore[misc]


def test_a_notice_built_in_code_takes_a_decimal():
    notice = PaymentNotice(
        provider_event_id="evt_2",
        offtaker_id="acme",
        amount=Decimal("19.99"),
        currency=Currency.EUR,
        occurred_at=NOW - timedelta(minutes=1),
    )
    assert notice.fiat == Money.of("19.99", "EUR")
