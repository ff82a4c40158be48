"""The pure rules of the event streams: who may see what, which filters match, where a
subscription starts, and how an event is framed on the wire. No I/O; tested without a server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hero.access import Principal, Role
from hero.gateway.redaction import (
    FARMER_PRIVATE_FIELDS,
    OFFTAKER_PRIVATE_FIELDS,
    Pseudonyms,
    redact_for_developer,
    without_fields,
)
from hero.gateway.redaction import PRIVATE_FIELDS as READ_MODEL_PRIVATE_FIELDS
from schemas import Topic

__all__ = [
    "ADMIN_ONLY_TOPICS",
    "DEVELOPER_HIDDEN_TYPES",
    "DEVELOPER_TOPICS",
    "DEVELOPER_VIEW",
    "FARMER_MOVES",
    "FARMER_PRIVATE_FIELDS",
    "FULL_VIEW",
    "OFFTAKER_PRIVATE_FIELDS",
    "PRIVATE_FIELDS",
    "STREAM_PRIVATE_FIELDS",
    "Concerns",
    "StartSpec",
    "StreamFilter",
    "concerns",
    "hidden_from_developers",
    "in_scope",
    "parse_last_event_id",
    "parse_start",
    "parse_types",
    "redacted_for_developer",
    "rendered",
    "resume_after",
    "sse_comment",
    "sse_frame",
    "topic_refusal",
    "visibility_class",
    "visible",
]

#: Topics only an admin key may read: raw commands and dead letters carry anything.
ADMIN_ONLY_TOPICS = frozenset({Topic.COMMANDS.value, Topic.DLQ.value})
#: The public market streams a developer key reads (with :data:`PRIVATE_FIELDS` removed).
DEVELOPER_TOPICS = frozenset(
    {Topic.RESERVATIONS.value, Topic.UTILIZATION.value, Topic.PAYMENTS.value}
)
#: Event fields a developer key never sees, besides the read models' private fields
#: (:data:`hero.gateway.redaction.PRIVATE_FIELDS`): the accounts of a transfer (they name their
#: owners), how long a balance lasts, and the payment provider's ids.
STREAM_PRIVATE_FIELDS = frozenset(
    {
        "credit_account",
        "debit_account",
        "hourly_cost",
        "hours_left",
        "payment_id",
        "provider_event_id",
    }
)
PRIVATE_FIELDS = READ_MODEL_PRIVATE_FIELDS | STREAM_PRIVATE_FIELDS
#: Payment events a developer key is not sent at all: an offtaker's money is its own. Its
#: top-ups (fiat in, the quote, the conversion), how low its balance runs, and every transfer
#: in or out of an offtaker's account (top-ups, bills, refunds). What billing charged each
#: contract stays public (``UsageBilled``, at the price the contract made public), as do the
#: transfers between farmer, pool and ThreeFold accounts. Nor the command processor's
#: ``CommandRejected``: its detail is free text naming what the command named, which no
#: pseudonym reaches (farmer and offtaker keys do not see it either: it names no tenant).
DEVELOPER_HIDDEN_TYPES = frozenset(
    {
        "FiatPaymentReceived",
        "QuoteIssued",
        "QuoteRefused",
        "FiatConverted",
        "BalanceLow",
        "CommandRejected",
    }
)
#: The negotiation moves a farmer makes; every other move with a decision is an offtaker's.
FARMER_MOVES = frozenset({"OfferMade", "OfferDeclined", "CounterAccepted", "CounterRejected"})

_FARM_FIELDS = ("farm_id",)
_NODE_FIELDS = ("node_id", "from_node_id", "to_node_id", "replaces_node_id")
_ACCOUNT_FIELDS = ("account_id", "debit_account", "credit_account")


@dataclass(frozen=True, slots=True)
class Concerns:
    """Whom an event is about, read from its payload's id fields."""

    farms: frozenset[str]
    nodes: frozenset[str]
    offtakers: frozenset[str]
    grids: frozenset[str]


def _strings(values: Iterable[Any]) -> frozenset[str]:
    return frozenset(value for value in values if isinstance(value, str) and value)


def concerns(payload: Mapping[str, Any]) -> Concerns:
    """Farms, nodes, offtakers and grids an event names: ``farm_id``, ``invited_farms``,
    ``node_id`` (and ``from_``/``to_``/``replaces_node_id``), ``offtaker_id``, ``grid`` and
    ``grids``, and the owners of ``farmer.*``/``offtaker.*`` accounts (``KIND.OWNER.CUR``)."""
    farms = [payload.get(name) for name in _FARM_FIELDS]
    invited = payload.get("invited_farms")
    if isinstance(invited, list):
        farms.extend(invited)
    offtakers = [payload.get("offtaker_id")]
    for name in _ACCOUNT_FIELDS:
        account = payload.get(name)
        if isinstance(account, str):
            parts = account.split(".")
            if len(parts) >= 3 and parts[0] == "farmer":
                farms.append(".".join(parts[1:-1]))
            elif len(parts) >= 3 and parts[0] == "offtaker":
                offtakers.append(".".join(parts[1:-1]))
    grids = [payload.get("grid")]
    listed = payload.get("grids")
    if isinstance(listed, list):
        grids.extend(listed)
    return Concerns(
        farms=_strings(farms),
        nodes=_strings(payload.get(name) for name in _NODE_FIELDS),
        offtakers=_strings(offtakers),
        grids=_strings(grids),
    )


