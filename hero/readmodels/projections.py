"""The read models as pure projections of the log: farms, nodes, contracts, negotiations,
accounts and workloads, each a collection of JSON-ready documents keyed by entity id.

A :class:`Projection` names the event types it reads and the documents an event touches, and
renders a document from the market model (``render(state, key) -> document | None``, None
deletes): the state is folded once, by :func:`hero.model.apply`, and no projection reduces
events itself. Nothing here does I/O: :mod:`hero.readmodels.projector` keeps the documents in
Valkey, and :func:`fold` keeps them in a dict, which is what the tests compare it with.

Documents are what a REST client reads: Decimals and Money amounts as strings, times in ISO
8601, resources as the schemas dump them. Each names its owners for access control
(``farm_id`` and/or ``offtaker_id`` where one applies) and ``last_position``, the position of
the last event that changed it.

Events of different streams come in any order relative to each other (a ``ReplicaPlaced``
before its ``ContractCreated``, say): the model keeps such a fact, and the document shows it
partially rather than dropping it, when the fact matters.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter

from hero.domain.errors import Rejected
from hero.domain.ledger import Leg, LegProblem, account_kind
from hero.market.views import ContractRow, json_ready
from hero.model import (
    LAST_TRANSFERS,
    Contract,
    Decline,
    MarketState,
    Offer,
    Placement,
    SlaOutcome,
    TransferLine,
)
from hero.model import apply as model_apply
from schemas import (
    CapacityHeld,
    ContractCancelled,
    ContractCreated,
    ContractResumed,
    ContractSuspended,
    Envelope,
    Event,
    FarmerPolicySet,
    FarmRegistered,
    HoldExpired,
    HoldReleased,
    NegotiationAwarded,
    NegotiationExpired,
    NegotiationFailed,
    NodeRegistered,
    NodeStatusChanged,
    OfferAccepted,
    OfferApproved,
    OfferDeclined,
    OfferMade,
    OfferWithdrawn,
    OfftakerMandateSet,
    ReplicaPlaced,
    RfqIssued,
    ScaleDecided,
    SlaOutcomeRecorded,
    TransferPosted,
)

__all__ = [
    "ACCOUNTS",
    "CONTRACTS",
    "FARMS",
    "LAST_TRANSFERS",
    "NEGOTIATIONS",
    "NODES",
    "PROJECTIONS",
    "WORKLOADS",
    "Doc",
    "Folded",
    "Projection",
    "UnknownProjection",
    "decode_doc",
    "encode_doc",
    "fold",
    "projection",
    "selected",
    "workload_key",
]

Doc = dict[str, Any]
"""A JSON-ready document."""

Keys = Callable[[Envelope, Event], tuple[str, ...]]
Links = Callable[[Envelope, Event], dict[str, tuple[str, ...] | None]]
Render = Callable[[MarketState, str], Doc | None]


def _no_keys(envelope: Envelope, event: Event) -> tuple[str, ...]:
    return ()


def _no_links(envelope: Envelope, event: Event) -> dict[str, tuple[str, ...] | None]:
    return {}


@dataclass(frozen=True)
class Projection:
    """One collection of documents folded from the events of ``types``.

    ``keys`` names the documents an event touches; ``via`` names *links*, aliases recorded by
    earlier events (``links``: alias -> keys, None forgets it), for an event that does not
    carry its documents' keys (a ``ContractCancelled`` names no workload). A touched document
    is rendered from the market model once the event is applied to it (``render``).
    """

    name: str
    types: frozenset[str]
    keys: Keys
    render: Render
    via: Keys = field(default=_no_keys)
    links: Links = field(default=_no_links)

    def rendered(self, state: MarketState, key: str, position: int) -> Doc | None:
        """Document ``key`` as the model has it, stamped with the last event touching it."""
        doc = self.render(state, key)
        if doc is not None:
            doc["last_position"] = position
        return doc


class UnknownProjection(LookupError):
    def __init__(self, name: str, known: Iterable[str]):
        self.name, self.known = name, sorted(known)
        super().__init__(f"no projection {name!r}; known: {', '.join(self.known)}")


def encode_doc(doc: Doc) -> str:
    """Canonical JSON (sorted keys), so equal documents are equal bytes."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def decode_doc(raw: str | bytes) -> Doc:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"a read-model document is a JSON object, got {type(value).__name__}")
    return value


