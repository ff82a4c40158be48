"""What the market looks like, folded from its events: farms, nodes, offers, negotiations,
contracts, declines and offers awaiting a farmer's approval.

Pure: ``MarketReport.apply(envelope, event)`` in log order, then read the properties. The
command line and the demo load it from the store; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel

from schemas import (
    CapacityHeld,
    ContractCancelled,
    ContractCreated,
    DeclineReason,
    Envelope,
    Event,
    FarmerPolicySet,
    FarmRegistered,
    Grid,
    HoldExpired,
    HoldReleased,
    Mandate,
    Money,
    NegotiationAwarded,
    NegotiationExpired,
    NegotiationFailed,
    NodeRegistered,
    NodeStatus,
    NodeStatusChanged,
    OfferAccepted,
    OfferApproved,
    OfferDeclined,
    OfferMade,
    OfferWithdrawn,
    OfftakerMandateSet,
    PolicyMode,
    Resources,
    RfqIssued,
    Sla,
)

__all__ = [
    "ContractRow",
    "DeclineRow",
    "FarmRow",
    "MarketReport",
    "NegotiationRow",
    "NodeRow",
    "OfferRow",
    "json_ready",
]

NegotiationStatus = Literal["open", "awarded", "failed", "expired"]
OfferStatus = Literal["open", "withdrawn", "accepted", "released"]


@dataclass(frozen=True)
class FarmRow:
    farm_id: str
    name: str
    grid: Grid
    region: str
    country: str
    certified: bool
    mode: PolicyMode | None = None
    """The farm-wide policy's mode; None while the farm has no policy."""
    nodes: int = 0


@dataclass(frozen=True)
class NodeRow:
    node_id: str
    farm_id: str
    grid: Grid
    region: str
    country: str
    status: NodeStatus
    uptime_pct: Decimal
    total: Resources
    held: Resources
    committed: Resources
    free: Resources
    holds: int
    contracts: int


@dataclass(frozen=True)
class ContractRow:
    contract_id: str
    negotiation_id: str
    offer_id: str
    offtaker_id: str
    workload_id: str
    farm_id: str
    node_id: str
    grid: Grid
    resources: Resources
    price_hour: Money
    term_hours: int
    sla: Sla
    starts_at: datetime


@dataclass(frozen=True)
class DeclineRow:
    negotiation_id: str
    offtaker_id: str
    workload_id: str
    farm_id: str
    node_id: str | None
    reasons: tuple[DeclineReason, ...]
    detail: str


@dataclass(frozen=True)
class OfferRow:
    offer_id: str
    negotiation_id: str
    offtaker_id: str
    workload_id: str
    farm_id: str
    node_id: str
    grid: Grid
    region: str
    resources: Resources
    price_hour: Money
    term_hours: int
    firm: bool
    """As made: False when the offer awaited the farmer's approval."""
    expires_at: datetime
    approved: bool = False
    status: OfferStatus = "open"
    reason: str = ""
    contract_id: str | None = None

    def awaits_approval(self, now: datetime) -> bool:
        """Made for approval, neither approved nor ended, and not past its expiry."""
        return (
            not self.firm and not self.approved and self.status == "open" and self.expires_at > now
        )


@dataclass(frozen=True)
class NegotiationRow:
    negotiation_id: str
    offtaker_id: str
    workload_id: str
    replicas: int
    resources: Resources
    term_hours: int
    deadline: datetime
    status: NegotiationStatus = "open"
    reason: str = ""
    offers: int = 0
    declines: int = 0
    contracts: tuple[str, ...] = ()

    @property
    def closed(self) -> bool:
        return self.status != "open"


@dataclass
class _Node:
    registered: NodeRegistered
    status: NodeStatus = NodeStatus.UP
    holds: dict[str, Resources] = field(default_factory=dict)
    contracts: dict[str, Resources] = field(default_factory=dict)

    def row(self) -> NodeRow:
        node = self.registered
        held = Resources.sum(self.holds.values())
        committed = Resources.sum(self.contracts.values())
        return NodeRow(
            node_id=node.node_id,
            farm_id=node.farm_id,
            grid=node.grid,
            region=node.region,
            country=node.country,
            status=self.status,
            uptime_pct=node.uptime_pct,
            total=node.total,
            held=held,
            committed=committed,
            free=node.total.minus_floored(held + committed),
            holds=len(self.holds),
            contracts=len(self.contracts),
        )


