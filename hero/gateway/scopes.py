"""Who may read which read-model documents: the scope rules per role. Pure.

- admin: every projection, every document, unredacted.
- farmer: farms, nodes, contracts and accounts whose ``farm_id`` is one of its farms;
  negotiations in which one of its farms is a party (an offer, a decline, an invitation), with
  other farms' offers and declines left out, and without the offtaker's ceiling
  (``max_price_cu_hour``). No workloads.
- offtaker: contracts, negotiations, workloads and accounts whose ``offtaker_id`` is its own.
  No farms or nodes (the public market is what developer keys read).
- developer: farms, nodes, contracts and negotiations, redacted
  (:mod:`hero.gateway.redaction`: private fields and limits removed, every offtaker id
  replaced by its pseudonym); no accounts and no workloads (an offtaker's own plans).
"""

from __future__ import annotations

from typing import Any

from hero.access import Principal, Role
from hero.gateway.redaction import (
    OFFTAKER_PRIVATE_FIELDS,
    Pseudonyms,
    redact_for_developer,
    without_fields,
)

__all__ = ["PROJECTIONS", "readable", "refusal", "shown", "visible"]

PROJECTIONS: tuple[str, ...] = (
    "farms", "nodes", "contracts", "negotiations", "workloads", "accounts",
)  # fmt: skip

_READABLE: dict[Role, frozenset[str]] = {
    Role.ADMIN: frozenset(PROJECTIONS),
    Role.FARMER: frozenset({"farms", "nodes", "contracts", "negotiations", "accounts"}),
    Role.OFFTAKER: frozenset({"contracts", "negotiations", "workloads", "accounts"}),
    Role.DEVELOPER: frozenset({"farms", "nodes", "contracts", "negotiations"}),
}
# Lists inside a negotiation whose items belong to one farm each (``farm_id``).
_PER_FARM_LISTS = ("offers", "declines")


def readable(principal: Principal, projection: str) -> bool:
    return projection in _READABLE[principal.role]


def refusal(principal: Principal, projection: str) -> str:
    """Why ``principal`` may not read ``projection`` at all."""
    allowed = ", ".join(sorted(_READABLE[principal.role]))
    return f"a {principal.role.value} key cannot read {projection} (it reads: {allowed})"


def _farms_in(document: dict[str, Any]) -> set[str]:
    """Every farm a document names: its own ``farm_id``, ``farm_ids``, invited farms, and the
    ``farm_id`` of the items of its per-farm lists (offers, declines...)."""
    farms: set[str] = set()
    if isinstance(document.get("farm_id"), str):
        farms.add(document["farm_id"])
    for key in ("farm_ids", "invited_farms"):
        if isinstance(document.get(key), list):
            farms.update(str(farm) for farm in document[key])
    for key in _PER_FARM_LISTS:
        items = document.get(key)
        if isinstance(items, list):
            farms.update(
                str(item["farm_id"])
                for item in items
                if isinstance(item, dict) and "farm_id" in item
            )
        elif isinstance(items, dict):
            farms.update(
                str(item["farm_id"])
                for item in items.values()
                if isinstance(item, dict) and "farm_id" in item
            )
    return farms


def visible(principal: Principal, projection: str, document: dict[str, Any]) -> bool:
    """May ``principal`` see this document of ``projection``?"""
    if not readable(principal, projection):
        return False
    if principal.role in (Role.ADMIN, Role.DEVELOPER):
        return True
    if principal.role == Role.OFFTAKER:
        return document.get("offtaker_id") in principal.tenants
    if projection == "negotiations":
        return bool(_farms_in(document) & principal.tenants)
    return document.get("farm_id") in principal.tenants


def _only_own_farms(document: dict[str, Any], farms: frozenset[str]) -> dict[str, Any]:
    shown = dict(document)
    for key in _PER_FARM_LISTS:
        items = document.get(key)
        if isinstance(items, list):
            shown[key] = [
                item
                for item in items
                if not isinstance(item, dict) or item.get("farm_id", None) in farms | {None}
            ]
        elif isinstance(items, dict):
            shown[key] = {
                name: item
                for name, item in items.items()
                if not isinstance(item, dict) or item.get("farm_id", None) in farms | {None}
            }
    if isinstance(document.get("farm_ids"), list):
        shown["farm_ids"] = [farm for farm in document["farm_ids"] if farm in farms]
    if isinstance(document.get("contract_ids"), list) and isinstance(shown.get("offers"), list):
        own = {o.get("contract_id") for o in shown["offers"] if isinstance(o, dict)}
        shown["contract_ids"] = [c for c in document["contract_ids"] if c in own]
    return shown


def shown(
    principal: Principal, projection: str, document: dict[str, Any], pseudonyms: Pseudonyms
) -> dict[str, Any]:
    """The part of a visible document ``principal`` is shown."""
    if principal.role == Role.DEVELOPER:
        redacted: dict[str, Any] = redact_for_developer(document, pseudonyms)
        return redacted
    if principal.role == Role.FARMER and projection == "negotiations":
        own: dict[str, Any] = without_fields(
            _only_own_farms(document, principal.tenants), OFFTAKER_PRIVATE_FIELDS
        )
        return own
    return document
