"""A host's view of the market, folded from the log: farms, nodes, negotiations.

One view per agent host, shared by all the agents it hosts (agents stay small). It also routes
each event to the agents it concerns, and says which agents an event brings into being.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from agents.brain import Brain
from hero.domain.pricing import ask_price, price_per_cu_hour
from schemas import (
    CapacityHeld,
    ContractCancelled,
    ContractCreated,
    CounterAccepted,
    CounterOffered,
    CounterRejected,
    Envelope,
    Event,
    FarmerPolicy,
    FarmerPolicySet,
    FarmRegistered,
    Grid,
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
    ReplicaMigrated,
    ReplicaPlaced,
    Resources,
    RfqIssued,
    ScaleDecided,
    SlaOutcomeRecorded,
    UtilizationSampled,
)
from schemas.catalogue.common import NodeStatus
from schemas.catalogue.policies import PolicyMode

__all__ = [
    "FarmView",
    "MarketView",
    "NegotiationView",
    "NodeView",
    "autoscaler_id",
    "farmer_id",
    "offtaker_id",
]


def farmer_id(farm_id: str) -> str:
    return f"farmer:{farm_id}"


def offtaker_id(offtaker: str) -> str:
    return f"offtaker:{offtaker}"


def autoscaler_id(offtaker: str) -> str:
    return f"autoscaler:{offtaker}"


def _owner(offtaker: str) -> set[str]:
    """An offtaker's agents: the one that negotiates and the one that scales."""
    return {offtaker_id(offtaker), autoscaler_id(offtaker)}


_Vector = tuple[int, int, int, int, int]


def _vector(resources: Resources) -> _Vector:
    return (resources.cru, resources.mru, resources.sru, resources.hru, resources.ipv4)


@dataclass(slots=True)
class NodeView:
    node_id: str
    farm_id: str
    grid: Grid
    region: str
    certified: bool
    uptime_pct: Decimal
    total: Resources
    status: NodeStatus = NodeStatus.UP
    holds: dict[str, tuple[Resources, datetime]] = field(default_factory=dict)
    contracts: dict[str, Resources] = field(default_factory=dict)
    # Free capacity as plain integers, valid until the soonest live hold expires: searching
    # thousands of nodes per decision must not rebuild pydantic models each time.
    _free: _Vector | None = None
    _valid_until: datetime | None = None

    def changed(self) -> None:
        self._free = None

    def _free_vector(self, now: datetime) -> _Vector:
        if self._free is None or (self._valid_until is not None and self._valid_until <= now):
            used = [0, 0, 0, 0, 0]
            live = [(r, t) for r, t in self.holds.values() if t > now]
            for resources in [r for r, _ in live] + list(self.contracts.values()):
                for i, amount in enumerate(_vector(resources)):
                    used[i] += amount
            total = _vector(self.total)
            self._free = tuple(max(t - u, 0) for t, u in zip(total, used, strict=True))  # type: ignore[assignment]
            self._valid_until = min((t for _, t in live), default=None)
        assert self._free is not None
        return self._free

    def fits(self, resources: Resources, now: datetime) -> bool:
        free = self._free_vector(now)
        return all(a <= f for a, f in zip(_vector(resources), free, strict=True))

    def free(self, now: datetime) -> Resources:
        cru, mru, sru, hru, ipv4 = self._free_vector(now)
        return Resources(cru=cru, mru=mru, sru=sru, hru=hru, ipv4=ipv4)

    def expired_holds(self, now: datetime) -> list[str]:
        return sorted(h for h, (_, expires_at) in self.holds.items() if expires_at <= now)


@dataclass(slots=True)
class FarmView:
    farm_id: str
    grid: Grid
    region: str
    certified: bool
    policy: FarmerPolicy | None = None
    node_policies: dict[str, FarmerPolicy] = field(default_factory=dict)
    node_ids: list[str] = field(default_factory=list)

    def policy_for(self, node_id: str) -> FarmerPolicy | None:
        return self.node_policies.get(node_id, self.policy)


@dataclass(slots=True)
class NegotiationView:
    negotiation_id: str
    offtaker_id: str
    invited: frozenset[str]
    farms: set[str] = field(default_factory=set)
    open: bool = True


def _set_policy(farm: FarmView, event: FarmerPolicySet) -> None:
    if event.node_id is None:
        farm.policy = event.policy
    else:
        farm.node_policies[event.node_id] = event.policy