def _dump(value: Any) -> Any:
    return json_ready(value)


_TIME: TypeAdapter[datetime] = TypeAdapter(datetime)


def _time(value: datetime) -> str:
    """As the schemas dump their own times (``...Z``), so a document has one spelling."""
    return str(_TIME.dump_python(value, mode="json"))


_DECIMAL: TypeAdapter[Decimal] = TypeAdapter(Decimal)


def _decimal(value: Decimal) -> str:
    """As the schemas dump their own Decimals."""
    return str(_DECIMAL.dump_python(value, mode="json"))


# -- farms ----------------------------------------------------------------------------------------


def _farm_keys(envelope: Envelope, event: Event) -> tuple[str, ...]:
    return (event.farm_id,) if isinstance(event, FarmRegistered | FarmerPolicySet) else ()


def _render_farm(state: MarketState, farm_id: str) -> Doc | None:
    doc = _empty_farm(farm_id)
    farm = state.farms.get(farm_id)
    if farm is None:
        # A policy may be folded before the registration it follows on another consumer's
        # view; the registration's fields stay None until it comes.
        early = state.early_policies.get(farm_id)
        if not early:
            return None
        policies = list(early)
    else:
        doc.update(name=farm.name, grid=farm.grid.value, region=farm.region)
        doc.update(country=farm.country, certified=farm.certified)
        policies = [(None, farm.policy)] if farm.policy is not None else []
        policies += list(farm.node_policies.items())
    for node_id, policy in policies:
        dumped = policy.model_dump(mode="json")
        if node_id is None:
            doc["policy"], doc["mode"] = dumped, dumped["mode"]
        else:
            doc["node_policies"][node_id] = dumped
    return doc


def _empty_farm(farm_id: str) -> Doc:
    return {
        "id": farm_id,
        "farm_id": farm_id,
        "name": None,
        "grid": None,
        "region": None,
        "country": None,
        "certified": None,
        "mode": None,
        "policy": None,
        "node_policies": {},
    }


FARMS = Projection(
    name="farms",
    types=frozenset({"FarmRegistered", "FarmerPolicySet"}),
    keys=_farm_keys,
    render=_render_farm,
)


# -- nodes ----------------------------------------------------------------------------------------

_NODE_EVENTS = (
    NodeRegistered,
    NodeStatusChanged,
    CapacityHeld,
    HoldReleased,
    HoldExpired,
    ContractCreated,
    ContractCancelled,
)


def _node_keys(envelope: Envelope, event: Event) -> tuple[str, ...]:
    return (event.node_id,) if isinstance(event, _NODE_EVENTS) else ()


def _render_node(state: MarketState, node_id: str) -> Doc | None:
    node = state.nodes.get(node_id)
    if node is None:
        return None  # capacity of a node never registered: nothing to show (as MarketReport)
    held, committed = node.held, node.committed
    return {
        "id": node_id,
        "node_id": node_id,
        "farm_id": node.farm_id,
        "grid": node.grid.value,
        "region": node.region,
        "country": node.country,
        "certified": node.certified,
        "uptime_pct": _decimal(node.uptime_pct),
        "total": _dump(node.total),
        "status": node.status.value,
        "holds": {h: _dump(r) for h, (r, _) in node.holds.items()},
        "contracts": {c: _dump(r) for c, r in node.contracts.items()},
        "held": _dump(held),
        "committed": _dump(committed),
        "free": _dump(node.total.minus_floored(held + committed)),
        "contract_ids": sorted(node.contracts),
        "hold_count": len(node.holds),
    }


NODES = Projection(
    name="nodes",
    types=frozenset(t.__name__ for t in _NODE_EVENTS),
    keys=_node_keys,
    render=_render_node,
)


# -- contracts ------------------------------------------------------------------------------------

