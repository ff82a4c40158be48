"""Scope rules per role (hero.gateway.scopes, hero.gateway.auth helpers)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import HTTPException

from hero.gateway.auth import presented_key, require_farm, require_offtaker, require_role
from hero.gateway.commands import command_id_for, refusal_status
from hero.gateway.context import Principal, Role
from hero.gateway.redaction import Pseudonyms
from hero.gateway.scopes import readable, shown, visible

ADMIN = Principal("k0", Role.ADMIN)
FARMER = Principal("k1", Role.FARMER, frozenset({"f1", "f2"}))
OFFTAKER = Principal("k2", Role.OFFTAKER, frozenset({"o1"}))
DEVELOPER = Principal("k3", Role.DEVELOPER)
MASKS = Pseudonyms(b"test-secret", {"o1"})

NEGOTIATION = {
    "id": "o1.w.1",
    "offtaker_id": "o1",
    "farm_ids": ["f1", "f9"],
    "offers": [
        {"offer_id": "o1.w.1.f1.0", "farm_id": "f1", "contract_id": "c1"},
        {"offer_id": "o1.w.1.f9.0", "farm_id": "f9", "contract_id": "c9"},
    ],
    "declines": [{"farm_id": "f9", "reasons": ["price"]}],
    "contract_ids": ["c1", "c9"],
}


def _refused(call: object, *args: object) -> Any:
    with pytest.raises(HTTPException) as raised:
        call(*args)  # type: ignore[operator]
    detail: Any = raised.value.detail
    return {**detail, "status": raised.value.status_code}


def test_what_each_role_may_read() -> None:
    assert all(readable(ADMIN, name) for name in ("farms", "accounts", "workloads"))
    assert readable(FARMER, "accounts")
    assert not readable(FARMER, "workloads")
    assert readable(OFFTAKER, "workloads")
    assert not readable(OFFTAKER, "farms")
    assert readable(DEVELOPER, "contracts")
    assert not readable(DEVELOPER, "accounts")
    assert not readable(DEVELOPER, "workloads")


def test_documents_by_owner() -> None:
    mine, theirs = {"farm_id": "f1", "offtaker_id": "o1"}, {"farm_id": "f9", "offtaker_id": "o2"}
    assert visible(FARMER, "contracts", mine)
    assert not visible(FARMER, "contracts", theirs)
    assert visible(OFFTAKER, "contracts", mine)
    assert not visible(OFFTAKER, "contracts", theirs)
    assert visible(FARMER, "accounts", {"farm_id": "f2", "offtaker_id": None})
    assert not visible(FARMER, "accounts", {"farm_id": None, "offtaker_id": "o1"})
    assert visible(ADMIN, "accounts", theirs)
    assert visible(DEVELOPER, "contracts", theirs)
    assert not visible(DEVELOPER, "accounts", theirs)


def test_a_farmer_sees_negotiations_it_is_party_to_and_only_its_own_offers() -> None:
    assert visible(FARMER, "negotiations", NEGOTIATION)
    assert not visible(FARMER, "negotiations", {**NEGOTIATION, "farm_ids": ["f9"], "offers": []})
    view = shown(FARMER, "negotiations", NEGOTIATION, MASKS)
    assert [o["farm_id"] for o in view["offers"]] == ["f1"]
    assert view["declines"] == []
    assert view["farm_ids"] == ["f1"]
    assert view["contract_ids"] == ["c1"]
    assert shown(ADMIN, "negotiations", NEGOTIATION, MASKS) == NEGOTIATION


def test_developers_get_the_redacted_view() -> None:
    view = shown(DEVELOPER, "negotiations", NEGOTIATION, MASKS)
    assert view["offtaker_id"] == MASKS.of("o1")
    assert "o1" not in view["id"]


def test_403_helpers_give_reasons() -> None:
    assert _refused(require_farm, FARMER, "f9")["error"] == "not_your_farm"
    assert _refused(require_farm, OFFTAKER, "f1")["error"] == "wrong_role"
    assert _refused(require_offtaker, OFFTAKER, "o2")["error"] == "not_your_offtaker"
    assert _refused(require_role, FARMER, Role.ADMIN)["status"] == 403
    require_farm(FARMER, "f2")
    require_farm(ADMIN, "f9")
    require_offtaker(OFFTAKER, "o1")
    require_role(ADMIN, Role.ADMIN)


def test_the_key_is_read_from_either_header() -> None:
    assert presented_key({"authorization": "Bearer hero_x_y"}) == "hero_x_y"
    assert presented_key({"x-api-key": " hero_x_y "}) == "hero_x_y"
    assert presented_key({"authorization": "Basic abc"}) is None
    assert presented_key({}) is None


def test_idempotency_keys_are_scoped_to_the_api_key() -> None:
    assert command_id_for(FARMER, "retry-1", "policy") == "gw.k1.retry-1"
    assert command_id_for(OFFTAKER, "retry-1", "policy") != command_id_for(FARMER, "retry-1", "x")
    assert command_id_for(FARMER, None, "policy").startswith("gw-policy_")
    assert refusal_status("insufficient_funds") == 409
    assert refusal_status("unknown_farm") == 404  # what the command names does not exist
