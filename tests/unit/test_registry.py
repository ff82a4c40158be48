"""The schema registry and its catalogue: topics, validation, upcasting and JSON Schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import jsonschema
import pytest
from pydantic import ValidationError

import schemas
from schemas import (
    REGISTRY,
    Command,
    Envelope,
    Event,
    FiatPaymentReceived,
    InvalidPayload,
    Message,
    Money,
    SchemaRegistry,
    SchemaVersionError,
    Topic,
    UnknownMessageType,
    event,
)
from schemas.catalogue import commands, payments, policies, reservations, utilization

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

TOPIC_OF_MODULE = [
    (policies, Topic.POLICIES),
    (reservations, Topic.RESERVATIONS),
    (utilization, Topic.UTILIZATION),
    (payments, Topic.PAYMENTS),
]


def _messages_in(module) -> list[type[Message]]:
    found = [getattr(module, name) for name in module.__all__]
    return [obj for obj in found if isinstance(obj, type) and issubclass(obj, Message)]


def _event_classes() -> list[tuple[type[Message], Topic]]:
    return [(cls, topic) for module, topic in TOPIC_OF_MODULE for cls in _messages_in(module)]


def _fiat_v1_payload() -> dict[str, object]:
    return {
        "payment_id": "pay_1",
        "provider": "stripe",
        "provider_event_id": "evt_stripe_1",
        "offtaker_id": "off_1",
        "account_id": "acc_1",
        "amount": "12.50",
        "currency": "USD",
    }


def _farmer_policy(**overrides) -> policies.FarmerPolicy:
    fields: dict[str, object] = {"price_cu_hour": Money.of("0.05", "USD")}
    fields.update(overrides)
    return policies.FarmerPolicy(**fields)


def _workload(workload_id: str = "wl_1") -> policies.WorkloadSpec:
    return policies.WorkloadSpec(
        workload_id=workload_id, resources=schemas.Resources(cru=2), replicas=1
    )


def _mandate(**overrides) -> policies.Mandate:
    fields: dict[str, object] = {
        "workloads": [_workload()],
        "budget_month": Money.of("100", "USD"),
        "max_price_cu_hour": Money.of("0.1", "USD"),
    }
    fields.update(overrides)
    return policies.Mandate(**fields)


# --- the catalogue is registered ----------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "topic"), _event_classes(), ids=lambda v: getattr(v, "__name__", str(v))
)
def test_every_event_is_registered_on_its_topic(cls, topic):
    entry = REGISTRY.entry(cls.__name__)
    assert entry.model is cls
    assert entry.kind == "event"
    assert entry.topic is topic
    assert REGISTRY.topic_for(cls.__name__) is topic
    assert issubclass(cls, Event)
    assert (cls.__name__, topic, entry.version) == (cls.TYPE, cls.TOPIC, cls.SCHEMA_VERSION)


@pytest.mark.parametrize("cls", _messages_in(commands), ids=lambda c: c.__name__)
def test_every_command_is_registered_on_the_commands_topic(cls):
    entry = REGISTRY.entry(cls.__name__)
    assert entry.model is cls
    assert entry.kind == "command"
    assert entry.topic is Topic.COMMANDS
    assert issubclass(cls, Command)
    assert "command_id" in cls.model_fields
    assert cls.model_fields["command_id"].is_required()


def test_the_registry_holds_exactly_the_catalogue():
    catalogue = {cls.__name__ for cls, _ in _event_classes()}
    catalogue |= {cls.__name__ for cls in _messages_in(commands)}
    assert {entry.type for entry in REGISTRY.entries()} == catalogue
    assert {e.type for e in REGISTRY.entries("command")} == {
        c.__name__ for c in _messages_in(commands)
    }


@pytest.mark.parametrize("name", ["OfferApproved", "OfferWithdrawn", "OfferMade"])
def test_offer_lifecycle_events_live_on_the_reservations_topic(name):
    assert REGISTRY.topic_for(name) is Topic.RESERVATIONS
    assert name in reservations.__all__
    assert name not in policies.__all__


def test_policies_topic_carries_only_policies_and_mandates():
    assert {cls.__name__ for cls in _messages_in(policies)} == {
        "FarmerPolicySet",
        "OfftakerMandateSet",
    }


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("ContractCreated", {"offer_id", "hold_id", "workload_id"}),
        ("OfferMade", {"hold_id", "region", "uptime_pct"}),
    ],
)
def test_reservation_events_require_their_links(name, fields):
    model = REGISTRY.entry(name).model
    assert all(model.model_fields[field].is_required() for field in fields)


def test_entries_are_sorted_by_type():
    names = [entry.type for entry in REGISTRY.entries()]
    assert names == sorted(names)


def test_contains_knows_registered_names():
    assert "FarmerPolicySet" in REGISTRY
    assert "NoSuchThing" not in REGISTRY


# --- unknown types and invalid payloads ---------------------------------------------------


def test_unknown_type_raises_unknown_message_type_naming_it():
    with pytest.raises(UnknownMessageType, match="'NoSuchEvent'") as raised:
        REGISTRY.decode("NoSuchEvent", 1, {})
    assert raised.value.type_name == "NoSuchEvent"
    assert isinstance(raised.value, LookupError)


def test_unknown_type_in_topic_for_and_validate():
    with pytest.raises(UnknownMessageType):
        REGISTRY.topic_for("NoSuchEvent")
    with pytest.raises(UnknownMessageType):
        REGISTRY.validate("NoSuchEvent", {})


def test_validate_returns_the_model_instance():
    message = REGISTRY.validate("NodeStatusChanged", {"node_id": "n1", "status": "up"})
    assert message == utilization.NodeStatusChanged(node_id="n1", status="up")


def test_unknown_field_is_named_in_invalid_payload():
    with pytest.raises(InvalidPayload) as raised:
        REGISTRY.validate("NodeStatusChanged", {"node_id": "n1", "status": "up", "colour": "red"})
    assert raised.value.type_name == "NodeStatusChanged"
    assert [(e.location, e.kind) for e in raised.value.errors] == [("colour", "extra_forbidden")]
    assert "colour" in str(raised.value)


def test_wrong_types_are_each_named_in_invalid_payload():
    payload = {"node_id": "n1", "status": "sideways", "previous": 42}
    with pytest.raises(InvalidPayload) as raised:
        REGISTRY.validate("NodeStatusChanged", payload)
    locations = {error.location for error in raised.value.errors}
    assert locations == {"status", "previous"}
    assert all(error.message for error in raised.value.errors)


def test_nested_field_errors_carry_a_dotted_location():
    payload = {**_fiat_v1_payload(), "amount": {"amount": "1", "currency": "XXX"}}
    del payload["currency"]
    with pytest.raises(InvalidPayload) as raised:
        REGISTRY.validate("FiatPaymentReceived", payload)
    assert [error.location for error in raised.value.errors] == ["amount.currency"]


def test_missing_field_is_named():
    with pytest.raises(InvalidPayload) as raised:
        REGISTRY.validate("NodeStatusChanged", {"status": "up"})
    assert [(e.location, e.kind) for e in raised.value.errors] == [("node_id", "missing")]


# --- upcasting ----------------------------------------------------------------------------


def test_fiat_payment_is_at_version_2():
    assert REGISTRY.entry("FiatPaymentReceived").version == 2
    assert FiatPaymentReceived.SCHEMA_VERSION == 2


def test_v1_fiat_payment_decodes_to_v2_with_money():
    message = REGISTRY.decode("FiatPaymentReceived", 1, _fiat_v1_payload())
    assert isinstance(message, FiatPaymentReceived)
    assert message.amount == Money.of("12.50", "USD")
    assert message.amount.amount.as_tuple() == Decimal("12.50").as_tuple()
    assert message.payment_id == "pay_1"


def test_upcast_does_not_mutate_the_stored_payload():
    payload = _fiat_v1_payload()
    version, data = REGISTRY.upcast("FiatPaymentReceived", 1, payload)
    assert version == 2
    assert data["amount"] == {"amount": "12.50", "currency": "USD"}
    assert payload == _fiat_v1_payload()


def test_v1_fiat_payment_decodes_through_an_envelope():
    envelope = Envelope(
        id="evt_1",
        type="FiatPaymentReceived",
        schema_version=1,
        stream="payment-pay_1",
        version=1,
        position=1,
        occurred_at=NOW,
        recorded_at=NOW,
        actor="stripe-webhook",
        payload=_fiat_v1_payload(),
    )
    message = envelope.decode()
    assert isinstance(message, FiatPaymentReceived)
    assert message.amount == Money.of("12.50", "USD")


def test_v2_fiat_payment_decodes_without_upcasting():
    payload = FiatPaymentReceived.model_validate(
        REGISTRY.upcast("FiatPaymentReceived", 1, _fiat_v1_payload())[1]
    ).model_dump(mode="json")
    message = REGISTRY.decode("FiatPaymentReceived", 2, payload)
    assert message.amount == Money.of("12.50", "USD")  # type: ignore[attr-defined]


def test_malformed_v1_payload_raises_invalid_payload():
    payload = _fiat_v1_payload()
    del payload["currency"]
    with pytest.raises(InvalidPayload):
        REGISTRY.decode("FiatPaymentReceived", 1, payload)


def test_a_version_newer_than_known_is_refused():
    with pytest.raises(SchemaVersionError, match="v3 is newer"):
        REGISTRY.decode("FiatPaymentReceived", 3, _fiat_v1_payload())


def test_a_version_below_one_is_refused():
    with pytest.raises(SchemaVersionError, match="not valid"):
        REGISTRY.decode("NodeStatusChanged", 0, {"node_id": "n1", "status": "up"})


def test_a_missing_upcaster_step_is_refused():
    registry = SchemaRegistry()

    @event(Topic.UTILIZATION, version=3, registry=registry)
    class Thing(Event):
        size: int

    @registry.upcaster("Thing", from_version=1)
    def _one_to_two(payload):
        return {"size": payload["length"]}

    # v1 -> v2 exists, v2 -> v3 does not.
    with pytest.raises(SchemaVersionError, match="no upcaster for Thing v2 -> v3"):
        registry.decode("Thing", 1, {"length": 3})
    assert registry.decode("Thing", 3, {"size": 3}) == Thing(size=3)
    assert "Thing" not in REGISTRY


def test_upcasters_run_in_order():
    registry = SchemaRegistry()

    @event(Topic.UTILIZATION, version=3, registry=registry)
    class Measured(Event):
        value: str

    @registry.upcaster("Measured", from_version=1)
    def _one(payload):
        return {"value": payload["v"] + ">2"}

    @registry.upcaster("Measured", from_version=2)
    def _two(payload):
        return {"value": payload["value"] + ">3"}

    assert registry.decode("Measured", 1, {"v": "1"}) == Measured(value="1>2>3")
    assert registry.decode("Measured", 2, {"value": "2"}) == Measured(value="2>3")


def test_registering_a_different_class_under_the_same_name_is_refused():
    registry = SchemaRegistry()

    @event(Topic.UTILIZATION, registry=registry)
    class Twice(Event):
        pass

    with pytest.raises(ValueError, match="registered twice"):

        @event(Topic.UTILIZATION, registry=registry)
        class Twice(Event):
            pass


def test_schema_versions_start_at_one():
    with pytest.raises(ValueError, match="start at 1"):

        @event(Topic.UTILIZATION, version=0, registry=SchemaRegistry())
        class Zero(Event):
            pass


# --- JSON Schemas -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def json_schemas():
    return REGISTRY.json_schemas()


def test_json_schemas_has_one_schema_per_type(json_schemas):
    assert set(json_schemas) == {entry.type for entry in REGISTRY.entries()}


def test_every_json_schema_is_annotated_and_valid(json_schemas):
    for entry in REGISTRY.entries():
        schema = json_schemas[entry.type]
        assert schema["x-hero"] == {
            "kind": entry.kind,
            "topic": entry.topic.value,
            "schema_version": entry.version,
        }
        jsonschema.Draft202012Validator.check_schema(schema)


def _samples() -> list[Message]:
    sla = schemas.Sla(uptime_pct=Decimal("99.5"), penalty_pct=Decimal("10"))
    return [
        policies.FarmerPolicySet(
            farm_id="farm_1",
            policy=_farmer_policy(floor_cu_hour=Money.of("0.01", "USD")),
            source_text="sell at 5 cents",
        ),
        policies.OfftakerMandateSet(offtaker_id="off_1", mandate=_mandate()),
        reservations.ContractCreated(
            contract_id="ctr_1",
            negotiation_id="neg_1",
            offer_id="ofr_1",
            hold_id="ofr_1",
            offtaker_id="off_1",
            workload_id="wl_1",
            farm_id="farm_1",
            node_id="node_1",
            grid=schemas.Grid.GRID3,
            resources=schemas.Resources.from_gb(cru=2, mru_gb=4),
            price_hour=Money.of("0.1234567", "USD"),
            term_hours=720,
            sla=sla,
            starts_at=NOW,
        ),
        reservations.OfferMade(
            negotiation_id="neg_1",
            offer_id="ofr_1",
            farm_id="farm_1",
            node_id="node_1",
            hold_id="ofr_1",
            grid=schemas.Grid.GRID4,
            region="europe",
            uptime_pct=Decimal("99.9"),
            resources=schemas.Resources.from_gb(cru=2, mru_gb=4, sru_gb=50),
            price_hour=Money.of("0.02", "USD"),
            term_hours=720,
            sla=sla,
            firm=False,
            expires_at=NOW,
        ),
        reservations.OfferApproved(negotiation_id="neg_1", offer_id="ofr_1", farm_id="farm_1"),
        reservations.OfferWithdrawn(
            negotiation_id="neg_1", offer_id="ofr_1", farm_id="farm_1", reason="rejected"
        ),
        REGISTRY.decode("FiatPaymentReceived", 1, _fiat_v1_payload()),
        commands.ChangeNodeStatus(command_id="cmd_1", node_id="node_1", status="down"),
        commands.IssueRfq(
            command_id="cmd_2",
            negotiation_id="neg_1",
            offtaker_id="off_1",
            workload_id="wl_1",
            resources=schemas.Resources.from_gb(cru=2, mru_gb=4),
            replicas=2,
            grids=[schemas.Grid.GRID3, schemas.Grid.GRID4],
            max_price_cu_hour=Money.of("0.05", "USD"),
            term_hours=720,
            deadline=NOW,
        ),
        commands.MakeOffer(
            command_id="cmd_3",
            negotiation_id="neg_1",
            offer_id="ofr_1",
            farm_id="farm_1",
            node_id="node_1",
            price_hour=Money.of("0.02", "USD"),
            term_hours=720,
            sla=sla,
            expires_at=NOW,
        ),
        commands.AcceptOffer(command_id="cmd_4", negotiation_id="neg_1", offer_id="ofr_1"),
        commands.CloseNegotiation(command_id="cmd_5", negotiation_id="neg_1", outcome="expired"),
    ]


@pytest.mark.parametrize("sample", _samples(), ids=lambda m: type(m).__name__)
def test_json_schema_validates_a_real_dump(json_schemas, sample):
    schema = json_schemas[type(sample).__name__]
    jsonschema.Draft202012Validator(schema).validate(sample.model_dump(mode="json"))


def test_json_schema_rejects_an_unknown_field(json_schemas):
    validator = jsonschema.Draft202012Validator(json_schemas["FiatPaymentReceived"])
    dump = REGISTRY.decode("FiatPaymentReceived", 1, _fiat_v1_payload()).model_dump(mode="json")
    assert validator.is_valid(dump)
    assert not validator.is_valid({**dump, "surprise": True})
    assert not validator.is_valid({**dump, "amount": {"amount": 12.5, "currency": "USD"}})


# --- FarmerPolicy and Mandate rules -------------------------------------------------------


def test_farmer_policy_with_fixed_prices_or_markup_is_accepted():
    assert _farmer_policy().price_cu_hour == Money.of("0.05", "USD")
    assert policies.FarmerPolicy(markup=Decimal("1.2")).markup == Decimal("1.2")


def test_farmer_policy_refuses_fixed_price_and_markup_together():
    with pytest.raises(ValidationError, match="not both"):
        _farmer_policy(markup=Decimal("1.1"))


def test_active_farmer_policy_needs_a_price():
    with pytest.raises(ValidationError, match="fixed prices or a markup"):
        policies.FarmerPolicy()
    assert policies.FarmerPolicy(mode=policies.PolicyMode.OFF).mode is policies.PolicyMode.OFF


@pytest.mark.parametrize("field", ["price_cu_hour", "price_su_hour", "floor_cu_hour"])
def test_farmer_policy_refuses_non_usd_prices(field):
    with pytest.raises(ValidationError, match=f"{field} must be in USD"):
        _farmer_policy(**{field: Money.of("1", "TFT")})


def test_farmer_policy_refuses_an_offtaker_both_allowed_and_denied():
    with pytest.raises(ValidationError, match="off_1"):
        _farmer_policy(allow_offtakers=["off_1", "off_2"], deny_offtakers=["off_1"])


def test_mandate_refuses_duplicate_workload_ids():
    with pytest.raises(ValidationError, match="unique"):
        _mandate(workloads=[_workload("wl_1"), _workload("wl_1")])
    assert len(_mandate(workloads=[_workload("wl_1"), _workload("wl_2")]).workloads) == 2


@pytest.mark.parametrize("field", ["budget_month", "max_price_cu_hour"])
def test_mandate_refuses_non_usd_money(field):
    with pytest.raises(ValidationError, match=f"{field} must be in USD"):
        _mandate(**{field: Money.of("1", "EUR")})


def test_mandate_needs_a_workload():
    with pytest.raises(ValidationError, match="workloads"):
        _mandate(workloads=[])


def test_set_farmer_policy_command_carries_the_policy_rules():
    with pytest.raises(ValidationError, match="not both"):
        REGISTRY.entry("SetFarmerPolicy").model.model_validate(
            {
                "command_id": "cmd_1",
                "farm_id": "farm_1",
                "policy": {"price_cu_hour": {"amount": "1", "currency": "USD"}, "markup": "2"},
            }
        )
