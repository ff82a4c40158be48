"""Money: exact Decimal amounts with a currency, never floats."""

from __future__ import annotations

import json
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import Currency, CurrencyMismatch, Money

# Amounts of a realistic size: up to 10^15 with 7 places is 22 significant digits, inside
# the default Decimal context (28 digits); Money refuses amounts of 10^18 and more.
amounts = st.decimals(
    min_value=Decimal("-1e15"),
    max_value=Decimal("1e15"),
    places=7,
    allow_nan=False,
    allow_infinity=False,
)
currencies = st.sampled_from(list(Currency))
# No example database: the unit suite writes nothing outside its temporary directories.
no_database = settings(database=None)


# --- construction -------------------------------------------------------------------------


def test_of_parses_strings_ints_and_decimals_exactly():
    assert Money.of("12.50", "USD").amount == Decimal("12.50")
    assert Money.of(3, Currency.TFT).amount == Decimal(3)
    assert Money.of(Decimal("0.1"), "EUR").amount == Decimal("0.1")
    assert Money.of("12.50", "USD").currency is Currency.USD


def test_of_refuses_text_that_is_not_a_number():
    with pytest.raises(ValueError, match="not a decimal amount"):
        Money.of("twelve", "USD")


def test_of_refuses_unknown_currency():
    with pytest.raises(ValueError, match="GBP"):
        Money.of("1", "GBP")


def test_zero_is_zero_in_its_currency():
    zero = Money.zero("TFT")
    assert zero.is_zero
    assert not zero.is_negative
    assert zero.currency is Currency.TFT
    assert zero == Money.of("0", "TFT")


def test_every_currency_keeps_seven_places():
    for currency in Currency:
        assert currency.places == 7
        assert currency.quantum == Decimal("0.0000001")


def test_seven_decimal_places_are_accepted():
    assert Money.of("0.0000001", "TFT").amount == Decimal("0.0000001")


@pytest.mark.parametrize("amount", ["0.00000001", "1.12345678", "1.00000000"])
def test_more_than_seven_decimal_places_are_refused(amount):
    with pytest.raises(ValueError, match="at most 7 decimal places"):
        Money.of(amount, "USD")


def test_negative_amounts_are_allowed_and_reported():
    debt = Money.of("-5", "USD")
    assert debt.is_negative
    assert -debt == Money.of("5", "USD")


def test_money_is_immutable():
    price = Money.of("1", "USD")
    with pytest.raises(ValidationError):
        price.amount = Decimal(2)  # type: ignore[misc]


def test_unknown_fields_are_refused():
    with pytest.raises(ValidationError, match="extra"):
        Money.model_validate({"amount": "1", "currency": "USD", "note": "x"})


# --- floats, NaN and infinity -------------------------------------------------------------


def test_constructor_refuses_a_float_with_a_message_about_floats():
    with pytest.raises(ValidationError, match="float"):
        Money(amount=0.1, currency=Currency.USD)  # type: ignore[arg-type]


def test_json_number_with_a_fraction_is_refused_as_a_float():
    with pytest.raises(ValidationError, match="float"):
        Money.model_validate_json('{"amount": 0.1, "currency": "USD"}')


def test_json_integer_is_accepted():
    assert Money.model_validate_json('{"amount": 5, "currency": "USD"}').amount == Decimal(5)


def test_of_refuses_a_float_even_when_it_is_exact_in_binary():
    with pytest.raises((TypeError, ValueError), match="float"):
        Money.of(0.5, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize("amount", ["NaN", "sNaN", "Infinity", "-Infinity"])
def test_non_finite_amounts_are_refused(amount):
    with pytest.raises(ValueError, match="finite"):
        Money(amount=Decimal(amount), currency=Currency.USD)


def test_non_finite_amount_from_json_is_refused():
    with pytest.raises(ValidationError, match="finite"):
        Money.model_validate_json('{"amount": "NaN", "currency": "USD"}')


# --- rounding and multiplication ----------------------------------------------------------


def test_rounded_brings_a_computed_amount_to_seven_places_half_even():
    assert Money.rounded(Decimal("1.00000005"), "USD").amount == Decimal("1.0000000")
    assert Money.rounded(Decimal("1.00000015"), "USD").amount == Decimal("1.0000002")


def test_rounded_uses_the_rounding_it_is_given():
    assert Money.rounded(Decimal("1.00000005"), "USD", ROUND_HALF_UP).amount == Decimal("1.0000001")
    assert Money.rounded(Decimal("1.99999999"), "USD", ROUND_DOWN).amount == Decimal("1.9999999")


def test_times_multiplies_and_rounds_to_the_currency():
    price = Money.of("0.0000005", "USD")
    assert price.times(Decimal("0.5")) == Money.of("0.0000002", "USD")  # 2.5e-7, half even
    assert price.times(Decimal("0.5"), ROUND_HALF_UP) == Money.of("0.0000003", "USD")
    assert Money.of("12.50", "USD").times(3) == Money.of("37.5", "USD")
    assert Money.of("12.50", "USD").times(3).currency is Currency.USD


def test_times_refuses_a_float_factor():
    with pytest.raises(TypeError, match="float"):
        Money.of("1", "USD").times(1.5)  # type: ignore[arg-type]


# --- arithmetic and comparison ------------------------------------------------------------


def test_add_and_sub_in_one_currency():
    a, b = Money.of("10.25", "USD"), Money.of("0.75", "USD")
    assert a + b == Money.of("11", "USD")
    assert a - b == Money.of("9.5", "USD")
    assert (b - a).is_negative


def test_comparisons_in_one_currency():
    small, big = Money.of("1", "TFT"), Money.of("2", "TFT")
    assert small < big
    assert small <= big
    assert big > small
    assert big >= small
    assert small <= Money.of("1.0", "TFT")
    assert not small > big


def test_equal_values_with_different_trailing_zeros_are_equal():
    assert Money.of("1.5", "USD") == Money.of("1.5000000", "USD")


def test_same_amount_in_different_currencies_is_not_equal():
    assert Money.of("1", "USD") != Money.of("1", "EUR")


@pytest.mark.parametrize(
    "operation",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a < b,
        lambda a, b: a <= b,
        lambda a, b: a > b,
        lambda a, b: a >= b,
    ],
    ids=["add", "sub", "lt", "le", "gt", "ge"],
)
def test_mixed_currencies_raise_currency_mismatch(operation):
    with pytest.raises(CurrencyMismatch, match=r"USD.*TFT"):
        operation(Money.of("1", "USD"), Money.of("1", "TFT"))


