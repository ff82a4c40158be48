"""What the gateway's OpenAPI document promises: its security schemes, each route's error
statuses with the shared error model, and schemas that say what the validators take (the
fuzz test, tests/integration/test_gateway_fuzz.py, holds the running gateway to them).
These ran against the code before issue 13: no security scheme, only 200 and 422 declared,
Money.amount published as "number or string" (numbers are refused), the framework's 404,
405 and 400 with a bare string as detail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import jsonschema
import pytest
from fastapi.testclient import TestClient

from hero.config import HeroSettings
from hero.domain.clock import SystemClock
from hero.gateway._openapi import errors
from hero.gateway.app import create_app
from hero.gateway.commands import refusal_status
from hero.gateway.context import GatewayContext
from hero.store.memory import MemoryEventStore
from schemas import FarmerPolicy, Money
from schemas.catalogue.policies import ScalingPolicy
from schemas.ids import OFFTAKER_ID_MAX

KEYED_ERRORS = {"401", "403", "422", "429"}
PUBLIC = {"/health", "/v1/asyncapi.json", "/v1/schemas", "/v1/schemas/{type_name}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    context = GatewayContext(
        # rates off: nothing here reaches Valkey (the 429 is declared all the same)
        settings=HeroSettings(data_dir=tmp_path_factory.mktemp("openapi"), gateway_rate="off"),
        store=MemoryEventStore(),
        redis=cast(Any, None),  # nothing here reaches Valkey: no key is ever checked
        clock=SystemClock(),
    )
    with TestClient(create_app(context, run_projector=False)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    document: dict[str, Any] = client.get("/openapi.json").json()
    return document


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_the_security_schemes_are_declared_and_required_by_every_keyed_route(
    spec: dict[str, Any],
) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer KEY` (keys: `hero keys create`)",
    }
    assert schemes["apiKey"]["in"] == "header"
    assert schemes["apiKey"]["name"] == "X-API-Key"
    for path, method, operation in _operations(spec):
        keyed = path not in PUBLIC and not path.startswith("/webhooks/")
        security = operation.get("security", [])
        assert (security == [{"bearer": []}, {"apiKey": []}]) == keyed, (method, path)


def test_every_keyed_route_declares_its_refusals_with_the_error_model(
    spec: dict[str, Any],
) -> None:
    for path, method, operation in _operations(spec):
        if "security" not in operation:
            continue
        responses = operation["responses"]
        assert set(responses) >= KEYED_ERRORS, (method, path)
        for status in set(responses) - {"200", "201", "422"}:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
        validation = responses["422"]["content"]["application/json"]["schema"]
        assert validation == {"$ref": "#/components/schemas/ValidationErrorBody"}


def test_commands_declare_their_body_and_state_refusals(spec: dict[str, Any]) -> None:
    for path in ("/v1/payouts", "/v1/refunds"):
        assert set(spec["paths"][path]["post"]["responses"]) >= {"400", "404", "409", "413"}
    assert set(spec["paths"]["/v1/nodes/{node_id}/status"]["put"]["responses"]) >= {"404"}
    getter = spec["paths"]["/v1/farms/{document_id}"]["get"]["responses"]
    assert "404" in getter
    assert "404" not in spec["paths"]["/v1/farms"]["get"]["responses"]


def test_money_amount_is_published_as_a_decimal_string_never_a_number() -> None:
    amount = Money.model_json_schema()["properties"]["amount"]
    assert amount["type"] == "string"
    assert "anyOf" not in amount
    check = jsonschema.Draft202012Validator(Money.model_json_schema())
    assert check.is_valid({"amount": "12.5", "currency": "USD"})
    assert not check.is_valid({"amount": 12.5, "currency": "USD"})
    assert not check.is_valid({"amount": "0.00000001", "currency": "TFT"})  # 8 places
    with pytest.raises(ValueError, match="not a float"):
        Money.model_validate_json('{"amount": 12.5, "currency": "USD"}')


def test_payouts_publish_positive_tft_amounts(spec: dict[str, Any]) -> None:
    body = spec["components"]["schemas"]["PayoutBody"]["properties"]["amount"]
    narrowing = body["allOf"][1]["properties"]
    assert narrowing["currency"] == {"const": "TFT"}
    assert "0" not in narrowing["amount"]["pattern"][:3]


def test_a_farmer_policy_schema_states_the_pricing_rule() -> None:
    check = jsonschema.Draft202012Validator(FarmerPolicy.model_json_schema())
    usd = {"amount": "0.02", "currency": "USD"}
    for policy, valid in (
        ({"price_cu_hour": usd}, True),
        ({"markup": "1.1"}, True),
        ({"mode": "off"}, True),
        ({}, False),  # auto, unpriced
        ({"price_cu_hour": usd, "markup": "1.1"}, False),
        ({"price_cu_hour": {"amount": "0.02", "currency": "EUR"}}, False),
    ):
        assert check.is_valid(policy) is valid, policy
        try:
            FarmerPolicy.model_validate(policy)
            accepted = True
        except ValueError:
            accepted = False
        assert accepted is valid, policy


def test_exact_decimals_are_integers_or_decimal_strings_and_a_whole_float_is_taken() -> None:
    target = ScalingPolicy.model_json_schema()["properties"]["target"]["anyOf"]
    assert [branch["type"] for branch in target] == ["integer", "string"]
    policy = ScalingPolicy.model_validate_json(
        '{"metric": "cpu", "target": 70.0, "max_replicas": 3.0}'
    )
    assert (policy.target, policy.max_replicas) == (70, 3)
    with pytest.raises(ValueError, match="not a float"):
        ScalingPolicy.model_validate_json('{"metric": "cpu", "target": 0.7, "max_replicas": 3}')


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("GET", "/v1/nowhere", None, 404, "not_found"),
        ("DELETE", "/health", None, 405, "method_not_allowed"),
        ("POST", "/v1/payouts", b"\xff\xfe{", 400, "bad_request"),
    ],
)
def test_framework_refusals_answer_the_error_model(
    client: TestClient, method: str, path: str, body: bytes | None, status: int, error: str
) -> None:
    headers = {"content-type": "application/json"} if body is not None else {}
    answer = client.request(method, path, content=body, headers=headers)
    assert answer.status_code == status
    detail = answer.json()["detail"]
    assert detail["error"] == error
    assert detail["message"]


def test_a_refusal_for_something_unknown_is_404_state_409_other_400() -> None:
    assert refusal_status("unknown_farm") == 404
    assert refusal_status("unknown_account") == 404
    assert refusal_status("insufficient_funds") == 409
    assert refusal_status("amount_not_positive") == 400


def test_ids_that_name_streams_leave_room_for_the_stream_prefixes() -> None:
    # account-offtaker.<id>.TFT must fit the store's 200 characters
    assert len(f"account-offtaker.{'x' * OFFTAKER_ID_MAX}.TFT") <= 200


def test_the_error_helper_refuses_an_undescribed_status() -> None:
    with pytest.raises(ValueError, match="418"):
        errors(418)


def test_the_document_is_openapi_3_1_with_the_error_models(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    assert {"ErrorBody", "ErrorDetail", "ValidationErrorBody"} <= set(spec["components"]["schemas"])
