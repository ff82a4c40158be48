"""What a developer key sees of a read-model document: public market data, private fields
removed. Pure: a document in, a new document out (the input is not changed).

Removed wherever they appear, at any depth: the offtakers' ids (the counterparties of every
contract and negotiation), balances, accounts and transfer counterparties, budgets, the
offtaker allow/deny lists of farm policies, and the natural-language text a policy or mandate
came from. Ids derived from an offtaker's id (a negotiation ``OFFTAKER.W.1``, its offers and
contracts) keep their shape with the offtaker's part replaced by :data:`MASK`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["MASK", "PRIVATE_FIELDS", "offtaker_ids_in", "redact_for_developer"]

MASK = "[offtaker]"
PRIVATE_FIELDS: frozenset[str] = frozenset(
    {
        "offtaker_id",
        "offtaker_ids",
        "offtaker",
        "offtakers",
        "owner",
        "account_id",
        "accounts",
        "balance",
        "balances",
        "counterparty",
        "last_transfers",
        "budget_month",
        "budget",
        "allow_offtakers",
        "deny_offtakers",
        "source_text",
    }
)
_ID_FIELDS = ("offtaker_id", "offtaker_ids", "allow_offtakers", "deny_offtakers")


def offtaker_ids_in(document: Any) -> set[str]:
    """Every offtaker id the document names in an id field, at any depth."""
    found: set[str] = set()
    if isinstance(document, dict):
        for key, value in document.items():
            if key in _ID_FIELDS:
                values: Iterable[Any] = value if isinstance(value, list) else [value]
                found.update(v for v in values if isinstance(v, str) and v)
            else:
                found |= offtaker_ids_in(value)
    elif isinstance(document, list):
        for item in document:
            found |= offtaker_ids_in(item)
    return found


def redact_for_developer(document: Any) -> Any:
    """``document`` without :data:`PRIVATE_FIELDS` and with its offtakers' ids masked."""
    # Longest first: an id that contains another is masked whole.
    ids = sorted(offtaker_ids_in(document), key=len, reverse=True)
    return _redact(document, ids)


def _mask(text: str, ids: list[str]) -> str:
    for offtaker_id in ids:
        text = text.replace(offtaker_id, MASK)
    return text


def _redact(value: Any, ids: list[str]) -> Any:
    if isinstance(value, dict):
        return {
            _mask(key, ids) if isinstance(key, str) else key: _redact(item, ids)
            for key, item in value.items()
            if key not in PRIVATE_FIELDS
        }
    if isinstance(value, list):
        return [_redact(item, ids) for item in value]
    if isinstance(value, str):
        return _mask(value, ids)
    return value
