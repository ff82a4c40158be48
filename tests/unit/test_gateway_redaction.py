"""What a developer key sees of a document: hero.gateway.redaction."""

from __future__ import annotations

import copy

from hero.gateway.redaction import MASK, offtaker_ids_in, redact_for_developer

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
    "offers": [{"offer_id": "acme.web.1.farm-7.0", "farm_id": "farm-7"}],
    "contract_ids": ["acme.web.1.farm-7.0"],
}
FARM = {
    "id": "farm-7",
    "farm_id": "farm-7",
    "policy": {"allow_offtakers": ["acme"], "deny_offtakers": ["bad"], "markup": "1.2"},
    "node_policies": {"n-3": {"source_text": "cheap at night", "markup": "1.1"}},
}


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [*value.keys(), *(s for v in value.values() for s in _strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_contracts_lose_the_offtaker_and_every_id_made_from_it() -> None:
    shown = redact_for_developer(CONTRACT)
    assert "offtaker_id" not in shown
    assert not any("acme" in text for text in _strings(shown))
    assert shown["id"] == f"{MASK}.web.1.farm-7.0"
    assert shown["negotiation_id"] == f"{MASK}.web.1"
    # the public terms stay
    assert shown["farm_id"] == "farm-7"
    assert shown["node_id"] == "n-3"
    assert shown["price_hour"] == {"amount": "0.25", "currency": "USD"}


def test_negotiations_keep_their_offers_without_the_offtaker() -> None:
    shown = redact_for_developer(NEGOTIATION)
    assert not any("acme" in text for text in _strings(shown))
    assert shown["offers"][0]["farm_id"] == "farm-7"
    assert shown["contract_ids"] == [f"{MASK}.web.1.farm-7.0"]


def test_farm_policies_lose_offtaker_lists_and_source_text() -> None:
    shown = redact_for_developer(FARM)
    assert shown["policy"] == {"markup": "1.2"}
    assert shown["node_policies"] == {"n-3": {"markup": "1.1"}}
    assert offtaker_ids_in(FARM) == {"acme", "bad"}


def test_balances_and_accounts_are_removed() -> None:
    account = {"id": "x", "balance": "12", "owner": "acme", "counterparty": "y", "kind": "pool"}
    assert redact_for_developer(account) == {"id": "x", "kind": "pool"}


def test_the_input_is_not_changed() -> None:
    before = copy.deepcopy(CONTRACT)
    redact_for_developer(CONTRACT)
    assert before == CONTRACT