def test_currency_mismatch_is_a_value_error():
    assert issubclass(CurrencyMismatch, ValueError)


def test_arithmetic_with_a_non_money_is_a_type_error():
    with pytest.raises(TypeError, match="expected Money"):
        Money.of("1", "USD") + Decimal(1)  # type: ignore[operator]


def test_str_shows_amount_and_currency():
    assert str(Money.of("12.50", "USD")) == "12.50 USD"


# --- JSON ---------------------------------------------------------------------------------


def test_json_serialises_the_amount_as_a_string():
    data = json.loads(Money.of("0.1000000", "TFT").model_dump_json())
    assert data == {"amount": "0.1000000", "currency": "TFT"}


def test_json_round_trip_keeps_the_exact_decimal():
    original = Money.of("123456789.1234567", "EUR")
    again = Money.model_validate_json(original.model_dump_json())
    assert again == original
    assert again.amount.as_tuple() == original.amount.as_tuple()


@no_database
@given(amount=amounts, currency=currencies)
def test_json_round_trip_property(amount, currency):
    money = Money(amount=amount, currency=currency)
    assert Money.model_validate_json(money.model_dump_json()).amount.as_tuple() == (
        money.amount.as_tuple()
    )


@no_database
@given(a=amounts, b=amounts, currency=currencies)
def test_adding_then_subtracting_gives_back_the_same_amount(a, b, currency):
    x, y = Money(amount=a, currency=currency), Money(amount=b, currency=currency)
    assert (x + y) - y == x


def test_amounts_too_large_for_exact_arithmetic_are_refused():
    with pytest.raises(ValueError, match="below 10\\^18"):
        Money.of("1000000000000000000000.0000001", "TFT")  # 29 significant digits


def test_the_largest_amounts_add_exactly():
    big = Money.of("999999999999999999.9999999", "TFT")
    assert (big + Money.of("-0.0000001", "TFT")).amount == Decimal("999999999999999999.9999998")
    third = Money.of("333333333333333333.3333333", "TFT")
    assert third.times(3).amount == Decimal("999999999999999999.9999999")
    with pytest.raises(ValueError, match="below 10"):
        big.times(3)


def test_tiny_amounts_are_written_in_fixed_point_never_in_exponent_form() -> None:
    tiny = Money.rounded(Decimal("0.00000051"), "USD")
    assert tiny.model_dump(mode="json") == {"amount": "0.0000005", "currency": "USD"}
    assert str(tiny) == "0.0000005 USD"
    assert Money.model_validate_json(tiny.model_dump_json()) == tiny


@no_database
@given(a=amounts, b=amounts, currency=currencies)
def test_sums_negations_and_roundings_equal_what_validation_builds(a, b, currency):
    """Their results skip validation (they are valid by construction): each equals, field for
    field and digit for digit, the Money validation would build, and dumps the same."""
    x, y = Money(amount=a, currency=currency), Money(amount=b, currency=currency)
    for built, amount in ((x + y, a + b), (x - y, a - b), (-x, -a)):
        validated = Money(amount=amount, currency=currency)
        assert built == validated
        assert built.amount.as_tuple() == validated.amount.as_tuple()
        assert built.model_dump_json() == validated.model_dump_json()
        assert built.model_fields_set == validated.model_fields_set
    halved = Money.rounded(a / 2, currency)
    assert halved == Money(amount=(a / 2).quantize(Decimal("1E-7")), currency=currency)


def test_a_sum_past_the_limit_is_still_refused():
    big = Money.of("999999999999999999.9999999", "TFT")
    with pytest.raises(ValueError, match="below 10\\^18"):
        big + Money.of("0.0000001", "TFT")
    with pytest.raises(ValueError, match="below 10\\^18"):
        Money.rounded(Decimal("1E18"), "TFT")