_NODE_EVENTS = (
    CapacityHeld,
    HoldReleased,
    HoldExpired,
    ContractCreated,
    ContractCancelled,
    NodeStatusChanged,
)
_OFFER_EVENTS = (
    OfferMade,
    OfferDeclined,
    OfferApproved,
    OfferWithdrawn,
    CounterOffered,
    CounterAccepted,
    CounterRejected,
    OfferAccepted,
)
_CLOSE_EVENTS = (NegotiationAwarded, NegotiationFailed, NegotiationExpired)


class MarketView:
    def __init__(self) -> None:
        self.farms: dict[str, FarmView] = {}
        self.nodes: dict[str, NodeView] = {}
        self.negotiations: dict[str, NegotiationView] = {}
        self.standing: dict[str, Decimal] = {}
        # Every contract ever made (an ended one still names its owner for routing) and the
        # newest sample of each live one: what an autoscaler reads.
        self.contracts: dict[str, ContractCreated] = {}
        self.samples: dict[str, UtilizationSampled] = {}
        # Kafka orders a farm's stream and its nodes' streams independently: a policy or a
        # node may arrive before its farm. They wait here until it does.
        self._early_policies: dict[str, list[FarmerPolicySet]] = {}
        # Farms in price order per resource shape, rebuilt when farms, nodes or policies change.
        self._by_price: dict[Resources, list[tuple[tuple[Decimal, Decimal], FarmView]]] = {}

    def standing_of(self, offtaker: str) -> Decimal:
        """An offtaker's standing in [0, 1]; 1 until the ledger issue gives it history."""
        return self.standing.get(offtaker, Decimal(1))

    def farm_nodes(self, farm_id: str) -> list[NodeView]:
        farm = self.farms.get(farm_id)
        return [self.nodes[n] for n in farm.node_ids if n in self.nodes] if farm else []

    # -- folding ----------------------------------------------------------------------------

    def farms_by_price(self, resources: Resources) -> list[FarmView]:
        """Farms with an active policy, by their asking price per CU-hour for ``resources``,
        then by their best node's uptime."""
        return [farm for _, farm in self.farms_ranked(resources)]

    def farms_ranked(self, resources: Resources) -> list[tuple[tuple[Decimal, Decimal], FarmView]]:
        """:meth:`farms_by_price` with each farm's rank (price per CU-hour, -uptime): farms
        with equal ranks are equally good to an offtaker."""
        ranked = self._by_price.get(resources)
        if ranked is None:
            keyed = []
            for farm in self.farms.values():
                if farm.policy is None or farm.policy.mode == PolicyMode.OFF:
                    continue
                ask = ask_price(farm.policy, resources)
                uptime = max(
                    (n.uptime_pct for n in self.farm_nodes(farm.farm_id)), default=Decimal(0)
                )
                keyed.append((price_per_cu_hour(ask, resources).amount, -uptime, farm.farm_id))
            ranked = self._by_price[resources] = [
                ((price, uptime), self.farms[f]) for price, uptime, f in sorted(keyed)
            ]
        return ranked

    def apply(self, envelope: Envelope, event: Event) -> None:
        if isinstance(event, (FarmRegistered, FarmerPolicySet, NodeRegistered)):
            self._by_price.clear()
        self._apply(envelope, event)

    def _apply(self, envelope: Envelope, event: Event) -> None:
        match event:
            case FarmRegistered():
                if event.farm_id not in self.farms:
                    new = FarmView(event.farm_id, event.grid, event.region, event.certified)
                    new.node_ids = sorted(
                        n.node_id for n in self.nodes.values() if n.farm_id == event.farm_id
                    )
                    self.farms[event.farm_id] = new
                    for early in self._early_policies.pop(event.farm_id, []):
                        _set_policy(new, early)
            case FarmerPolicySet():
                known = self.farms.get(event.farm_id)
                if known is None:
                    self._early_policies.setdefault(event.farm_id, []).append(event)
                else:
                    _set_policy(known, event)
            case NodeRegistered():
                self.nodes[event.node_id] = NodeView(
                    event.node_id,
                    event.farm_id,
                    event.grid,
                    event.region,
                    event.certified,
                    event.uptime_pct,
                    event.total,
                )
                farm = self.farms.get(event.farm_id)
                if farm is not None and event.node_id not in farm.node_ids:
                    farm.node_ids.append(event.node_id)
            case NodeStatusChanged():
                if (node := self.nodes.get(event.node_id)) is not None:
                    node.status = event.status
            case CapacityHeld():
                if (node := self.nodes.get(event.node_id)) is not None:
                    node.holds[event.hold_id] = (event.resources, event.expires_at)
                    node.changed()
            case HoldReleased() | HoldExpired():
                if (node := self.nodes.get(event.node_id)) is not None:
                    node.holds.pop(event.hold_id, None)
                    node.changed()
            case ContractCreated():
                self.contracts[event.contract_id] = event
                if (node := self.nodes.get(event.node_id)) is not None:
                    node.holds.pop(event.hold_id, None)
                    node.contracts[event.contract_id] = event.resources
                    node.changed()
            case ContractCancelled():
                self.samples.pop(event.contract_id, None)
                if (node := self.nodes.get(event.node_id)) is not None:
                    node.contracts.pop(event.contract_id, None)
                    node.changed()
            case UtilizationSampled():
                # Samples come straight from Kafka and may arrive before their contract's
                # record (relayed from the store): kept anyway, read once it arrives.
                newest = self.samples.get(event.contract_id)
                if newest is None or newest.sampled_at <= event.sampled_at:
                    self.samples[event.contract_id] = event
            case RfqIssued():
                self.negotiations[event.negotiation_id] = NegotiationView(
                    event.negotiation_id, event.offtaker_id, frozenset(event.invited_farms)
                )
            case OfferMade() | OfferDeclined():
                if (nego := self.negotiations.get(event.negotiation_id)) is not None:
                    nego.farms.add(event.farm_id)
            case NegotiationAwarded() | NegotiationFailed() | NegotiationExpired():
                if (nego := self.negotiations.get(event.negotiation_id)) is not None:
                    nego.open = False

    # -- routing ----------------------------------------------------------------------------

    def route(self, envelope: Envelope, event: Event) -> set[str]:
        """The agents this event concerns (call after ``apply``)."""
        match event:
            case FarmRegistered() | FarmerPolicySet():
                return {farmer_id(event.farm_id)}
            case NodeRegistered():
                return {farmer_id(event.farm_id)}
            case ContractCreated():
                return {farmer_id(event.farm_id), *_owner(event.offtaker_id)}
            case ContractCancelled():
                contract = self.contracts.get(event.contract_id)
                node = self.nodes.get(event.node_id)
                owners = _owner(contract.offtaker_id) if contract else set()
                return owners | ({farmer_id(node.farm_id)} if node else set())
            case NodeStatusChanged():
                node = self.nodes.get(event.node_id)
                if node is None:
                    return set()
                owners = {
                    agent
                    for c in node.contracts
                    if (contract := self.contracts.get(c)) is not None
                    for agent in _owner(contract.offtaker_id)
                }
                return {farmer_id(node.farm_id), *owners}
            case _ if isinstance(event, _NODE_EVENTS):
                node = self.nodes.get(getattr(event, "node_id", ""))
                return {farmer_id(node.farm_id)} if node else set()
            case OfftakerMandateSet() | ScaleDecided():
                return _owner(event.offtaker_id)
            case ReplicaPlaced() | ReplicaMigrated() | SlaOutcomeRecorded():
                return {offtaker_id(event.offtaker_id)}
            case UtilizationSampled():
                contract = self.contracts.get(event.contract_id)
                return {autoscaler_id(contract.offtaker_id)} if contract else set()
            case RfqIssued():
                invited = event.invited_farms or list(self.farms)
                return {offtaker_id(event.offtaker_id), *(farmer_id(f) for f in invited)}
            case _ if isinstance(event, _OFFER_EVENTS):
                nego = self.negotiations.get(getattr(event, "negotiation_id", ""))
                farm = farmer_id(getattr(event, "farm_id", ""))
                return {farm, offtaker_id(nego.offtaker_id)} if nego else {farm}
            case _ if isinstance(event, _CLOSE_EVENTS):
                nego = self.negotiations.get(getattr(event, "negotiation_id", ""))
                if nego is None:
                    return set()
                farms: Iterable[str] = nego.invited or nego.farms
                return {offtaker_id(nego.offtaker_id), *(farmer_id(f) for f in farms)}
        return set()

    def new_agents(self, envelope: Envelope, event: Event) -> list[Brain]:
        """The agents this event brings into being."""
        from agents.autoscaler import AutoscalerBrain
        from agents.farmer import FarmerBrain
        from agents.offtaker import OfftakerBrain

        if isinstance(event, FarmRegistered):
            return [FarmerBrain(event.farm_id)]
        if isinstance(event, OfftakerMandateSet):
            brains: list[Brain] = [OfftakerBrain(event.offtaker_id)]
            if any(w.autoscale is not None for w in event.mandate.workloads):
                brains.append(AutoscalerBrain(event.offtaker_id))
            return brains
        return []
