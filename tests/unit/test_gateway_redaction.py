"""What a key sees of another party's data: hero.gateway.redaction, and the per-view rendering
of events (hero.gateway._stream_rules.rendered) on every event type of the catalogue."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from hero.gateway._stream_rules import (
    DEVELOPER_HIDDEN_TYPES,
    FARMER_MOVES,
    hidden_from_developers,
    rendered,
)
from hero.gateway.context import Principal, Role
from hero.gateway.redaction import (
    PUBLIC_DECISION_FIELDS,
    Pseudonyms,
    offtaker_ids_in,
    redact_for_developer,
)
from hero.gateway.scopes import shown
from schemas import (
    REGISTRY,
    CapacityHeld,
    Envelope,
    Grid,
    GuardrailHit,
    HoldReleased,
    Money,
    Negotiator,
    OfferAccepted,
    OfferMade,
    Resources,
    Sla,
    StrategyDecision,
)
from schemas.ids import ID_PATTERN

SECRET = b"unit-test-secret"
OFF = "acme-7"
OTHER = "globex-7"
DEV = Principal("d", Role.DEVELOPER)
ADMIN = Principal("a", Role.ADMIN)
FARMER = Principal("f", Role.FARMER, frozenset({"farm-a"}))
OFFTAKER = Principal("o", Role.OFFTAKER, frozenset({OFF}))
EVENT_TYPES = sorted(e.type for e in REGISTRY.entries("event"))
NOW = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)


def masks(*known: str) -> Pseudonyms:
    return Pseudonyms(SECRET, known or {OFF, OTHER})


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [*value.keys(), *(s for v in value.values() for s in _strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _leaks(value: object, *names: str) -> list[str]:
    """Every string of ``value`` that names one of ``names``, in any case."""
    return [s for s in _strings(value) for n in names or (OFF,) if n.lower() in s.lower()]


# -- every event of the catalogue, with the offtaker in every string it can hold -------------


def _sample(schema: dict[str, Any], defs: dict[str, Any], name: str) -> Any:
    """A payload value for ``schema`` whose every free string names the offtaker (in two
    cases): the worst an event could carry. Not validated: the redaction must not need it."""
    if "$ref" in schema:
        return _sample(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, name)
    for combined in ("anyOf", "oneOf", "allOf"):
        if combined in schema:
            options = [o for o in schema[combined] if o.get("type") != "null"]
            return _sample(options[0], defs, name)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        if "properties" in schema:
            return {k: _sample(v, defs, k) for k, v in schema["properties"].items()}
        extra = schema.get("additionalProperties")
        return {f"{OFF}.key": _sample(extra if isinstance(extra, dict) else {}, defs, name)}
    if kind == "array":
        return [_sample(schema.get("items", {}), defs, name)]
    if kind in ("number", "integer"):
        return 1
    if kind == "boolean":
        return True
    if schema.get("format") == "date-time":
        return NOW.isoformat()
    return f"{OFF}.{name}.1:offtaker.{OFF.upper()}.TFT"


def catalogue_event(type_name: str) -> dict[str, Any]:
    schema = REGISTRY.entry(type_name).model.model_json_schema()
    payload = _sample(schema, schema.get("$defs", {}), type_name)
    payload["offtaker_id"] = OFF  # as the events that introduce an offtaker carry it
    return envelope(type_name, payload)


def envelope(type_name: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt-{OFF}.1",
        "type": type_name,
        "schema_version": 1,
        "stream": f"nego-{OFF}.web.1",
        "version": 3,
        "position": 42,
        "occurred_at": NOW.isoformat(),
        "recorded_at": NOW.isoformat(),
        "causation_id": f"offtaker:{OFF}:{OFF}.web.1:accept:{OFF}.web.1.farm-a.0",
        "correlation_id": f"{OFF}.web.1",
        "actor": f"offtaker:{OFF}",
        "payload": payload,
    }


@pytest.mark.parametrize("type_name", EVENT_TYPES)
def test_a_developer_frame_names_no_offtaker_in_any_string_of_any_event(type_name: str) -> None:
    pseudonyms = masks()
    event = catalogue_event(type_name)
    frame = rendered(DEV, event, pseudonyms)
    if type_name in DEVELOPER_HIDDEN_TYPES or hidden_from_developers(event):
        assert frame is None
        return
    assert frame is not None
    assert _leaks(frame) == []
    assert OFF not in json.dumps(frame).lower()
    # consistent: the same offtaker has the same pseudonym in the envelope and the payload
    alias = pseudonyms.of(OFF)
    assert frame["stream"] == f"nego-{alias}.web.1"
    assert frame["correlation_id"] == f"{alias}.web.1"
    assert frame["actor"] == "offtaker"
    assert frame["payload"]["offtaker_id"] == alias


@pytest.mark.parametrize("type_name", EVENT_TYPES)
def test_decisions_reach_others_with_their_public_part_only(type_name: str) -> None:
    event = catalogue_event(type_name)
    payload = event["payload"]
    if "decision" not in payload and "decisions" not in payload:
        return
    frame = rendered(DEV, event, masks())
    if frame is None:
        return
    decisions = frame["payload"].get("decisions") or [frame["payload"]["decision"]]
    for decision in decisions:
        assert set(decision) <= PUBLIC_DECISION_FIELDS
        assert not {"rationale", "proposed", "guardrails", "fallback"} & set(decision)


def test_every_event_type_was_sampled() -> None:
    assert {"OfferMade", "CapacityHeld", "HoldReleased", "OfferAccepted", "TransferPosted"} <= set(
        EVENT_TYPES
    )
    assert len(EVENT_TYPES) >= 35


# -- the leaks of issue 13 item 2: ids derived from an offtaker, no offtaker_id in sight -----


def _offer_made(decision: StrategyDecision | None = None) -> dict[str, Any]:
    offer = OfferMade(
        negotiation_id=f"{OFF}.web.1",
        offer_id=f"{OFF}.web.1.farm-a.0",
        farm_id="farm-a",
        node_id="node-a-1",
        hold_id=f"{OFF}.web.1.farm-a.0",
        grid=Grid.GRID3,
        region="europe",
        uptime_pct=Decimal("99.5"),
        resources=Resources.from_gb(cru=2, mru_gb=4, sru_gb=50),
        price_hour=Money.of("0.10", "USD"),
        term_hours=720,
        sla=Sla(uptime_pct=Decimal(99)),
        firm=True,
        expires_at=NOW + timedelta(minutes=5),
        decision=decision,
    )
    return envelope("OfferMade", offer.model_dump(mode="json"))


def test_offer_made_without_offtaker_id_is_masked_for_developers() -> None:
    """Regression: OfferMade has no offtaker_id; its negotiation, offer and hold ids, stream,
    causation and correlation named the offtaker to developers."""
    frame = rendered(DEV, _offer_made(), masks())
    assert frame is not None
    assert _leaks(frame) == []
    alias = masks().of(OFF)
    assert frame["payload"]["negotiation_id"] == f"{alias}.web.1"
    assert frame["payload"]["offer_id"] == f"{alias}.web.1.farm-a.0"
    assert frame["payload"]["farm_id"] == "farm-a"  # the public market stays
    assert frame["payload"]["price_hour"] == {"amount": "0.10", "currency": "USD"}


@pytest.mark.parametrize(
    "event",
    [
        CapacityHeld(
            node_id="node-a-1",
            hold_id=f"{OFF}.web.1.farm-a.0",
            negotiation_id=f"{OFF}.web.1",
            resources=Resources.from_gb(cru=1, mru_gb=1, sru_gb=1),
            expires_at=NOW,
        ),
        HoldReleased(node_id="node-a-1", hold_id=f"{OFF}.web.1.farm-a.0", reason="awarded"),
        OfferAccepted(
            negotiation_id=f"{OFF}.web.1",
            offer_id=f"{OFF}.web.1.farm-a.0",
            farm_id="farm-a",
            contract_id=f"ctr.{OFF}.web.1.{OFF}.web.1.farm-a.0",
            price_hour=Money.of("0.1", "USD"),
        ),
    ],
    ids=lambda e: type(e).__name__,
)
def test_holds_and_acceptances_are_masked_for_developers(event: Any) -> None:
    """Regression: CapacityHeld, HoldReleased and OfferAccepted carry no offtaker_id."""
    frame = rendered(DEV, envelope(type(event).__name__, event.model_dump(mode="json")), masks())
    assert frame is not None
    assert _leaks(frame) == []


def test_a_masked_frame_still_decodes_in_the_sdk() -> None:
    """The SDK validates the envelope and decodes the payload: pseudonyms fit the id pattern."""
    frame = rendered(DEV, _offer_made(), masks())
    parsed = Envelope.model_validate_json(json.dumps(frame))
    offer = parsed.decode()
    assert isinstance(offer, OfferMade)
    assert offer.negotiation_id == f"{masks().of(OFF)}.web.1"
    assert parsed.actor == "offtaker"


# -- pseudonyms --------------------------------------------------------------------------------


def test_pseudonyms_are_stable_keyed_and_valid_ids() -> None:
    one, again, other_secret = masks(), masks(), Pseudonyms(b"another", {OFF})
    assert one.of(OFF) == again.of(OFF)
    assert one.of(OFF) != one.of(OTHER)
    assert one.of(OFF) != other_secret.of(OFF)
    assert re.fullmatch(r"offtaker-[0-9a-f]{12}", one.of(OFF))
    assert re.fullmatch(ID_PATTERN, one.of(OFF))
    assert OFF not in one.of(OFF)


def test_masking_is_case_insensitive_longest_first_and_reversible_only_with_the_directory() -> None:
    pseudonyms = Pseudonyms(SECRET, {"acme", "acme-eu"})
    text = "nego-ACME-EU.web.1 and acme.db.2"
    masked = pseudonyms.mask(text)
    assert masked == f"nego-{pseudonyms.of('acme-eu')}.web.1 and {pseudonyms.of('acme')}.db.2"
    assert pseudonyms.unmask(f"{pseudonyms.of('acme')}.db.2") == "acme.db.2"
    assert pseudonyms.unmask("offtaker-000000000000.x") == "offtaker-000000000000.x"
    assert pseudonyms.names_an_offtaker("x.Acme.y")
    assert not pseudonyms.names_an_offtaker("farm-a")
    with pytest.raises(ValueError, match="secret must not be empty"):
        Pseudonyms(b"")


def test_learning_bumps_the_generation_once_per_new_id() -> None:
    pseudonyms = Pseudonyms(SECRET)
    assert pseudonyms.mask(OFF) == OFF
    assert pseudonyms.learn([OFF])
    assert pseudonyms.generation == 1
    assert not pseudonyms.learn([OFF, ""])
    assert pseudonyms.generation == 1
    assert pseudonyms.mask(OFF) == pseudonyms.of(OFF)


# -- private limits: the other side of a negotiation, and farms among themselves --------------


def _rfq() -> dict[str, Any]:
    event = catalogue_event("RfqIssued")
    event["payload"]["invited_farms"] = ["farm-a"]
    event["payload"]["max_price_cu_hour"] = {"amount": "0.05", "currency": "USD"}
    return event


def test_a_farmer_never_sees_an_offtakers_ceiling() -> None:
    for principal in (FARMER, DEV):
        frame = rendered(principal, _rfq(), masks())
        assert frame is not None
        assert "max_price_cu_hour" not in frame["payload"]
    own = rendered(OFFTAKER, _rfq(), masks())
    assert own is not None
    assert own["payload"]["max_price_cu_hour"]["amount"] == "0.05"
    assert rendered(ADMIN, _rfq(), masks()) == _rfq()


def test_a_farmer_sees_its_own_floor_but_not_another_farms() -> None:
    policy = {"farm_id": "farm-a", "policy": {"floor_cu_hour": {"amount": "0.02"}, "mode": "auto"}}
    own = rendered(FARMER, envelope("FarmerPolicySet", policy), masks())
    assert own is not None
    assert own["payload"]["policy"]["floor_cu_hour"] == {"amount": "0.02"}
    theirs = rendered(FARMER, envelope("FarmerPolicySet", {**policy, "farm_id": "farm-z"}), masks())
    assert theirs is not None
    assert theirs["payload"]["policy"] == {"mode": "auto"}
    offtaker = rendered(OFFTAKER, envelope("FarmerPolicySet", policy), masks())
    assert offtaker is not None
    assert offtaker["payload"]["policy"] == {"mode": "auto"}


def _llm_decision() -> StrategyDecision:
    return StrategyDecision(
        strategy=Negotiator.LLM,
        rationale="my floor is 0.09, budget left 310 USD",
        model="test:model",
        proposed="offer 0.07",
        guardrails=[GuardrailHit(rule="floor", outcome="clamped", detail="0.07 -> floor 0.09")],
        fallback="refused: below floor 0.09",
        tokens_in=10,
        tokens_out=5,
        latency_ms=30,
    )


def test_a_strategy_decision_reaches_its_owner_and_admin_only() -> None:
    event = _offer_made(_llm_decision())  # the farmer's move (farm-a's)
    assert "OfferMade" in FARMER_MOVES
    full = event["payload"]["decision"]
    owner = rendered(FARMER, event, masks())
    assert owner is not None
    assert owner["payload"]["decision"] == full
    assert rendered(ADMIN, event, masks()) == event
    other_farmer = Principal("g", Role.FARMER, frozenset({"farm-z"}))
    for principal in (DEV, OFFTAKER, other_farmer):
        frame = rendered(principal, event, masks())
        assert frame is not None
        decision = frame["payload"]["decision"]
        assert set(decision) <= PUBLIC_DECISION_FIELDS, principal
        assert decision["strategy"] == "llm"
        assert "0.09" not in json.dumps(frame)
        assert "310" not in json.dumps(frame)


def test_an_offtakers_decision_is_its_own() -> None:
    accepted = OfferAccepted(
        negotiation_id=f"{OFF}.web.1",
        offer_id=f"{OFF}.web.1.farm-a.0",
        farm_id="farm-a",
        contract_id=f"ctr.{OFF}.web.1.farm-a.0",
        price_hour=Money.of("0.1", "USD"),
        decision=_llm_decision(),
    )
    event = envelope("OfferAccepted", {**accepted.model_dump(mode="json")})
    farmer = rendered(FARMER, event, masks())
    assert farmer is not None
    assert set(farmer["payload"]["decision"]) <= PUBLIC_DECISION_FIELDS
    awarded = catalogue_event("NegotiationAwarded")
    awarded["payload"]["decisions"] = [_llm_decision().model_dump(mode="json")]
    own = rendered(OFFTAKER, awarded, masks())
    assert own is not None
    assert own["payload"]["decisions"][0]["rationale"].startswith("my floor")
    other = Principal("p", Role.OFFTAKER, frozenset({OTHER}))
    theirs = rendered(other, awarded, masks())
    assert theirs is not None
    assert "rationale" not in theirs["payload"]["decisions"][0]


def test_developers_get_no_offtaker_money() -> None:
    for type_name in ("FiatPaymentReceived", "QuoteIssued", "FiatConverted", "BalanceLow"):
        assert rendered(DEV, catalogue_event(type_name), masks()) is None
    top_up = envelope(
        "TransferPosted",
        {"debit_account": "treasury.x.TFT", "credit_account": f"offtaker.{OFF}.TFT", "amount": {}},
    )
    assert rendered(DEV, top_up, masks()) is None
    payout = envelope(
        "TransferPosted",
        {"debit_account": "pool.x.TFT", "credit_account": "farmer.farm-a.TFT", "amount": {}},
    )
    assert rendered(DEV, payout, masks()) is not None
    low = catalogue_event("BalanceLow")
    assert rendered(OFFTAKER, low, masks()) == low


# -- read-model documents ------------------------------------------------------------------------

CONTRACT = {
    "id": "acme.web.1.farm-7.0",
    "contract_id": "acme.web.1.farm-7.0",
    "negotiation_id": "acme.web.1",
    "offtaker_id": "acme",
    "farm_id": "farm-7",
    "node_id": "n-3",
    "price_hour": {"amount": "0.25", "currency": "USD"},
    "placement": {"scores": {"price": "0.5"}},
}
NEGOTIATION = {
    "id": "acme.web.1",
    "offtaker_id": "acme",
    "farm_ids": ["farm-7"],
    "max_price_cu_hour": {"amount": "0.05", "currency": "USD"},
    "offers": [{"offer_id": "acme.web.1.farm-7.0", "farm_id": "farm-7"}],
    "contract_ids": ["acme.web.1.farm-7.0"],
}
FARM = {
    "id": "farm-7",
    "farm_id": "farm-7",
    "policy": {
        "allow_offtakers": ["acme"],
        "deny_offtakers": ["bad"],
        "markup": "1.2",
        "floor_cu_hour": {"amount": "0.02", "currency": "USD"},
        "reserve_share": "0.2",
        "min_standing": "0.5",
    },
    "node_policies": {"n-3": {"source_text": "cheap at night", "markup": "1.1"}},
}
NODE = {  # no offtaker_id anywhere: only the log says whose holds and contracts these are
    "id": "n-3",
    "farm_id": "farm-7",
    "holds": {"acme.web.2.farm-7.0": {"cru": 1}},
    "contracts": {"ctr.acme.web.1.acme.web.1.farm-7.0": {"cru": 2}},
    "contract_ids": ["ctr.acme.web.1.acme.web.1.farm-7.0"],
}


def test_contracts_lose_the_offtaker_and_every_id_made_from_it() -> None:
    pseudonyms = masks("acme")
    view = redact_for_developer(CONTRACT, pseudonyms)
    assert view["offtaker_id"] == pseudonyms.of("acme")
    assert _leaks(view, "acme") == []
    alias = pseudonyms.of("acme")
    assert view["id"] == f"{alias}.web.1.farm-7.0"
    assert view["negotiation_id"] == f"{alias}.web.1"
    assert (view["farm_id"], view["node_id"]) == ("farm-7", "n-3")
    assert view["price_hour"] == {"amount": "0.25", "currency": "USD"}


def test_a_node_document_is_masked_from_the_log_not_from_itself() -> None:
    """Regression: the old redaction masked only the offtakers a document named in an id
    field; a node's holds and contracts (keys and ids) named theirs to developers."""
    view = shown(DEV, "nodes", NODE, masks("acme"))
    assert _leaks(view, "acme") == []
    alias = masks("acme").of("acme")
    assert view["contract_ids"] == [f"ctr.{alias}.web.1.{alias}.web.1.farm-7.0"]