_CONTRACT_EVENTS = (
    ContractCreated,
    ContractCancelled,
    ContractSuspended,
    ContractResumed,
    SlaOutcomeRecorded,
    ReplicaPlaced,
)
#: A contract document's terms: the CLI's contract row's fields (one list for both).
_TERMS = tuple(f.name for f in fields(ContractRow) if f.name != "contract_id")


def _contract_keys(envelope: Envelope, event: Event) -> tuple[str, ...]:
    return (event.contract_id,) if isinstance(event, _CONTRACT_EVENTS) else ()


def _empty_contract(contract_id: str) -> Doc:
    doc: Doc = {"id": contract_id, "contract_id": contract_id}
    doc.update(dict.fromkeys(_TERMS))
    doc.update(
        status=None,  # None until ContractCreated: only facts that came first are known
        reason=None,
        cancelled_at=None,
        suspension=None,
        sla_outcome=None,
        placement=None,
    )
    return doc


_STATUS = {"active": "live", "suspended": "suspended", "cancelled": "cancelled"}


def _render_contract(state: MarketState, contract_id: str) -> Doc | None:
    contract = state.contracts.get(contract_id)
    early = state.early_cancellations.get(contract_id)
    suspension = state.suspensions.get(contract_id)
    outcome = state.sla_outcomes.get(contract_id)
    placement = state.placements.get(contract_id)
    if contract is None and early is None and not (suspension or outcome or placement):
        return None
    doc = _empty_contract(contract_id)
    if contract is not None:
        doc.update(_terms(contract))
        doc["status"] = _STATUS[contract.status]
        if contract.ended_at is not None:
            doc.update(reason=contract.reason, cancelled_at=_time(contract.ended_at))
    elif early is not None:  # cancelled before its creation was read: born cancelled
        doc.update(status="cancelled", reason=early[0], cancelled_at=_time(early[1]))
    elif suspension is not None:
        doc["status"] = "suspended"
    if suspension is not None:
        doc["suspension"] = {
            "unpaid_hour": _time(suspension.unpaid_hour),
            "grace_ends_at": _time(suspension.grace_ends_at),
        }
    if placement is not None:
        doc["placement"] = _placement(placement)
        # The owners it names, until the terms come (they win once they do).
        _fill(doc, _placement_owners(placement))
    if outcome is not None:
        doc["sla_outcome"] = _sla_outcome(outcome)
        owners = {"offtaker_id": outcome.offtaker_id, "farm_id": outcome.farm_id}
        _fill(doc, owners | {"node_id": outcome.node_id})
    return doc


def _terms(contract: Contract) -> Doc:
    doc = {name: _dump(getattr(contract, name)) for name in _TERMS}
    doc["starts_at"] = _time(contract.starts_at)  # as the schemas spell times
    return doc


def _placement(placement: Placement) -> Doc:
    return {
        "replica_id": placement.replica_id,
        "scores": {name: _decimal(score) for name, score in placement.scores.items()},
        "total": None if placement.total is None else _decimal(placement.total),
        "price_cu_hour": _dump(placement.price_cu_hour),
    }


def _placement_owners(placement: Placement) -> Doc:
    return {
        "offtaker_id": placement.offtaker_id,
        "workload_id": placement.workload_id,
        "farm_id": placement.farm_id,
        "node_id": placement.node_id,
        "grid": placement.grid.value,
    }


def _sla_outcome(outcome: SlaOutcome) -> Doc:
    return {
        "started_at": _time(outcome.started_at),
        "ended_at": _time(outcome.ended_at),
        "period_hours": _decimal(outcome.period_hours),
        "hours_down": _decimal(outcome.hours_down),
        "uptime_pct": _decimal(outcome.uptime_pct),
        "met": outcome.met,
        "penalty": _dump(outcome.penalty),
        "promised_pct": _dump(outcome.promised_pct),
    }


def _fill(doc: Doc, values: Mapping[str, Any]) -> None:
    """Fields not known yet, from a fact that carries them (the terms win once they come)."""
    for name, value in values.items():
        if doc.get(name) is None:
            doc[name] = value


