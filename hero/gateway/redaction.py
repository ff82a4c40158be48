"""What a key sees of another party's data: offtakers masked for developers, private limits
removed for everyone but their owner. Pure: a document in, a new document out (the input is
not changed).

**Offtakers are pseudonymous to developer keys.** Every offtaker id, wherever it appears in
any string of a document or an event envelope (a field, a key, part of a derived id such as
the negotiation ``OFFTAKER.W.1``, its offers, holds, contracts, bills, the stream
``nego-OFFTAKER.W.1``, the ``causation_id`` and ``correlation_id``, the event ``id``), is
replaced by the offtaker's pseudonym ``offtaker-<12 hex>``: the first 12 hex digits of
HMAC-SHA256(gateway secret, offtaker id). The same offtaker gets the same pseudonym in every
frame and answer, so a developer can follow one negotiation, its offers and its contract, but
cannot recover or guess the name without the secret (the secret is the gateway's own,
:func:`hero.gateway.offtakers.gateway_secret`). Matching is case-insensitive and on any
substring, longest id first: the offtaker ids to mask come from the whole log
(:class:`hero.gateway.offtakers.OfftakerDirectory`), not from the document at hand, so an id
derived from an offtaker is masked even where the document names no ``offtaker_id``. A
pseudonym matches the id pattern of ``schemas.ids``, so a masked id still validates.

An ``offtaker_id`` field is kept, masked like any other string: it holds the pseudonym, so
an event still validates as its ``schemas`` model in the SDK.

**Private fields are removed** wherever they appear, at any depth (:data:`PRIVATE_FIELDS`):
balances, accounts and transfer counterparties, budgets and RFQ ceilings
(``max_price_cu_hour``), a farm's floor, reserve and minimum standing, the offtaker allow/deny
lists of farm policies, and the natural-language text a policy or mandate came from.

**A negotiation move's reasoning is its owner's** (:func:`public_decision`): of a
``StrategyDecision`` only who decided (``strategy``, ``model``), the ``offer_id`` and the
call's cost (tokens, latency) are shown to anyone but the party that made the move and admin;
the model's unclamped ``proposed`` move, its ``rationale``, the guardrail hits (a clamp to the
floor tells the floor) and the ``fallback`` text are removed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DECISION_FIELDS",
    "FARMER_PRIVATE_FIELDS",
    "OFFTAKER_PRIVATE_FIELDS",
    "PRIVATE_FIELDS",
    "PSEUDONYM_PATTERN",
    "PUBLIC_DECISION_FIELDS",
    "Pseudonyms",
    "offtaker_ids_in",
    "public_decision",
    "redact_for_developer",
    "without_fields",
]

PRIVATE_FIELDS: frozenset[str] = frozenset(
    {
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
        "max_price_cu_hour",
        "mandate",
        "floor_cu_hour",
        "reserve_share",
        "min_standing",
        "allow_offtakers",
        "deny_offtakers",
        "source_text",
    }
)
#: An offtaker's limits: what a farmer key is never shown (the RFQ's ceiling, the mandate's
#: budget, the balance and how long it lasts).
OFFTAKER_PRIVATE_FIELDS = frozenset(
    {"max_price_cu_hour", "budget_month", "budget", "mandate", "balance", "hourly_cost"}
    | {"hours_left"}
)
#: A farm's limits: what only that farm's farmer (and admin) is shown.
FARMER_PRIVATE_FIELDS = frozenset(
    {"floor_cu_hour", "reserve_share", "min_standing", "allow_offtakers", "deny_offtakers"}
    | {"source_text"}
)
#: Fields holding a ``StrategyDecision`` (one, or a list).
DECISION_FIELDS = ("decision", "decisions")
#: What anyone who sees a move may see of its decision.
PUBLIC_DECISION_FIELDS = frozenset(
    {"strategy", "model", "offer_id", "tokens_in", "tokens_out", "latency_ms"}
)
#: A pseudonym: ``offtaker-`` and 12 lower-case hex digits.
PSEUDONYM_PATTERN = r"offtaker-[0-9a-f]{12}"
_PSEUDONYM = re.compile(PSEUDONYM_PATTERN)
_ID_FIELDS = ("offtaker_id", "offtaker_ids", "allow_offtakers", "deny_offtakers")


@dataclass(frozen=True)
class _Known:
    """One immutable state of :class:`Pseudonyms` (swapped whole: readers never see half)."""

    ids: frozenset[str] = frozenset()
    pattern: re.Pattern[str] | None = None
    by_folded: Mapping[str, str] = field(default_factory=dict)


class Pseudonyms:
    """The offtakers' pseudonyms under one secret, and the masking of the offtakers known.

    :meth:`learn` adds offtaker ids (from any thread); :attr:`generation` counts the changes,
    so a rendering made before a change can be told from one made after."""

    def __init__(self, secret: bytes, offtakers: Iterable[str] = ()):
        if not secret:
            raise ValueError("the pseudonym secret must not be empty")
        self._secret = secret
        self._known = _Known()
        self._lock = threading.Lock()
        self.generation = 0
        self.learn(offtakers)

    def of(self, offtaker_id: str) -> str:
        """``offtaker-`` + the first 12 hex digits of HMAC-SHA256(secret, id)."""
        digest = hmac.new(self._secret, offtaker_id.encode(), hashlib.sha256).hexdigest()
        return f"offtaker-{digest[:12]}"

    @property
    def known(self) -> frozenset[str]:
        return self._known.ids

    def learn(self, offtakers: Iterable[str]) -> bool:
        """Add these offtaker ids; True when one was new."""
        new = {o for o in offtakers if isinstance(o, str) and o and o not in self._known.ids}
        if not new:
            return False
        with self._lock:
            return self._add(new)

    def _add(self, new: set[str]) -> bool:
        known = self._known
        new -= known.ids
        if not new:
            return False
        ids = known.ids | new
        # Longest first: an id that contains another is masked whole.
        ordered = sorted(ids, key=lambda o: (-len(o), o))
        pattern = re.compile("|".join(re.escape(o) for o in ordered), re.IGNORECASE)
        by_folded: dict[str, str] = {}
        for offtaker in ordered:
            by_folded.setdefault(offtaker.casefold(), self.of(offtaker))
        self._known = _Known(frozenset(ids), pattern, by_folded)
        self.generation += 1
        return True

    def mask(self, text: str) -> str:
        """``text`` with every known offtaker id (any case) replaced by its pseudonym."""
        known = self._known
        if known.pattern is None:
            return text
        by_folded = known.by_folded
        return known.pattern.sub(lambda m: by_folded[m.group(0).casefold()], text)

    def unmask(self, text: str) -> str:
        """``text`` with the pseudonyms of known offtakers replaced by their ids (what a
        developer asks for by a masked id); unknown pseudonyms stay as they are."""
        known = self._known
        if not _PSEUDONYM.search(text):
            return text
        reverse = {self.of(o): o for o in known.ids}
        return _PSEUDONYM.sub(lambda m: reverse.get(m.group(0), m.group(0)), text)

    def names_an_offtaker(self, text: str) -> bool:
        pattern = self._known.pattern
        return pattern is not None and pattern.search(text) is not None


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


def public_decision(decision: Any) -> Any:
    """What anyone but the move's owner sees of a ``StrategyDecision``."""
    if not isinstance(decision, Mapping):
        return decision
    return {k: v for k, v in decision.items() if k in PUBLIC_DECISION_FIELDS}


