"""Money that makes no sense is refused where it enters; what a store already holds is still
read (so a reader can fold it and an offtaker can replace it).

A mandate with ``budget_month "-400"`` or ``max_price_cu_hour "-1"`` used to be accepted, and
its agent then asked the market again and again in vain.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas import (
    REGISTRY,
    CounterOffer,
    FarmerPolicy,
    Mandate,
    OfftakerMandateSet,
    PayOutFarmer,
    ReceiveFiatPayment,
    RefundOfftaker,
    Resources,
)

SHAPE = Resources(cru=1)
WORKLOAD = {"workload_id": "web", "resources": SHAPE.model_dump(), "replicas": 1}


def usd(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "USD"}


def tft(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "TFT"}


def mandate(**changes: Any) -> dict[str, Any]:
    return {
        "workloads": [WORKLOAD],
        "budget_month": usd("400"),
        "max_price_cu_hour": usd("0.05"),
        **changes,
    }


def refused_at(model: type[Any], data: dict[str, Any]) -> list[tuple[Any, ...]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return [error["loc"] for error in caught.value.errors()]


@pytest.mark.parametrize(
    ("field", "amount"),
    [("budget_month", "-400"), ("max_price_cu_hour", "-1"), ("budget_month", "0"),
     ("max_price_cu_hour", "0")],
)  # fmt: skip
def test_a_mandate_with_a_budget_or_price_at_or_below_zero_is_refused_naming_it(
    field: str, amount: str
) -> None:
    assert refused_at(Mandate, mandate(**{field: usd(amount)})) == [(field,)]


def test_a_policy_price_must_be_positive_and_a_floor_not_negative() -> None:
    assert refused_at(FarmerPolicy, {"price_cu_hour": usd("-0.01")}) == [("price_cu_hour",)]
    assert refused_at(FarmerPolicy, {"price_cu_hour": usd("0")}) == [("price_cu_hour",)]
    refused = refused_at(FarmerPolicy, {"markup": "1.2", "floor_cu_hour": usd("-1")})
    assert refused == [("floor_cu_hour",)]
    assert FarmerPolicy(markup="1.2", floor_cu_hour=usd("0")).floor_cu_hour is not None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (PayOutFarmer, {"command_id": "c", "farm_id": "f1", "amount": tft("-5")}),
        (PayOutFarmer, {"command_id": "c", "farm_id": "f1", "amount": tft("0")}),
        (RefundOfftaker, {"command_id": "c", "offtaker_id": "o1", "amount": tft("-5"),
                          "reason": "x"}),
        (ReceiveFiatPayment, {"command_id": "c", "provider": "stripe", "provider_event_id": "e",
                              "offtaker_id": "o1", "amount": usd("-20")}),
    ],
)  # fmt: skip
def test_money_moved_must_be_positive(model: type[Any], data: dict[str, Any]) -> None:
    assert refused_at(model, data) == [("amount",)]


def test_a_counter_below_zero_is_refused() -> None:
    data = {"command_id": "c", "negotiation_id": "n", "offer_id": "o", "price_hour": usd("-1")}
    assert refused_at(CounterOffer, data) == [("price_hour",)]


def test_a_recorded_mandate_that_breaks_todays_bounds_is_still_read() -> None:
    """Old stores hold such mandates: the registry decodes recorded payloads leniently on
    these bounds, while new input (``validate``, a constructor, a request body) is checked."""
    payload = {"offtaker_id": "o1", "mandate": mandate(budget_month=usd("-400"))}
    event = REGISTRY.decode("OfftakerMandateSet", 1, payload)
    assert isinstance(event, OfftakerMandateSet)
    assert event.mandate.budget_month.amount == -400
    with pytest.raises(Exception, match="budget_month"):
        REGISTRY.validate("OfftakerMandateSet", payload)
    # Other rules still hold on read: a float amount is never money.
    bad = {"offtaker_id": "o1", "mandate": mandate(budget_month={"amount": 1.5, "currency": "USD"})}
    with pytest.raises(Exception, match="float"):
        REGISTRY.decode("OfftakerMandateSet", 1, bad)