CONTRACTS = Projection(
    name="contracts",
    types=frozenset(t.__name__ for t in _CONTRACT_EVENTS),
    keys=_contract_keys,
    render=_render_contract,
)


# -- negotiations ---------------------------------------------------------------------------------

_NEGOTIATION_EVENTS = (
    RfqIssued,
    OfferMade,
    OfferDeclined,
    OfferApproved,
    OfferWithdrawn,
    OfferAccepted,
    NegotiationAwarded,
    NegotiationFailed,
    NegotiationExpired,
)


def _negotiation_keys(envelope: Envelope, event: Event) -> tuple[str, ...]:
    return (event.negotiation_id,) if isinstance(event, _NEGOTIATION_EVENTS) else ()


def _render_negotiation(state: MarketState, negotiation_id: str) -> Doc | None:
    nego = state.negotiations.get(negotiation_id)
    if nego is None:
        return None  # a negotiation's events share its stream: the RFQ always comes first
    offers = [_offer(state.offers[o]) for o in nego.offers if o in state.offers]
    return {
        "id": negotiation_id,
        "negotiation_id": negotiation_id,
        "offtaker_id": nego.offtaker_id,
        "workload_id": nego.workload_id,
        "replicas": nego.replicas,
        "resources": _dump(nego.resources),
        "grids": [g.value for g in nego.grids],
        "regions": list(nego.regions),
        "max_price_cu_hour": _dump(nego.max_price_cu_hour),
        "term_hours": nego.term_hours,
        "deadline": _time(nego.deadline),
        "status": nego.status,
        "reason": nego.reason,
        "offers": offers,
        "declines": [_decline(d) for d in nego.declined],
        "contract_ids": list(nego.contracts),
        # The farms a farmer's client may see it from: invited, offering or declining.
        "farm_ids": sorted(nego.invited | nego.farms),
    }


def _offer(offer: Offer) -> Doc:
    return {
        "offer_id": offer.offer_id,
        "farm_id": offer.farm_id,
        "node_id": offer.node_id,
        "grid": offer.grid.value,
        "region": offer.region,
        "price_hour": _dump(offer.price_hour),  # as accepted: a counter may have moved it
        "firm": offer.firm,
        "term_hours": offer.term_hours,
        "expires_at": _time(offer.expires_at),
        "approved": offer.approved,
        "status": offer.status,
        "reason": offer.reason,
        "contract_id": offer.contract_id,
    }


def _decline(decline: Decline) -> Doc:
    return {
        "farm_id": decline.farm_id,
        "node_id": decline.node_id,
        "reasons": [r.value for r in decline.reasons],
        "detail": decline.detail,
    }


NEGOTIATIONS = Projection(
    name="negotiations",
    types=frozenset(t.__name__ for t in _NEGOTIATION_EVENTS),
    keys=_negotiation_keys,
    render=_render_negotiation,
)


# -- accounts -------------------------------------------------------------------------------------


def _is_account(account: str) -> bool:
    try:
        account_kind(account)
    except Rejected:
        return False
    return True


def _account_keys(envelope: Envelope, event: Event) -> tuple[str, ...]:
    # Both legs of a transfer reach both accounts' documents; only the accounts a leg names:
    # a stray leg on a third account's stream must not show that account its strangers.
    if not isinstance(event, TransferPosted):
        return ()
    return _named_accounts(event.debit_account, event.credit_account)


@lru_cache(maxsize=1 << 16)  # a replay asks about the same few pairs for every transfer
def _named_accounts(debit: str, credit: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a for a in (debit, credit) if _is_account(a)))


def _render_account(state: MarketState, account_id: str) -> Doc | None:
    book = state.books.get(account_id)
    if book is None:
        return None
    doc = _empty_account(account_id)
    if (account := state.accounts.get(account_id)) is not None:
        doc.update(balance=str(account.balance), transfers=account.transfers)
    # A waiting leg always names this account (the model files it only with the accounts it
    # names): nothing here names a third tenant.
    problems = dict.fromkeys(book.waiting, LegProblem.ORPHAN_LEG.value) | book.faults
    doc.update(
        last_transfers=[_line(line) for line in book.lines],
        waiting_legs={tid: _leg_doc(leg) for tid, leg in book.waiting.items()},
        faults=dict(book.faults),
        unbalanced=[
            {"transfer_id": tid, "problem": problem} for tid, problem in sorted(problems.items())
        ],
    )
    return doc