class MarketReport:
    """The market folded from its events; ``position`` is the last position applied."""

    def __init__(self) -> None:
        self.position = 0
        self._farms: dict[str, FarmRow] = {}
        self._nodes: dict[str, _Node] = {}
        self._negotiations: dict[str, NegotiationRow] = {}
        self._offers: dict[str, OfferRow] = {}
        self._declines: list[DeclineRow] = []
        self._contracts: dict[str, ContractRow] = {}
        self._mandates: dict[str, Mandate] = {}

    # -- folding ----------------------------------------------------------------------------

    def apply(self, envelope: Envelope, event: Event) -> None:
        """Fold one event; events at or before ``position`` are skipped (a repeat)."""
        if envelope.position <= self.position:
            return
        self.position = envelope.position
        match event:
            case FarmRegistered() | FarmerPolicySet() | OfftakerMandateSet():
                self._apply_party(event)
            case (
                NodeRegistered()
                | NodeStatusChanged()
                | CapacityHeld()
                | HoldReleased()
                | HoldExpired()
                | ContractCancelled()
            ):
                self._apply_node(event)
            case ContractCreated():
                self._apply_contract(event)
            case RfqIssued() | OfferDeclined() | OfferMade():
                self._apply_negotiation(event)
            case OfferApproved() | OfferWithdrawn() | OfferAccepted():
                self._apply_offer(event)
            case NegotiationAwarded() | NegotiationFailed() | NegotiationExpired():
                self._apply_close(event)

    def apply_all(self, items: Iterable[tuple[Envelope, Event]]) -> MarketReport:
        for envelope, event in items:
            self.apply(envelope, event)
        return self

    def _apply_party(self, event: FarmRegistered | FarmerPolicySet | OfftakerMandateSet) -> None:
        match event:
            case FarmRegistered():
                self._farms[event.farm_id] = FarmRow(
                    farm_id=event.farm_id,
                    name=event.name,
                    grid=event.grid,
                    region=event.region,
                    country=event.country,
                    certified=event.certified,
                )
            case FarmerPolicySet():
                farm = self._farms.get(event.farm_id)
                if farm is not None and event.node_id is None:
                    self._farms[event.farm_id] = replace(farm, mode=event.policy.mode)
            case OfftakerMandateSet():
                self._mandates[event.offtaker_id] = event.mandate

    def _apply_node(self, event: Event) -> None:
        if isinstance(event, NodeRegistered):
            self._nodes[event.node_id] = _Node(event)
            farm = self._farms.get(event.farm_id)
            if farm is not None:
                self._farms[event.farm_id] = replace(farm, nodes=farm.nodes + 1)
            return
        node = self._nodes.get(getattr(event, "node_id", ""))
        if node is None:
            return
        match event:
            case NodeStatusChanged():
                node.status = event.status
            case CapacityHeld():
                node.holds[event.hold_id] = event.resources
            case HoldReleased() | HoldExpired():
                node.holds.pop(event.hold_id, None)
            case ContractCancelled():
                node.contracts.pop(event.contract_id, None)
                self._contracts.pop(event.contract_id, None)

    def _apply_contract(self, event: ContractCreated) -> None:
        node = self._nodes.get(event.node_id)
        if node is not None:
            node.holds.pop(event.hold_id, None)
            node.contracts[event.contract_id] = event.resources
        self._contracts[event.contract_id] = ContractRow(
            contract_id=event.contract_id,
            negotiation_id=event.negotiation_id,
            offer_id=event.offer_id,
            offtaker_id=event.offtaker_id,
            workload_id=event.workload_id,
            farm_id=event.farm_id,
            node_id=event.node_id,
            grid=event.grid,
            resources=event.resources,
            price_hour=event.price_hour,
            term_hours=event.term_hours,
            sla=event.sla,
            starts_at=event.starts_at,
        )

    def _apply_negotiation(self, event: RfqIssued | OfferDeclined | OfferMade) -> None:
        if isinstance(event, RfqIssued):
            self._negotiations[event.negotiation_id] = NegotiationRow(
                negotiation_id=event.negotiation_id,
                offtaker_id=event.offtaker_id,
                workload_id=event.workload_id,
                replicas=event.replicas,
                resources=event.resources,
                term_hours=event.term_hours,
                deadline=event.deadline,
            )
            return
        nego = self._negotiations.get(event.negotiation_id)
        offtaker, workload = (nego.offtaker_id, nego.workload_id) if nego else ("", "")
        if isinstance(event, OfferDeclined):
            self._declines.append(
                DeclineRow(
                    negotiation_id=event.negotiation_id,
                    offtaker_id=offtaker,
                    workload_id=workload,
                    farm_id=event.farm_id,
                    node_id=event.node_id,
                    reasons=tuple(event.reasons),
                    detail=event.detail,
                )
            )
            if nego is not None:
                self._negotiations[nego.negotiation_id] = replace(nego, declines=nego.declines + 1)
            return
        self._offers[event.offer_id] = OfferRow(
            offer_id=event.offer_id,
            negotiation_id=event.negotiation_id,
            offtaker_id=offtaker,
            workload_id=workload,
            farm_id=event.farm_id,
            node_id=event.node_id,
            grid=event.grid,
            region=event.region,
            resources=event.resources,
            price_hour=event.price_hour,
            term_hours=event.term_hours,
            firm=event.firm,
            expires_at=event.expires_at,
        )
        if nego is not None:
            self._negotiations[nego.negotiation_id] = replace(nego, offers=nego.offers + 1)

    def _apply_offer(self, event: OfferApproved | OfferWithdrawn | OfferAccepted) -> None:
        offer = self._offers.get(event.offer_id)
        if offer is None:
            return
        match event:
            case OfferApproved():
                self._offers[event.offer_id] = replace(offer, approved=True)
            case OfferWithdrawn():
                self._offers[event.offer_id] = replace(
                    offer, status="withdrawn", reason=event.reason, contract_id=None
                )
                nego = self._negotiations.get(event.negotiation_id)
                if nego is not None and offer.contract_id in nego.contracts:
                    kept = tuple(c for c in nego.contracts if c != offer.contract_id)
                    self._negotiations[nego.negotiation_id] = replace(nego, contracts=kept)
            case OfferAccepted():
                self._offers[event.offer_id] = replace(
                    offer, status="accepted", contract_id=event.contract_id
                )
                nego = self._negotiations.get(event.negotiation_id)
                if nego is not None:
                    contracts = (*nego.contracts, event.contract_id)
                    self._negotiations[nego.negotiation_id] = replace(nego, contracts=contracts)

    def _apply_close(
        self, event: NegotiationAwarded | NegotiationFailed | NegotiationExpired
    ) -> None:
        for offer_id in event.released_offers:
            offer = self._offers.get(offer_id)
            if offer is not None and offer.status == "open":
                self._offers[offer_id] = replace(offer, status="released")
        nego = self._negotiations.get(event.negotiation_id)
        if nego is None:
            return
        status: NegotiationStatus
        match event:
            case NegotiationAwarded():
                status, reason = "awarded", ""
            case NegotiationFailed():
                status, reason = "failed", event.reason
            case NegotiationExpired():
                status, reason = "expired", "offers awaiting approval expired"
        self._negotiations[nego.negotiation_id] = replace(nego, status=status, reason=reason)

    # -- reading ----------------------------------------------------------------------------

    @property
    def farms(self) -> list[FarmRow]:
        return [self._farms[k] for k in sorted(self._farms)]

    def farm(self, farm_id: str) -> FarmRow | None:
        return self._farms.get(farm_id)

    @property
    def nodes(self) -> list[NodeRow]:
        return [self._nodes[k].row() for k in sorted(self._nodes)]

    def node(self, node_id: str) -> NodeRow | None:
        node = self._nodes.get(node_id)
        return node.row() if node else None

    @property
    def contracts(self) -> list[ContractRow]:
        """Live contracts (created, not cancelled), oldest first."""
        return list(self._contracts.values())

    @property
    def declines(self) -> list[DeclineRow]:
        return list(self._declines)

    @property
    def offers(self) -> list[OfferRow]:
        return list(self._offers.values())

    def offer(self, offer_id: str) -> OfferRow | None:
        return self._offers.get(offer_id)

    def pending_approvals(self, now: datetime) -> list[OfferRow]:
        """Offers awaiting a farmer's approval at ``now``, soonest to expire first."""
        pending = [o for o in self._offers.values() if o.awaits_approval(now)]
        return sorted(pending, key=lambda o: (o.expires_at, o.offer_id))

    @property
    def negotiations(self) -> list[NegotiationRow]:
        return list(self._negotiations.values())

    def negotiation(self, negotiation_id: str) -> NegotiationRow | None:
        return self._negotiations.get(negotiation_id)

    @property
    def mandates(self) -> dict[str, Mandate]:
        return dict(self._mandates)


def json_ready(value: Any) -> Any:
    """A row (or anything in one) as JSON-ready data: models as their JSON form, Decimals as
    strings (like money), times in ISO 8601."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_ready(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return format(value, "f")  # 0.0000005, not 5E-7
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value
