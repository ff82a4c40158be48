"""What the market looks like, as the CLI lists it: farms, nodes, offers, negotiations,
contracts, declines and offers awaiting a farmer's approval.

Pure: ``MarketReport.apply(envelope, event)`` in log order, then read the properties. The
folding is the market model's (:mod:`hero.model`); this module only turns its state into
rows. The command line and the demo load it from the store; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from pydantic import BaseModel

from hero.model import (
    Contract,
    Farm,
    MarketState,
    Negotiation,
    NegotiationStatus,
    Node,
    Offer,
    OfferStatus,
    apply,
)
from schemas import (
    DeclineReason,
    Envelope,
    Event,
    Grid,
    Mandate,
    Money,
    NodeStatus,
    PolicyMode,
    Resources,
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
    "contract_row",
    "json_ready",
]


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
    """A contract's terms: the fields of the model's :class:`~hero.model.Contract` a listing
    shows (:func:`contract_row`)."""

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


def _farm_row(farm: Farm) -> FarmRow:
    return FarmRow(
        farm_id=farm.farm_id,
        name=farm.name,
        grid=farm.grid,
        region=farm.region,
        country=farm.country,
        certified=farm.certified,
        mode=farm.policy.mode if farm.policy is not None else None,
        nodes=len(farm.node_ids),
    )


def _node_row(node: Node) -> NodeRow:
    held, committed = node.held, node.committed
    return NodeRow(
        node_id=node.node_id,
        farm_id=node.farm_id,
        grid=node.grid,
        region=node.region,
        country=node.country,
        status=node.status,
        uptime_pct=node.uptime_pct,
        total=node.total,
        held=held,
        committed=committed,
        free=node.total.minus_floored(held + committed),
        holds=len(node.holds),
        contracts=len(node.contracts),
    )


def contract_row(contract: Contract) -> ContractRow:
    """The model's record cut to the row's fields: the read model's contract terms are these
    fields too (:mod:`hero.readmodels.projections`), so the two cannot drift apart."""
    return ContractRow(**{f.name: getattr(contract, f.name) for f in fields(ContractRow)})


def _negotiation_row(nego: Negotiation) -> NegotiationRow:
    return NegotiationRow(
        negotiation_id=nego.negotiation_id,
        offtaker_id=nego.offtaker_id,
        workload_id=nego.workload_id,
        replicas=nego.replicas,
        resources=nego.resources,
        term_hours=nego.term_hours,
        deadline=nego.deadline,
        status=nego.status,
        reason=nego.reason,
        offers=len(nego.offers),
        declines=nego.declines,
        contracts=tuple(nego.contracts),
    )


class MarketReport:
    """The CLI's listings: rows read from the market model (:mod:`hero.model`), which does the
    folding; ``position`` is the last position applied."""

    def __init__(self, state: MarketState | None = None) -> None:
        self.state = state if state is not None else MarketState()
        self.position = self.state.position

    def apply(self, envelope: Envelope, event: Event) -> None:
        """Fold one event; events at or before ``position`` are skipped (a repeat: the CLI
        reads the store in its global order)."""
        if envelope.position <= self.position:
            return
        self.position = envelope.position
        apply(self.state, envelope, event)

    def apply_all(self, items: Iterable[tuple[Envelope, Event]]) -> MarketReport:
        for envelope, event in items:
            self.apply(envelope, event)
        return self

    def _owner(self, negotiation_id: str) -> tuple[str, str]:
        nego = self.state.negotiations.get(negotiation_id)
        return (nego.offtaker_id, nego.workload_id) if nego else ("", "")

    def _offer_row(self, offer: Offer) -> OfferRow:
        offtaker, workload = self._owner(offer.negotiation_id)
        return OfferRow(
            offer_id=offer.offer_id,
            negotiation_id=offer.negotiation_id,
            offtaker_id=offtaker,
            workload_id=workload,
            farm_id=offer.farm_id,
            node_id=offer.node_id,
            grid=offer.grid,
            region=offer.region,
            resources=offer.resources,
            price_hour=offer.price_hour,
            term_hours=offer.term_hours,
            firm=offer.firm,
            expires_at=offer.expires_at,
            approved=offer.approved,
            status=offer.status,
            reason=offer.reason,
            contract_id=offer.contract_id,
        )

    # -- reading ----------------------------------------------------------------------------

    @property
    def farms(self) -> list[FarmRow]:
        farms = self.state.farms
        return [_farm_row(farms[k]) for k in sorted(farms)]

    def farm(self, farm_id: str) -> FarmRow | None:
        farm = self.state.farms.get(farm_id)
        return _farm_row(farm) if farm else None

    @property
    def nodes(self) -> list[NodeRow]:
        nodes = self.state.nodes
        return [_node_row(nodes[k]) for k in sorted(nodes)]

    def node(self, node_id: str) -> NodeRow | None:
        node = self.state.nodes.get(node_id)
        return _node_row(node) if node else None

    @property
    def contracts(self) -> list[ContractRow]:
        """Live contracts (created, not cancelled), oldest first."""
        return [contract_row(c) for c in self.state.live_contracts()]

    @property
    def declines(self) -> list[DeclineRow]:
        return [
            DeclineRow(d.negotiation_id, *self._owner(d.negotiation_id), d.farm_id, d.node_id,
                       d.reasons, d.detail)
            for d in self.state.declines
        ]  # fmt: skip

    @property
    def offers(self) -> list[OfferRow]:
        return [self._offer_row(o) for o in self.state.offers.values()]

    def offer(self, offer_id: str) -> OfferRow | None:
        offer = self.state.offers.get(offer_id)
        return self._offer_row(offer) if offer else None

    def pending_approvals(self, now: datetime) -> list[OfferRow]:
        """Offers awaiting a farmer's approval at ``now``, soonest to expire first."""
        pending = [o for o in self.offers if o.awaits_approval(now)]
        return sorted(pending, key=lambda o: (o.expires_at, o.offer_id))

    @property
    def negotiations(self) -> list[NegotiationRow]:
        return [_negotiation_row(n) for n in self.state.negotiations.values()]

    def negotiation(self, negotiation_id: str) -> NegotiationRow | None:
        nego = self.state.negotiations.get(negotiation_id)
        return _negotiation_row(nego) if nego else None

    @property
    def mandates(self) -> dict[str, Mandate]:
        return dict(self.state.mandates)


#: Exact types already JSON-ready (a subclass, such as a StrEnum, still goes the long way).
_PLAIN = frozenset({str, int, float, bool, type(None)})


def json_ready(value: Any) -> Any:
    """A row (or anything in one) as JSON-ready data: models as their JSON form, Decimals as
    strings (like money), times in ISO 8601."""
    if type(value) in _PLAIN:  # most of a row: before the isinstance checks (BaseModel's is slow)
        return value
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