def _leg_doc(leg: Leg) -> Doc:
    return {"account": leg.account, "event": leg.event.model_dump(mode="json")}


def _line(line: TransferLine) -> Doc:
    return {
        "transfer_id": line.transfer_id,
        "kind": line.kind.value,
        "direction": "credit" if line.credit else "debit",
        "amount": str(line.amount),
        "counterparty": line.counterparty,
        "reference": line.reference,
        "at": _time(line.at),
        "position": line.position,
    }


def _empty_account(account: str) -> Doc:
    kind, owner, currency = account_kind(account).value, *account.split(".", 1)[1].rsplit(".", 1)
    return {
        "id": account,
        "account_id": account,
        "kind": kind,
        "owner": owner,
        "currency": currency,
        "balance": "0",
        "transfers": 0,
        "last_transfers": [],
        "unbalanced": [],
        "waiting_legs": {},
        "faults": {},
        "offtaker_id": owner if kind == "offtaker" else None,
        "farm_id": owner if kind == "farmer" else None,
    }


ACCOUNTS = Projection(
    name="accounts",
    types=frozenset({"TransferPosted"}),
    keys=_account_keys,
    render=_render_account,
)


# -- workloads ------------------------------------------------------------------------------------


def workload_key(offtaker_id: str, workload_id: str) -> str:
    """``OFFTAKER/W``: a workload id is unique only within one offtaker's mandate."""
    return f"{offtaker_id}/{workload_id}"


def _workload_keys(envelope: Envelope, event: Event) -> tuple[str, ...]:
    match event:
        case OfftakerMandateSet():
            return tuple(
                workload_key(event.offtaker_id, w.workload_id) for w in event.mandate.workloads
            )
        case ContractCreated() | ScaleDecided():
            return (workload_key(event.offtaker_id, event.workload_id),)
    return ()


def _workload_via(envelope: Envelope, event: Event) -> tuple[str, ...]:
    match event:
        case OfftakerMandateSet():  # the previous mandate's workloads lose their spec
            return (f"mandate:{event.offtaker_id}",)
        case ContractCancelled():
            return (f"contract:{event.contract_id}",)
    return ()


def _workload_links(envelope: Envelope, event: Event) -> dict[str, tuple[str, ...] | None]:
    match event:
        case OfftakerMandateSet():
            return {f"mandate:{event.offtaker_id}": _workload_keys(envelope, event)}
        case ContractCreated():
            return {f"contract:{event.contract_id}": _workload_keys(envelope, event)}
        case ContractCancelled():
            return {f"contract:{event.contract_id}": None}
    return {}


def _render_workload(state: MarketState, key: str) -> Doc | None:
    offtaker_id, _, workload_id = key.partition("/")
    workload = state.workloads.get((offtaker_id, workload_id))
    if workload is None:
        return None
    doc = _empty_workload(key)
    mandate = state.mandates.get(offtaker_id)
    specs = mandate.workloads if mandate is not None else ()
    spec = next((w for w in specs if w.workload_id == workload_id), None)
    if spec is not None:
        doc["spec"] = _dump(spec)
        doc["autoscale"] = _dump(spec.autoscale) if spec.autoscale else None
    doc["live"] = {
        c: state.contracts[c].grid.value
        for c in workload.contracts
        if c in state.contracts and state.contracts[c].live
    }
    if workload.decisions:
        last = workload.decisions[-1]
        doc["last_desired"] = last.desired_replicas
        doc["decisions_total"] = len(workload.decisions)
        doc["last_decision"] = last.model_dump(mode="json", exclude={"offtaker_id", "workload_id"})
    return _with_replicas(doc)