def topic_refusal(principal: Principal, topic: str) -> str | None:
    """Why ``principal`` may not subscribe to ``topic`` at all, or None when it may."""
    if principal.role == Role.ADMIN:
        return None
    if topic in ADMIN_ONLY_TOPICS:
        return f"topic {topic} is readable by admin keys only"
    if principal.role == Role.DEVELOPER and topic not in DEVELOPER_TOPICS:
        return (
            f"a developer key reads the public market topics only "
            f"({', '.join(sorted(DEVELOPER_TOPICS))}), not {topic}"
        )
    return None


def in_scope(principal: Principal, envelope: Mapping[str, Any]) -> bool:
    """Whether the event concerns the key: everything for admin and developer keys (the topic
    check and redaction do the rest), a farmer key's farms, an offtaker key's offtaker."""
    if principal.role in (Role.ADMIN, Role.DEVELOPER):
        return True
    payload = envelope.get("payload")
    if not isinstance(payload, Mapping):
        return False
    about = concerns(payload)
    if principal.role == Role.FARMER:
        return not about.farms.isdisjoint(principal.tenants)
    return not about.offtakers.isdisjoint(principal.tenants)


#: The visibility class of admin keys: the envelope unchanged.
FULL_VIEW = "full"
#: The visibility class of every developer key (:func:`redacted_for_developer`).
DEVELOPER_VIEW = Role.DEVELOPER.value


def visibility_class(principal: Principal) -> str:
    """Which form of an in-scope event ``principal`` is shown: :data:`FULL_VIEW` (admin),
    :data:`DEVELOPER_VIEW`, or, for a farmer or offtaker key, its role and tenants (what it
    may see of a move depends on whose move it is). Every key of one class sees the same bytes
    of an event, so they are rendered once per class, not per subscriber."""
    if principal.role == Role.ADMIN:
        return FULL_VIEW
    if principal.role == Role.DEVELOPER:
        return DEVELOPER_VIEW
    return f"{principal.role.value}:{','.join(sorted(principal.tenants))}"


def visible(
    principal: Principal, envelope: Mapping[str, Any], pseudonyms: Pseudonyms
) -> dict[str, Any] | None:
    """What ``principal`` sees of an event: None when out of scope or hidden from its class,
    else :func:`rendered`."""
    if not in_scope(principal, envelope):
        return None
    return rendered(principal, envelope, pseudonyms)


def rendered(
    principal: Principal, envelope: Mapping[str, Any], pseudonyms: Pseudonyms
) -> dict[str, Any] | None:
    """The form of an in-scope event shown to ``principal``'s visibility class (a new dict;
    ``envelope`` is left as it is), or None when that class is not sent it at all.

    - admin: the envelope unchanged;
    - developer: :func:`redacted_for_developer`, nothing of :func:`hidden_from_developers`;
    - farmer: without the offtaker's limits (:data:`OFFTAKER_PRIVATE_FIELDS`), without another
      farm's limits (:data:`FARMER_PRIVATE_FIELDS`), and with the decisions of moves not its
      own reduced to their public part;
    - offtaker: without the farms' limits, and with the decisions of moves not its own
      reduced to their public part.
    """
    if principal.role == Role.ADMIN:
        return dict(envelope)
    if principal.role == Role.DEVELOPER:
        if hidden_from_developers(envelope):
            return None
        return redacted_for_developer(envelope, pseudonyms)
    return _for_party(principal, envelope)


def hidden_from_developers(envelope: Mapping[str, Any]) -> bool:
    """Whether developer keys are not sent this event at all (:data:`DEVELOPER_HIDDEN_TYPES`,
    and transfers in or out of an offtaker's account)."""
    kind = envelope.get("type")
    if kind in DEVELOPER_HIDDEN_TYPES:
        return True
    if kind == "TransferPosted":
        payload = envelope.get("payload")
        if not isinstance(payload, Mapping):
            return True
        accounts = (payload.get("debit_account"), payload.get("credit_account"))
        return any(not isinstance(a, str) or a.startswith("offtaker.") for a in accounts)
    return False


def _own_move(principal: Principal, kind: Any, payload: Mapping[str, Any]) -> bool:
    if principal.role == Role.FARMER:
        return kind in FARMER_MOVES and payload.get("farm_id") in principal.tenants
    return kind not in FARMER_MOVES and payload.get("offtaker_id") in principal.tenants