def without_fields(document: Any, names: frozenset[str], *, decisions: bool = False) -> Any:
    """``document`` without the fields ``names`` at any depth; with ``decisions`` every
    decision reduced to its :func:`public_decision` part."""
    if isinstance(document, Mapping):
        shown: dict[Any, Any] = {}
        for key, value in document.items():
            if key in names:
                continue
            if decisions and key == "decision":
                shown[key] = public_decision(value)
            elif decisions and key == "decisions" and isinstance(value, list):
                shown[key] = [public_decision(item) for item in value]
            else:
                shown[key] = without_fields(value, names, decisions=decisions)
        return shown
    if isinstance(document, list):
        return [without_fields(item, names, decisions=decisions) for item in document]
    return document


def redact_for_developer(
    document: Any, pseudonyms: Pseudonyms, extra: frozenset[str] = frozenset()
) -> Any:
    """``document`` without :data:`PRIVATE_FIELDS` (and ``extra``), its decisions public, and
    every offtaker id in it masked (:meth:`Pseudonyms.mask`), in keys and values alike."""
    # The document's own offtakers are learned first: none of them is ever shown.
    pseudonyms.learn(offtaker_ids_in(document))
    return _masked(without_fields(document, PRIVATE_FIELDS | extra, decisions=True), pseudonyms)


def _masked(value: Any, pseudonyms: Pseudonyms) -> Any:
    if isinstance(value, dict):
        return {
            (pseudonyms.mask(key) if isinstance(key, str) else key): _masked(item, pseudonyms)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_masked(item, pseudonyms) for item in value]
    if isinstance(value, str):
        return pseudonyms.mask(value)
    return value