def _empty_workload(key: str) -> Doc:
    offtaker_id, _, workload_id = key.partition("/")
    return {
        "id": key,
        "offtaker_id": offtaker_id,
        "workload_id": workload_id,
        "spec": None,
        "autoscale": None,
        "live": {},
        "last_desired": None,
        "last_decision": None,
        "decisions_total": 0,
    }


def _with_replicas(doc: Doc) -> Doc:
    """The derived fields: live replicas per grid, and the target (as WorkloadsView has it)."""
    grids: dict[str, int] = {}
    for grid in sorted(doc["live"].values()):
        grids[grid] = grids.get(grid, 0) + 1
    doc["grids"], doc["live_replicas"] = grids, len(doc["live"])
    doc["live_contract_ids"] = sorted(doc["live"])
    spec, desired = doc["spec"], doc["last_desired"]
    if spec is None:
        doc["target"] = desired
    elif spec["autoscale"] is None or desired is None:
        doc["target"] = spec["replicas"]
    else:
        doc["target"] = desired
    return doc


WORKLOADS = Projection(
    name="workloads",
    types=frozenset({"OfftakerMandateSet", "ContractCreated", "ContractCancelled", "ScaleDecided"}),
    keys=_workload_keys,
    render=_render_workload,
    via=_workload_via,
    links=_workload_links,
)


# -- the catalogue and the pure fold --------------------------------------------------------------

PROJECTIONS: dict[str, Projection] = {
    p.name: p for p in (FARMS, NODES, CONTRACTS, NEGOTIATIONS, ACCOUNTS, WORKLOADS)
}


def projection(name: str) -> Projection:
    try:
        return PROJECTIONS[name]
    except KeyError:
        raise UnknownProjection(name, PROJECTIONS) from None


def selected(name: str | None) -> list[Projection]:
    """The projection ``name`` names, or all of them for None."""
    return list(PROJECTIONS.values()) if name is None else [projection(name)]


@dataclass
class Folded:
    """One projection folded in memory: the reference the Valkey copy must equal.

    A rendering projection applies each event to its own market model and renders the
    documents it touched when they are read (each once, however many events touched it).
    """

    projection: Projection
    links: dict[str, tuple[str, ...]] = field(default_factory=dict)
    position: int = 0
    model: MarketState = field(default_factory=MarketState)
    _docs: dict[str, Doc] = field(default_factory=dict)
    _stale: dict[str, int] = field(default_factory=dict)

    @property
    def docs(self) -> dict[str, Doc]:
        for key, position in self._stale.items():
            doc = self.projection.rendered(self.model, key, position)
            if doc is None:
                self._docs.pop(key, None)
            else:
                self._docs[key] = doc
        self._stale.clear()
        return self._docs

    def touched(self, envelope: Envelope, event: Event) -> list[str]:
        """The documents the event touches (links resolved), in a stable order."""
        keys = list(self.projection.keys(envelope, event))
        for alias in self.projection.via(envelope, event):
            keys.extend(self.links.get(alias, ()))
        return list(dict.fromkeys(keys))

    def relink(self, envelope: Envelope, event: Event) -> None:
        for alias, keys in self.projection.links(envelope, event).items():
            if keys is None:
                self.links.pop(alias, None)
            else:
                self.links[alias] = keys

    def apply(self, envelope: Envelope, event: Event) -> None:
        """Fold one event; one at or before ``position`` is a repeat and changes nothing."""
        if envelope.position <= self.position:
            return
        self.position = envelope.position
        model_apply(self.model, envelope, event)
        if envelope.type not in self.projection.types:
            return
        for key in self.touched(envelope, event):
            self._stale[key] = envelope.position
        self.relink(envelope, event)


def fold(name: str, items: Iterable[tuple[Envelope, Event]], *, upto: int | None = None) -> Folded:
    """Projection ``name`` folded from ``items`` in log order (through ``upto`` when given)."""
    folded = Folded(projection(name))
    for envelope, event in items:
        if upto is not None and envelope.position > upto:
            break
        folded.apply(envelope, event)
    return folded