def _for_party(principal: Principal, envelope: Mapping[str, Any]) -> dict[str, Any]:
    shown = dict(envelope)
    payload = envelope.get("payload")
    if not isinstance(payload, Mapping):
        return shown
    hidden: frozenset[str] = frozenset()
    if principal.role == Role.FARMER:
        hidden = OFFTAKER_PRIVATE_FIELDS
        if payload.get("farm_id") not in principal.tenants:
            hidden |= FARMER_PRIVATE_FIELDS
    else:
        hidden = FARMER_PRIVATE_FIELDS
        if payload.get("offtaker_id") not in principal.tenants:
            hidden |= OFFTAKER_PRIVATE_FIELDS
    own = _own_move(principal, envelope.get("type"), payload)
    shown["payload"] = without_fields(payload, hidden, decisions=not own)
    return shown


def redacted_for_developer(envelope: Mapping[str, Any], pseudonyms: Pseudonyms) -> dict[str, Any]:
    """The envelope as a developer key sees it (a new dict; ``envelope`` is left as it is):
    the payload without :data:`PRIVATE_FIELDS` at any depth, its decisions public, the actor
    cut to its kind (``gateway:KEY``, ``offtaker:ID``: only the kind), and every offtaker id in
    any string of the whole envelope (``stream``, ``id``, ``causation_id``, ``correlation_id``,
    payload ids) replaced by its pseudonym (:mod:`hero.gateway.redaction`)."""
    redacted = dict(envelope)
    actor = envelope.get("actor")
    if isinstance(actor, str):
        redacted["actor"] = actor.split(":", 1)[0]
    shown: dict[str, Any] = redact_for_developer(redacted, pseudonyms, STREAM_PRIVATE_FIELDS)
    return shown


@dataclass(frozen=True, slots=True)
class StreamFilter:
    """A subscription's filters; an empty one matches everything. Each given filter must match
    (AND); ``types`` matches any of its types (OR)."""

    types: frozenset[str] = frozenset()
    farm: str | None = None
    node: str | None = None
    offtaker: str | None = None
    grid: str | None = None

    def matches(self, envelope: Mapping[str, Any]) -> bool:
        if self.types and envelope.get("type") not in self.types:
            return False
        if self.farm is None and self.node is None and self.offtaker is None and self.grid is None:
            return True
        payload = envelope.get("payload")
        about = concerns(payload if isinstance(payload, Mapping) else {})
        return (
            (self.farm is None or self.farm in about.farms)
            and (self.node is None or self.node in about.nodes)
            and (self.offtaker is None or self.offtaker in about.offtakers)
            and (self.grid is None or self.grid in about.grids)
        )


def parse_types(raw: str | None, known: Iterable[str]) -> frozenset[str]:
    """``"OfferMade,ContractCreated"`` as a set; raises ValueError naming unknown types."""
    if raw is None or not raw.strip():
        return frozenset()
    types = frozenset(part.strip() for part in raw.split(",") if part.strip())
    unknown = sorted(types - set(known))
    if unknown:
        raise ValueError(f"unknown event types: {', '.join(unknown)}")
    return types


@dataclass(frozen=True, slots=True)
class StartSpec:
    """Where a subscription starts: after ``position``, or at the log's head (``latest``)."""

    latest: bool = False
    position: int = 0


def parse_start(raw: str | None) -> StartSpec:
    """``earliest`` (the default), ``latest``, or a position N: the first event sent is the
    one at N (resume after N-1). Raises ValueError otherwise."""
    if raw is None or raw == "earliest":
        return StartSpec()
    if raw == "latest":
        return StartSpec(latest=True)
    if raw.isdigit():
        position = int(raw)
        if position >= 1:
            return StartSpec(position=position - 1)
    raise ValueError(f"start must be earliest, latest or a position >= 1, got {raw!r}")


def parse_last_event_id(raw: str | None) -> int | None:
    """The ``Last-Event-ID`` header as a position; None when absent or empty."""
    if raw is None or not raw.strip():
        return None
    value = raw.strip()
    if not value.isdigit():
        raise ValueError(f"Last-Event-ID must be a store position, got {raw!r}")
    return int(value)


def resume_after(start: StartSpec, last_event_id: int | None, head: int) -> int:
    """The position a subscription reads after: ``Last-Event-ID`` wins over ``start`` (resume
    strictly after the last event the client saw), ``latest`` is the log's current head."""
    if last_event_id is not None:
        return last_event_id
    if start.latest:
        return head
    return start.position


def sse_frame(position: int, event_type: str, data: Mapping[str, Any]) -> bytes:
    """One SSE message: ``id`` the store position, ``event`` the type, ``data`` the JSON on one
    line (JSON text never holds a raw newline, so one ``data:`` line is enough)."""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"id: {position}\nevent: {event_type}\ndata: {body}\n\n".encode()


def sse_comment(text: str) -> bytes:
    """A comment line (heartbeats); clients ignore it."""
    return "".join(f": {line}\n" for line in text.splitlines() or [""]).encode() + b"\n"