def test_negotiations_keep_their_offers_without_the_offtaker_or_its_ceiling() -> None:
    view = shown(DEV, "negotiations", NEGOTIATION, masks("acme"))
    assert _leaks(view, "acme") == []
    assert "max_price_cu_hour" not in view
    assert view["offers"][0]["farm_id"] == "farm-7"
    farmer = Principal("f", Role.FARMER, frozenset({"farm-7"}))
    theirs = shown(farmer, "negotiations", NEGOTIATION, masks("acme"))
    assert "max_price_cu_hour" not in theirs
    assert theirs["offtaker_id"] == "acme"  # a party to the negotiation knows its counterparty
    assert shown(ADMIN, "negotiations", NEGOTIATION, masks())["max_price_cu_hour"]


def test_farm_policies_lose_limits_offtaker_lists_and_source_text() -> None:
    view = redact_for_developer(FARM, masks())
    assert view["policy"] == {"markup": "1.2"}
    assert view["node_policies"] == {"n-3": {"markup": "1.1"}}
    assert offtaker_ids_in(FARM) == {"acme", "bad"}


def test_balances_and_accounts_are_removed() -> None:
    account = {"id": "x", "balance": "12", "owner": "acme", "counterparty": "y", "kind": "pool"}
    assert redact_for_developer(account, masks()) == {"id": "x", "kind": "pool"}


def test_the_input_is_not_changed() -> None:
    before = copy.deepcopy(CONTRACT)
    redact_for_developer(CONTRACT, masks())
    event, event_before = _offer_made(_llm_decision()), _offer_made(_llm_decision())
    for principal in (DEV, FARMER, OFFTAKER):
        rendered(principal, event, masks())
    assert before == CONTRACT
    assert event == event_before
